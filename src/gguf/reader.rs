//! The reader: parses and validates the header from untrusted bytes, then
//! hands out tensors as zero-copy views into the memory map.

use super::*;
use qllama_kernels::GgmlDType;

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

impl GgufHeader {
    /// Parse and validate a header from the bytes of a whole file. `path` is
    /// used only in error messages. Never panics, never allocates more than
    /// the input can justify.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        todo!()
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        todo!()
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    mmap: memmap2::Mmap,
}

/// A tensor borrowed from the map.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        todo!()
    }

    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.header.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.header.get(key)
    }

    /// Typed getters: `Ok(None)` when absent, an error naming the key when
    /// present with an unexpected type or out of range.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        todo!()
    }
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        todo!()
    }
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        todo!()
    }
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        todo!()
    }
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        todo!()
    }
    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        todo!()
    }
    /// An array of f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        todo!()
    }
    /// An array of i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        todo!()
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        todo!()
    }

    /// Zero-copy view of a tensor, or an error naming the file and tensor.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        todo!()
    }

    /// An error about this file.
    pub fn error(&self, msg: impl Into<String>) -> GgufError {
        GgufError::new(&self.path, msg)
    }
}
