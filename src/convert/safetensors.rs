//! The checkpoint's safetensors shards: memory-mapped, headers parsed by the
//! `safetensors` crate, every tensor's bytes checked to lie inside its file.

use anyhow::{bail, Context, Result};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Element types we convert from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcDType {
    F32,
    F16,
    BF16,
}

impl SrcDType {
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// Decode little-endian elements into f32 (all three widen exactly).
    pub fn to_f32(self, src: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), dst.len() * self.size());
        match self {
            Self::F32 => decode(src, dst, f32::from_le_bytes),
            Self::F16 => decode(src, dst, |b| f16::from_le_bytes(b).to_f32()),
            Self::BF16 => decode(src, dst, |b| bf16::from_le_bytes(b).to_f32()),
        }
    }
}

fn decode<const N: usize>(src: &[u8], dst: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(N)) {
        *d = f(s.try_into().expect("chunks of N bytes"));
    }
}

/// Where a tensor lives and what it is.
#[derive(Clone, Debug)]
pub struct SrcTensor {
    pub shard: usize,
    pub dtype: SrcDType,
    /// Row-major (PyTorch) shape.
    pub shape: Vec<usize>,
    /// Absolute byte range inside the shard file.
    pub start: usize,
    pub end: usize,
}

struct Shard {
    path: PathBuf,
    mmap: memmap2::Mmap,
}

/// All shards of a checkpoint.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensors in the order llama.cpp writes them: shard by shard, by name.
    pub tensors: Vec<(String, SrcTensor)>,
}

impl Checkpoint {
    /// Open the shards of `dir`: those listed in `model.safetensors.index.json`,
    /// or the single `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index.is_file() {
            shard_files(&index)?.into_iter().map(|f| dir.join(f)).collect()
        } else if single.is_file() {
            vec![single]
        } else {
            bail!("{}: no model.safetensors.index.json or model.safetensors", dir.display());
        };
        let mut ck = Self { shards: Vec::new(), tensors: Vec::new() };
        for path in files {
            ck.add_shard(path)?;
        }
        Ok(ck)
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<()> {
        let file = std::fs::File::open(&path).with_context(|| format!("{}: cannot open shard", path.display()))?;
        // SAFETY: the map is read-only and lives as long as `self`; a file
        // changed underneath us while converting can only yield wrong values,
        // which every input could have anyway (no reference escapes unchecked).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
        let (header_len, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            let why = match e {
                safetensors::SafeTensorError::MetadataIncompleteBuffer => {
                    "data does not match the header: the file is truncated or has trailing bytes".to_string()
                }
                e => format!("bad safetensors header: {e}"),
            };
            anyhow::anyhow!("{}: {why}", path.display())
        })?;
        let data_start = 8 + header_len;
        let shard = self.shards.len();
        let mut names: Vec<_> = meta.tensors().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, info) in names {
            let dtype = match info.dtype {
                Dtype::F32 => SrcDType::F32,
                Dtype::F16 => SrcDType::F16,
                Dtype::BF16 => SrcDType::BF16,
                other => {
                    bail!("{}: tensor {name} has unsupported dtype {other:?} (need F32, F16 or BF16)", path.display())
                }
            };
            let (s, e) = info.data_offsets;
            let n: Option<usize> = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let (start, end) = (data_start.checked_add(s), data_start.checked_add(e));
            match (n.and_then(|n| n.checked_mul(dtype.size())), start, end) {
                (Some(bytes), Some(start), Some(end)) if end <= mmap.len() && end - start == bytes && start <= end => {
                    if self.tensors.iter().any(|(n, _)| *n == name) {
                        bail!("{}: tensor {name} appears in more than one shard", path.display());
                    }
                    self.tensors.push((name, SrcTensor { shard, dtype, shape: info.shape.clone(), start, end }));
                }
                _ => bail!("{}: tensor {name} lies outside the file (truncated shard?)", path.display()),
            }
        }
        self.shards.push(Shard { path, mmap });
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&SrcTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn shard_path(&self, t: &SrcTensor) -> &Path {
        &self.shards[t.shard].path
    }

    /// The raw bytes of a tensor (checked against the file when opened).
    pub fn bytes(&self, t: &SrcTensor) -> &[u8] {
        &self.shards[t.shard].mmap[t.start..t.end]
    }

    /// Drop a converted tensor's pages from this process, so that resident
    /// memory stays at about one tensor rather than growing to the whole
    /// checkpoint (the pages stay in the OS page cache). Best effort.
    pub fn release(&mut self, t: &SrcTensor) {
        #[cfg(unix)]
        {
            let mmap = &self.shards[t.shard].mmap;
            // SAFETY: `&mut self` guarantees no slice returned by `bytes`
            // is alive. The map is a private read-only file mapping, so
            // MADV_DONTNEED only discards page-table entries: later reads
            // fault the same file contents back in.
            let _ =
                unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, t.start, t.end - t.start) };
        }
        #[cfg(not(unix))]
        let _ = t;
    }

    /// Hint that shards are read front to back, once.
    pub fn advise_sequential(&self) {
        #[cfg(unix)]
        for s in &self.shards {
            let _ = s.mmap.advise(memmap2::Advice::Sequential);
        }
    }
}

/// The shard file names of an index, sorted and deduplicated, each a plain
/// file name (no path components: the index must not point outside `dir`).
fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("{}: cannot read", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no \"weight_map\" object", index.display()))?;
    let mut files = BTreeMap::new();
    for (tensor, file) in map {
        let f = file.as_str().with_context(|| format!("{}: shard of {tensor} is not a string", index.display()))?;
        if f.is_empty() || f.contains('/') || f.contains('\\') || f == "." || f == ".." {
            bail!("{}: shard name {f:?} of {tensor} is not a plain file name", index.display());
        }
        files.insert(f.to_string(), ());
    }
    if files.is_empty() {
        bail!("{}: weight_map is empty", index.display());
    }
    Ok(files.into_keys().collect())
}
