//! `config.json` → the model's hyperparameters, in the forms that old and new
//! transformers versions write (`rope_theta`/`rope_scaling` at the top level
//! or inside `rope_parameters`, `torch_dtype` or `dtype`, `head_dim` or not).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Largest dimension we accept: far above any Llama, small enough that
/// products of a few of them cannot overflow.
const MAX_DIM: u64 = 1 << 24;

/// RoPE scaling that changes the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear { factor: f32 },
}

/// Hyperparameters of a Llama checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    pub tie_word_embeddings: bool,
    /// `torch_dtype`/`dtype` as written (informational).
    pub dtype: Option<String>,
    /// `*_token_id` entries (bos, eos, unk, sep, pad, cls, mask), when integers.
    pub token_ids: Vec<(String, i64)>,
}

impl HParams {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).context("not valid JSON")?;
        let obj = v.as_object().context("not a JSON object")?;
        Self::from_json(obj)
    }

    pub fn from_json(c: &Map<String, Value>) -> Result<Self> {
        let archs: Vec<&str> = match c.get("architectures") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let model_type = c.get("model_type").and_then(Value::as_str);
        let is_llama = if archs.is_empty() { model_type == Some("llama") } else { archs.contains(&"LlamaForCausalLM") };
        if !is_llama {
            let what = if archs.is_empty() {
                format!("model_type {model_type:?}")
            } else {
                format!("architectures {archs:?}")
            };
            bail!("not a Llama checkpoint ({what}); only LlamaForCausalLM is supported");
        }

        let hidden_size = dim(c, "hidden_size", None)?;
        let n_heads = dim(c, "num_attention_heads", None)?;
        let n_kv_heads = dim(c, "num_key_value_heads", Some(n_heads))?;
        let head_dim = match opt(c, "head_dim") {
            Some(_) => dim(c, "head_dim", None)?,
            None => {
                if hidden_size % n_heads != 0 {
                    bail!("hidden_size {hidden_size} is not a multiple of num_attention_heads {n_heads}");
                }
                hidden_size / n_heads
            }
        };
        if n_heads % n_kv_heads != 0 {
            bail!("num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv_heads}");
        }
        if head_dim % 2 != 0 {
            bail!("head_dim {head_dim} is odd; RoPE needs pairs");
        }
        if (n_heads * head_dim) as u64 > MAX_DIM {
            bail!("num_attention_heads × head_dim = {} is too large", n_heads * head_dim);
        }

        // New transformers nest RoPE settings in `rope_parameters`; old ones
        // have `rope_theta` and `rope_scaling` at the top level.
        let rope = match opt(c, "rope_parameters").or_else(|| opt(c, "rope_scaling")) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => bail!("rope_parameters/rope_scaling is not an object"),
        };
        let rope_theta = match rope.and_then(|m| opt(m, "rope_theta")).or_else(|| opt(c, "rope_theta")) {
            None => 10000.0,
            Some(v) => positive_f32(v, "rope_theta")?,
        };
        let rope_type = rope.and_then(|m| opt(m, "rope_type").or_else(|| opt(m, "type")));
        let rope_scaling = match rope_type {
            None => RopeScaling::None,
            Some(Value::String(t)) => match t.as_str() {
                "default" => RopeScaling::None,
                // llama.cpp ignores dynamic NTK scaling for Llama too.
                "dynamic" => RopeScaling::None,
                "linear" => match rope.and_then(|m| opt(m, "factor")) {
                    Some(f) => RopeScaling::Linear { factor: positive_f32(f, "rope scaling factor")? },
                    None => RopeScaling::None,
                },
                other => bail!("RoPE scaling type {other:?} is not supported (only linear)"),
            },
            Some(_) => bail!("rope_type is not a string"),
        };

        let token_ids = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
            .iter()
            .filter_map(|t| c.get(&format!("{t}_token_id")).and_then(Value::as_i64).map(|id| (t.to_string(), id)))
            .collect();

        Ok(Self {
            hidden_size,
            intermediate_size: dim(c, "intermediate_size", None)?,
            n_layers: dim(c, "num_hidden_layers", None)?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: dim(c, "vocab_size", Some(32000))?,
            context_length: dim(c, "max_position_embeddings", Some(2048))?,
            rms_norm_eps: match opt(c, "rms_norm_eps") {
                None => 1e-6,
                Some(v) => positive_f32(v, "rms_norm_eps")?,
            },
            rope_theta,
            rope_scaling,
            tie_word_embeddings: match opt(c, "tie_word_embeddings") {
                None => false,
                Some(v) => v.as_bool().context("tie_word_embeddings is not a boolean")?,
            },
            dtype: opt(c, "torch_dtype").or_else(|| opt(c, "dtype")).and_then(Value::as_str).map(str::to_owned),
            token_ids,
        })
    }

    /// Rows of the query projection.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Rows of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// A key's value, treating JSON `null` as absent.
fn opt<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// A positive integer dimension, with an optional default when absent.
fn dim(c: &Map<String, Value>, key: &str, default: Option<usize>) -> Result<usize> {
    let Some(v) = opt(c, key) else {
        return default.with_context(|| format!("missing {key:?}"));
    };
    match v.as_u64() {
        Some(n) if n > 0 && n <= MAX_DIM => Ok(n as usize),
        _ => bail!("{key} = {v} is not a positive integer up to {MAX_DIM}"),
    }
}

fn positive_f32(v: &Value, what: &str) -> Result<f32> {
    match v.as_f64() {
        Some(x) if x > 0.0 && x.is_finite() && x < f32::MAX as f64 => Ok(x as f32),
        _ => bail!("{what} = {v} is not a positive number"),
    }
}
