//! Hyperparameters from a GGUF file's `llama.*` metadata.

use crate::gguf::{GgufError, GgufFile};

/// The architecture we run.
pub const ARCH: &str = "llama";

#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    /// Leading dimensions of each head that are rotated.
    pub rope_dim: usize,
    /// Linear rope scaling factor: positions are divided by it (1 = none).
    pub rope_scale: f32,
}

impl HParams {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of one token's K (or V) row: all KV heads.
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_head_kv
    }

    /// Query heads per KV head.
    pub fn n_gqa(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    /// Read and check the hyperparameters. Tensor shapes are checked against
    /// them when the weights are opened.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let arch = file
            .get_str("general.architecture")?
            .ok_or_else(|| file.error("missing general.architecture: not a model file"))?;
        if arch != ARCH {
            return Err(file.error(format!("architecture '{arch}' is not supported (qllama runs '{ARCH}' models)")));
        }
        let req = |key: &str| -> Result<usize, GgufError> {
            let full = format!("{ARCH}.{key}");
            let v = file.get_u32(&full)?.ok_or_else(|| file.error(format!("missing metadata {full}")))?;
            if v == 0 {
                return Err(file.error(format!("{full} is 0")));
            }
            Ok(v as usize)
        };
        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_ff = req("feed_forward_length")?;
        let n_ctx_train = req("context_length")?;
        let n_head_kv = match file.get_u32("llama.attention.head_count_kv")? {
            Some(0) => return Err(file.error("llama.attention.head_count_kv is 0")),
            Some(v) => v as usize,
            None => n_head,
        };
        if n_embd % n_head != 0 {
            return Err(file.error(format!("embedding length {n_embd} is not a multiple of the head count {n_head}")));
        }
        if n_head % n_head_kv != 0 {
            return Err(file.error(format!("head count {n_head} is not a multiple of the KV head count {n_head_kv}")));
        }
        let head_dim = n_embd / n_head;

        let rms_eps = file
            .get_f32("llama.attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| file.error("missing metadata llama.attention.layer_norm_rms_epsilon"))?;
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(
                file.error(format!("llama.attention.layer_norm_rms_epsilon {rms_eps} is not a positive number"))
            );
        }
        let rope_freq_base = file.get_f32("llama.rope.freq_base")?.unwrap_or(10000.0);
        if !(rope_freq_base.is_finite() && rope_freq_base > 1.0) {
            return Err(file.error(format!("llama.rope.freq_base {rope_freq_base} is not a number above 1")));
        }
        let rope_dim = file.get_u32("llama.rope.dimension_count")?.map_or(head_dim, |v| v as usize);
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(file.error(format!(
                "llama.rope.dimension_count {rope_dim} must be even and between 2 and the head size {head_dim}"
            )));
        }
        let rope_scale = rope_scale(file)?;

        // The vocabulary size is checked against token_embd when the weights
        // are opened; the metadata key is optional (llama.cpp omits it).
        let n_vocab = match file.get_u32("llama.vocab_size")? {
            Some(v) => v as usize,
            None => file
                .tensor_info("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| file.error("missing tensor token_embd.weight"))? as usize,
        };
        if n_vocab == 0 {
            return Err(file.error("vocabulary size is 0"));
        }
        Ok(Self {
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope_freq_base,
            rope_dim,
            rope_scale,
        })
    }
}

/// The linear rope scaling factor, from `llama.rope.scaling.*` or the older
/// `llama.rope.scale_linear`. Other scaling types are refused rather than
/// silently ignored.
fn rope_scale(file: &GgufFile) -> Result<f32, GgufError> {
    let kind = file.get_str("llama.rope.scaling.type")?;
    let factor = match kind {
        None | Some("none") => file.get_f32("llama.rope.scale_linear")?,
        Some("linear") => file.get_f32("llama.rope.scaling.factor")?,
        Some(other) => return Err(file.error(format!("rope scaling type '{other}' is not supported (only linear)"))),
    };
    let factor = match factor {
        None => 1.0,
        // llama.cpp treats a factor of 0 as "unset".
        Some(0.0) => 1.0,
        Some(f) if f.is_finite() && f > 0.0 => f,
        Some(f) => return Err(file.error(format!("rope scaling factor {f} is not a positive number"))),
    };
    Ok(factor)
}
