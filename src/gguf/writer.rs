//! The writer: metadata and tensor infos first, then tensor data streamed one
//! tensor at a time, into a temporary file in the destination folder that is
//! renamed into place only when complete.

use super::*;
use qllama_kernels::GgmlDType;
use std::io::Write;

/// A tensor to be written: its data comes later, from the writer's callback.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub dtype: GgmlDType,
}

#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<TensorPlan>,
    alignment: u32,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self { metadata: Vec::new(), tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT }
    }

    /// Set a metadata key (replacing an earlier value, keeping its position).
    /// `general.alignment` also sets the data alignment.
    pub fn set(&mut self, key: &str, value: GgufValue) {
        todo!()
    }

    pub fn add_tensor(&mut self, plan: TensorPlan) {
        self.tensors.push(plan);
    }

    pub fn tensors(&self) -> &[TensorPlan] {
        &self.tensors
    }

    /// Write the file. `write_tensor(i, plan, sink)` must write exactly the
    /// bytes of tensor `i` (checked); the writer adds the padding. Refuses to
    /// overwrite an existing `path` unless `overwrite`. On any error the
    /// temporary file is removed and nothing appears at `path`.
    pub fn write<F>(&self, path: &Path, overwrite: bool, mut write_tensor: F) -> Result<()>
    where
        F: FnMut(usize, &TensorPlan, &mut dyn Write) -> std::io::Result<()>,
    {
        let _ = &mut write_tensor;
        todo!()
    }
}
