//! GGUF v3: a self-contained reader (memory-mapped, validated, zero-copy
//! tensor views) and a streaming writer (temporary file, atomic rename).
//!
//! Layout (all little-endian): magic `GGUF`, version u32, tensor count u64,
//! metadata count u64, metadata key/value pairs, tensor infos (name, n_dims
//! u32, dims u64 × n_dims, type u32, offset u64), padding to
//! `general.alignment` (default 32), then the tensor data.

mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, GgufHeader, Metadata, TensorInfo, TensorView};
pub use value::{GgufValue, GgufValueType};
pub use writer::{GgufWriter, TensorPlan};

use std::path::{Path, PathBuf};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const GGUF_VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// Largest `general.alignment` we accept.
pub const MAX_ALIGNMENT: u32 = 1 << 20;
/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays in metadata we accept (arrays of arrays of ...).
/// Real files use at most one level; the limit bounds recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// A GGUF problem, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct GgufError {
    pub path: PathBuf,
    pub msg: String,
}

impl GgufError {
    pub fn new(path: &Path, msg: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), msg: msg.into() }
    }
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
