//! The writer: metadata and tensor infos first, then tensor data streamed one
//! tensor at a time, into a temporary file in the destination folder that is
//! renamed into place only when complete.
//!
//! The layout matches ggml's own writer (tensors in the order added, each
//! padded to the alignment, the last one included), so re-writing a
//! llama.cpp file with the same metadata and tensors reproduces it byte for
//! byte.

use super::reader::{check_alignment, tensor_byte_size};
use super::value::with_numeric_types;
use super::*;
use qllama_kernels::GgmlDType;
use std::collections::HashSet;
use std::io::{self, BufWriter, Write};

/// A tensor to be written: its data comes later, from the writer's callback.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub dtype: GgmlDType,
}

impl TensorPlan {
    /// Bytes of data, or why the dimensions are invalid.
    pub fn byte_size(&self) -> std::result::Result<u64, String> {
        tensor_byte_size(&self.dims, self.dtype)
    }
}

pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<TensorPlan>,
    alignment: u32,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts what passes through, so that padding can be computed while
/// streaming.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Counting<W> {
    fn pad_to(&mut self, alignment: u64) -> io::Result<()> {
        const ZEROS: [u8; 64] = [0; 64];
        let mut left = self.written.next_multiple_of(alignment) - self.written;
        while left > 0 {
            let n = left.min(ZEROS.len() as u64) as usize;
            self.write_all(&ZEROS[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// The sink handed to the tensor callback: refuses bytes beyond the tensor's
/// size so that a wrong callback cannot shift the tensors after it.
struct Limited<'w, W> {
    inner: &'w mut W,
    left: u64,
}

impl<W: Write> Write for Limited<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more bytes than the tensor's size"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// Encodes a value without its type tag (array elements carry none).
fn write_value(w: &mut impl Write, v: &GgufValue) -> io::Result<()> {
    macro_rules! enc {
        ($($var:ident $t:ty),*) => {
            match v {
                $(GgufValue::$var(x) => w.write_all(&x.to_le_bytes()),)*
                GgufValue::Bool(b) => w.write_all(&[*b as u8]),
                GgufValue::String(s) => write_str(w, s),
                GgufValue::Array(t, items) => {
                    w.write_all(&(*t as u32).to_le_bytes())?;
                    w.write_all(&(items.len() as u64).to_le_bytes())?;
                    items.iter().try_for_each(|item| write_value(w, item))
                }
            }
        };
    }
    with_numeric_types!(enc)
}

/// Arrays must hold only their declared element type and nest no deeper than
/// the reader accepts.
fn check_value(v: &GgufValue, depth: usize) -> std::result::Result<(), String> {
    let GgufValue::Array(t, items) = v else { return Ok(()) };
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!("arrays nested more than {MAX_ARRAY_DEPTH} levels deep"));
    }
    for item in items {
        if item.value_type() != *t {
            return Err(format!("array of {t} holds a {}", item.value_type()));
        }
        check_value(item, depth + 1)?;
    }
    Ok(())
}

impl GgufWriter {
    pub fn new() -> Self {
        Self { metadata: Vec::new(), tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT }
    }

    /// Set a metadata key (replacing an earlier value, keeping its position).
    /// `general.alignment` also sets the data alignment.
    pub fn set(&mut self, key: &str, value: GgufValue) {
        if key == "general.alignment" {
            if let GgufValue::U32(a) = value {
                self.alignment = a;
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// Remove a metadata key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<GgufValue> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        if key == "general.alignment" {
            self.alignment = DEFAULT_ALIGNMENT;
        }
        Some(self.metadata.remove(i).1)
    }

    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    pub fn add_tensor(&mut self, plan: TensorPlan) {
        self.tensors.push(plan);
    }

    pub fn tensors(&self) -> &[TensorPlan] {
        &self.tensors
    }

    /// Validates the plan and returns each tensor's size and offset in the
    /// data section.
    fn layout(&self) -> std::result::Result<Vec<(u64, u64)>, String> {
        if let Some(v) = self.metadata.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
            check_alignment(v)?;
        }
        for (k, v) in &self.metadata {
            check_value(v, 0).map_err(|e| format!("metadata key `{k}`: {e}"))?;
        }
        let align = self.alignment as u64;
        let mut names = HashSet::new();
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(format!("duplicate tensor name `{}`", t.name));
            }
            let size = t.byte_size().map_err(|e| format!("tensor `{}`: {e}", t.name))?;
            out.push((size, offset));
            offset = offset
                .checked_add(size)
                .and_then(|o| o.checked_next_multiple_of(align))
                .ok_or_else(|| "total tensor size overflows".to_string())?;
        }
        Ok(out)
    }

    /// Write the file. `write_tensor(i, plan, sink)` must write exactly the
    /// bytes of tensor `i` (checked); the writer adds the padding. Refuses to
    /// overwrite an existing `path` unless `overwrite`. On any error the
    /// temporary file is removed and nothing appears at `path`.
    pub fn write<F>(&self, path: &Path, overwrite: bool, mut write_tensor: F) -> Result<()>
    where
        F: FnMut(usize, &TensorPlan, &mut dyn Write) -> std::io::Result<()>,
    {
        let err = |msg: String| GgufError::new(path, msg);
        let layout = self.layout().map_err(err)?;
        if !overwrite && path.symlink_metadata().is_ok() {
            return Err(err("already exists; refusing to overwrite it".into()));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // In the destination folder, so that the final rename stays on one
        // file system; removed when dropped, i.e. on every error path.
        let prefix = format!(".{file_name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // A model file is not secret: the permissions an ordinary new file
        // gets (0666 less the umask), not tempfile's private 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder
            .tempfile_in(dir)
            .map_err(|e| err(format!("cannot create a temporary file in {}: {e}", dir.display())))?;

        let io_err = |e: io::Error| err(format!("write failed: {e}"));
        let mut out = Counting { inner: BufWriter::with_capacity(1 << 20, tmp.as_file()), written: 0 };
        self.write_header(&mut out, &layout).map_err(io_err)?;
        let align = self.alignment as u64;
        out.pad_to(align).map_err(io_err)?;
        let data_start = out.written;
        for (i, (plan, &(size, offset))) in self.tensors.iter().zip(&layout).enumerate() {
            debug_assert_eq!(out.written - data_start, offset);
            let mut sink = Limited { inner: &mut out, left: size };
            write_tensor(i, plan, &mut sink).map_err(|e| err(format!("tensor `{}`: {e}", plan.name)))?;
            if sink.left != 0 {
                return Err(err(format!(
                    "tensor `{}`: {} bytes were written, {size} expected",
                    plan.name,
                    size - sink.left
                )));
            }
            out.pad_to(align).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        drop(out);
        tmp.as_file().sync_all().map_err(io_err)?;

        let persisted = if overwrite { tmp.persist(path) } else { tmp.persist_noclobber(path) };
        // On failure the PersistError holds the temporary file, and dropping
        // it removes it.
        persisted.map(drop).map_err(|e| err(format!("cannot move the finished file into place: {}", e.error)))
    }

    fn write_header(&self, w: &mut impl Write, layout: &[(u64, u64)]) -> io::Result<()> {
        w.write_all(&GGUF_MAGIC)?;
        w.write_all(&GGUF_VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(w, key)?;
            w.write_all(&(value.value_type() as u32).to_le_bytes())?;
            write_value(w, value)?;
        }
        for (t, &(_, offset)) in self.tensors.iter().zip(layout) {
            write_str(w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            t.dims.iter().try_for_each(|d| w.write_all(&d.to_le_bytes()))?;
            w.write_all(&t.dtype.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
        }
        Ok(())
    }
}
