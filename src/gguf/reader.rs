//! The reader: parses and validates the header from untrusted bytes, then
//! hands out tensors as zero-copy views into the memory map.
//!
//! Every count and length read from the file is checked against the bytes
//! that remain before anything is allocated for it, so a hostile header can
//! cost at most a constant factor of the file's own size.

use super::value::with_numeric_types;
use super::*;
use qllama_kernels::GgmlDType;
use std::collections::HashSet;

/// One tensor's description. `dims` are in ggml order: `dims[0]` is the row
/// length (the fastest-varying dimension).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: GgmlDType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data, from dims and type.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of all dimensions but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.row_len() / self.dtype.block_size() as u64 * self.dtype.type_size() as u64
    }
}

/// Checks a tensor's dimensions and type and returns its byte size; shared by
/// the reader (untrusted input) and the writer (refuses what it couldn't read).
pub(crate) fn tensor_byte_size(dims: &[u64], dtype: GgmlDType) -> std::result::Result<u64, String> {
    if dims.is_empty() {
        return Err("has no dimensions".into());
    }
    if dims.len() > MAX_DIMS as usize {
        return Err(format!("has {} dimensions, more than the {MAX_DIMS} ggml allows", dims.len()));
    }
    // ggml keeps dimensions and element counts in i64.
    let overflow = || format!("dimensions {dims:?}: element count overflows");
    let mut n: u64 = 1;
    for &d in dims {
        if d > i64::MAX as u64 {
            return Err(overflow());
        }
        n = n.checked_mul(d).filter(|&n| n <= i64::MAX as u64).ok_or_else(overflow)?;
    }
    let block = dtype.block_size() as u64;
    if !dims[0].is_multiple_of(block) {
        return Err(format!("row length {} is not a multiple of the block size {block} of {}", dims[0], dtype.name()));
    }
    (n / block)
        .checked_mul(dtype.type_size() as u64)
        .filter(|&s| s <= i64::MAX as u64)
        .ok_or_else(|| format!("dimensions {dims:?}: byte size of {} data overflows", dtype.name()))
}

/// Everything before the tensor data, parsed and validated against the file
/// length.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    /// Metadata in file order (unknown keys kept).
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u32,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

/// A bounds-checked little-endian cursor over untrusted bytes. Errors are
/// plain messages; `GgufHeader::parse` adds the file name.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated file: {what} at offset {} needs {n} bytes, but the file ends after {} bytes",
                self.pos,
                self.bytes.len()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Parse<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Parse<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items, each at least `min_size` bytes, checked against the
    /// bytes that remain so that it can safely size an allocation.
    fn count(&mut self, min_size: usize, what: &str) -> Parse<usize> {
        let n = self.u64(what)?;
        let rem = self.remaining();
        match n.checked_mul(min_size as u64) {
            Some(need) if need <= rem as u64 => Ok(n as usize),
            _ => Err(format!(
                "{what} {n} is larger than the file can hold: {n} items of at least {min_size} bytes each, \
                 but only {rem} bytes remain after offset {}",
                self.pos
            )),
        }
    }

    fn string(&mut self, what: &str) -> Parse<String> {
        let start = self.pos;
        let len = self.u64(what)?;
        let rem = self.remaining();
        if len > rem as u64 {
            return Err(format!(
                "{what} at offset {start}: string length {len} is larger than the {rem} bytes left in the file"
            ));
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| format!("{what} at offset {start}: invalid UTF-8 in string ({e})"))
    }

    fn value_type(&mut self, what: &str) -> Parse<GgufValueType> {
        let at = self.pos;
        let id = self.u32(what)?;
        GgufValueType::from_u32(id).ok_or_else(|| format!("unknown value type {id} at offset {at}"))
    }

    fn value(&mut self, ty: GgufValueType, depth: usize) -> Parse<GgufValue> {
        macro_rules! read {
            ($($v:ident $t:ty),*) => {
                match ty {
                    $(GgufValueType::$v => {
                        let b = self.array::<{ std::mem::size_of::<$t>() }>(ty.name())?;
                        Ok(GgufValue::$v(<$t>::from_le_bytes(b)))
                    })*
                    GgufValueType::Bool => {
                        let at = self.pos;
                        match self.take(1, "bool")?[0] {
                            0 => Ok(GgufValue::Bool(false)),
                            1 => Ok(GgufValue::Bool(true)),
                            b => Err(format!("bool at offset {at} is {b}, neither 0 nor 1")),
                        }
                    }
                    GgufValueType::String => self.string("string").map(GgufValue::String),
                    GgufValueType::Array => self.array_value(depth),
                }
            };
        }
        with_numeric_types!(read)
    }

    fn array_value(&mut self, depth: usize) -> Parse<GgufValue> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested more than {MAX_ARRAY_DEPTH} levels deep at offset {}", self.pos));
        }
        let elem = self.value_type("array element type")?;
        let n = self.count(elem.min_encoded_size(), &format!("array count (of {elem})"))?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(elem, depth + 1)?);
        }
        Ok(GgufValue::Array(elem, items))
    }
}

/// Smallest encoding of a metadata pair: empty key (8), type (4), a u8 (1).
const MIN_KV_SIZE: usize = 13;
/// Smallest encoding of a tensor info: empty name (8), n_dims (4), type (4),
/// offset (8).
const MIN_TENSOR_INFO_SIZE: usize = 24;

pub(crate) fn check_alignment(value: &GgufValue) -> Parse<u32> {
    let a = match value {
        GgufValue::U32(a) => *a,
        v => return Err(format!("general.alignment must be a u32, found {}", v.type_description())),
    };
    if !a.is_power_of_two() {
        return Err(format!("general.alignment {a} is not a power of two"));
    }
    if a > MAX_ALIGNMENT {
        return Err(format!("general.alignment {a} is above the limit of {MAX_ALIGNMENT} (1 MiB)"));
    }
    Ok(a)
}

impl GgufHeader {
    /// Parse and validate a header from the bytes of a whole file. `path` is
    /// used only in error messages. Never panics, never allocates more than
    /// the input can justify.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::parse_inner(bytes).map_err(|msg| GgufError::new(path, msg))
    }

    fn parse_inner(bytes: &[u8]) -> Parse<Self> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = c.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(format!(
                "not a GGUF file: bad magic {:?} ({}), expected \"GGUF\"",
                String::from_utf8_lossy(&magic),
                magic.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
            ));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err("unsupported GGUF version 1 (obsolete; versions 2 and 3 are supported)".into()),
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(format!(
                    "unsupported GGUF version {v}: this looks like a big-endian file, only little-endian is supported"
                ))
            }
            v => return Err(format!("unsupported GGUF version {v} (versions 2 and 3 are supported)")),
        }
        let n_tensors_raw = c.u64("tensor count")?;
        let n_kv = c.count(MIN_KV_SIZE, "metadata count")?;
        // The tensor count is checked once the metadata has been read, against
        // what remains then; first make sure it is not absurd on its own.
        if n_tensors_raw.checked_mul(MIN_TENSOR_INFO_SIZE as u64).is_none_or(|b| b > c.remaining() as u64) {
            return Err(format!(
                "tensor count {n_tensors_raw} is larger than the file can hold ({} bytes remain after offset {})",
                c.remaining(),
                c.pos
            ));
        }

        let mut metadata = Vec::with_capacity(n_kv);
        let mut seen = HashSet::with_capacity(n_kv);
        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c
                .value_type(&format!("metadata key `{key}` type"))
                .map_err(|e| format!("metadata key `{key}`: {e}"))?;
            let value = c.value(ty, 0).map_err(|e| format!("metadata key `{key}`: {e}"))?;
            if !seen.insert(key.clone()) {
                return Err(format!("duplicate metadata key `{key}`"));
            }
            if key == "general.alignment" {
                alignment = check_alignment(&value)?;
            }
            metadata.push((key, value));
        }

        let rem = c.remaining() as u64;
        if n_tensors_raw.saturating_mul(MIN_TENSOR_INFO_SIZE as u64) > rem {
            return Err(format!(
                "tensor count {n_tensors_raw} is larger than the file can hold ({rem} bytes remain after offset {})",
                c.pos
            ));
        }
        let n_tensors = n_tensors_raw as usize;
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut names = HashSet::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let info = Self::parse_tensor_info(&mut c, i, alignment)?;
            if !names.insert(info.name.clone()) {
                return Err(format!("duplicate tensor name `{}`", info.name));
            }
            tensors.push(info);
        }

        let data_offset = (c.pos as u64)
            .checked_next_multiple_of(alignment as u64)
            .ok_or_else(|| "data section offset overflows".to_string())?;
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.size));
            if end.is_none_or(|e| e > file_len) {
                return Err(format!(
                    "tensor `{}`: data out of bounds: offset {} + {} bytes from the data section at {data_offset} \
                     goes past the end of the file ({file_len} bytes)",
                    t.name, t.offset, t.size
                ));
            }
        }
        // Sorted by offset, each tensor must end before the next begins.
        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| (t.offset, t.size));
        for w in order.windows(2) {
            let (a, b) = (w[0], w[1]);
            // In bounds (checked above), so the sum cannot overflow.
            if a.size > 0 && b.size > 0 && a.offset + a.size > b.offset {
                return Err(format!(
                    "tensors `{}` (bytes {}..{}) and `{}` (bytes {}..{}) overlap",
                    a.name,
                    a.offset,
                    a.offset + a.size,
                    b.name,
                    b.offset,
                    b.offset + b.size
                ));
            }
        }

        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
    }

    fn parse_tensor_info(c: &mut Cursor<'_>, i: usize, alignment: u32) -> Parse<TensorInfo> {
        let name = c.string(&format!("tensor #{i} name"))?;
        let ctx = |e: String| format!("tensor `{name}`: {e}");
        let n_dims = c.u32("tensor n_dims").map_err(ctx)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(ctx(format!("n_dims is {n_dims}, must be 1 to {MAX_DIMS}")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dimension").map_err(ctx)?);
        }
        let type_id = c.u32("tensor type").map_err(ctx)?;
        let dtype = GgmlDType::from_id(type_id).ok_or_else(|| ctx(format!("unknown tensor type {type_id}")))?;
        let offset = c.u64("tensor offset").map_err(ctx)?;
        let size = tensor_byte_size(&dims, dtype).map_err(ctx)?;
        if !offset.is_multiple_of(alignment as u64) {
            return Err(ctx(format!("data offset {offset} is not aligned to {alignment} bytes")));
        }
        Ok(TensorInfo { name, dims, dtype, offset, size })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Typed access to the metadata, with errors naming `path`.
    pub fn meta<'a>(&'a self, path: &'a Path) -> Metadata<'a> {
        Metadata { header: self, path }
    }
}

/// Typed getters over a header's metadata: `Ok(None)` when a key is absent,
/// an error naming the file and key when it is present with an unexpected
/// type or out of range.
#[derive(Clone, Copy)]
pub struct Metadata<'a> {
    pub header: &'a GgufHeader,
    pub path: &'a Path,
}

impl<'a> Metadata<'a> {
    fn wrong(&self, key: &str, expected: &str, found: &GgufValue) -> GgufError {
        GgufError::new(
            self.path,
            format!("metadata key `{key}`: expected {expected}, found {}", found.type_description()),
        )
    }

    /// Looks `key` up and converts it with `f`, which returns `None` for a
    /// value of the wrong type or range.
    fn typed<T>(&self, key: &str, expected: &str, f: impl FnOnce(&'a GgufValue) -> Option<T>) -> Result<Option<T>> {
        match self.header.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| self.wrong(key, expected, v)),
        }
    }

    /// An array whose elements all convert with `f`.
    fn array<T>(&self, key: &str, expected: &str, f: impl Fn(&'a GgufValue) -> Option<T>) -> Result<Option<Vec<T>>> {
        self.typed(key, expected, |v| {
            let (_, items) = v.as_array()?;
            items.iter().map(f).collect()
        })
    }

    /// Any integer type, if the value fits a u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an integer that fits a u32", |v| v.to_u64().and_then(|u| u32::try_from(u).ok()))
    }
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", GgufValue::to_u64)
    }
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "f32", |v| match *v {
            GgufValue::F32(x) => Some(x),
            GgufValue::F64(x) => Some(x as f32),
            _ => None,
        })
    }
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "bool", GgufValue::as_bool)
    }
    pub fn get_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.typed(key, "string", GgufValue::as_str)
    }
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        self.array(key, "an array of strings", GgufValue::as_str)
    }
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.array(key, "an array of f32", |v| match *v {
            GgufValue::F32(x) => Some(x),
            _ => None,
        })
    }
    /// Integers of any type that fit an i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.array(key, "an array of integers that fit i32", |v| v.to_i64().and_then(|i| i32::try_from(i).ok()))
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    mmap: memmap2::Mmap,
    /// Kept open for [`GgufFile::drop_cached`].
    file: std::fs::File,
}

/// A tensor borrowed from the map.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Row `i` of the tensor (rows are `dims[0]` weights long), if it exists.
    pub fn row(&self, i: u64) -> Option<&'a [u8]> {
        let rb = self.info.row_bytes();
        let start = usize::try_from(i.checked_mul(rb)?).ok()?;
        self.data.get(start..start.checked_add(rb as usize)?)
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| GgufError::new(path, format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only and we never hand out references that
        // outlive it. As with any mmap, another process truncating or writing
        // the file while it is mapped is outside what we can guard against;
        // model files are not modified in place by qllama.
        let mmap =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| GgufError::new(path, format!("cannot map: {e}")))?;
        let header = GgufHeader::parse(&mmap, path)?;
        Ok(Self { path: path.to_path_buf(), header, mmap, file })
    }

    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.header.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.header.get(key)
    }

    /// Typed access to the metadata (the getters below delegate to it).
    pub fn meta(&self) -> Metadata<'_> {
        self.header.meta(&self.path)
    }

    /// Typed getters: `Ok(None)` when absent, an error naming the key when
    /// present with an unexpected type or out of range.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.meta().get_u32(key)
    }
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.meta().get_u64(key)
    }
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.meta().get_f32(key)
    }
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.meta().get_bool(key)
    }
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.meta().get_str(key)
    }
    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.meta().get_str_array(key)
    }
    /// An array of f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.meta().get_f32_array(key)
    }
    /// An array of i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.meta().get_i32_array(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor_info(name)
    }

    /// Zero-copy view of a tensor, or an error naming the file and tensor.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.tensor_info(name).ok_or_else(|| self.error(format!("tensor `{name}` not found")))?;
        Ok(TensorView { info, data: self.tensor_data(info)? })
    }

    /// The bytes of a tensor of this file (bounds were checked by the parser;
    /// checked again here so that a hand-made `TensorInfo` cannot panic).
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8]> {
        let range = self
            .header
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| Some(s..s.checked_add(info.size)?))
            .and_then(|r| Some(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?));
        range
            .and_then(|r| self.mmap.get(r))
            .ok_or_else(|| self.error(format!("tensor `{}`: data out of bounds", info.name)))
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Drop the resident pages of `range` of the map (whole pages inside
    /// it), for data that was copied elsewhere. The map stays valid: a page
    /// touched again is read back from the page cache.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let page = 4096;
        let start = range.start.div_ceil(page) * page;
        let end = range.end.min(self.mmap.len()) / page * page;
        if start < end {
            // SAFETY: the map is private and read-only, so MADV_DONTNEED
            // cannot lose data: the next access re-reads the same file bytes.
            // The range lies inside the map (clamped above).
            let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    /// Ask the kernel to drop `range` of the file from the page cache, for
    /// data that was copied out (after [`Self::release`] unmapped it): the
    /// pages are clean, so nothing is lost, and a later read of them comes
    /// from disk. A load that copies a file larger than the free memory
    /// calls it so the copies do not push out the pages still to be read.
    /// Does nothing outside Linux.
    pub fn drop_cached(&self, range: std::ops::Range<usize>) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(off), Ok(len)) = (libc::off_t::try_from(range.start), libc::off_t::try_from(range.len())) else {
                return;
            };
            // SAFETY: posix_fadvise reads only its integer arguments; the
            // descriptor is open for as long as `self.file` lives. It is a
            // hint: failure changes nothing.
            let _ = unsafe { libc::posix_fadvise(self.file.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED) };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (&self.file, range);
    }

    /// An error about this file.
    pub fn error(&self, msg: impl Into<String>) -> GgufError {
        GgufError::new(&self.path, msg)
    }
}
