//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type`
//! (src/llama-quant.cpp) for the Llama architecture, as `llama-quantize`
//! applies it to an F32/F16/BF16 file. Both `convert` and `quantize` use it,
//! so `convert --type T` gives the file `convert_hf_to_gguf.py` followed by
//! `llama-quantize T` gives.
//!
//! Only the rules reachable for a dense Llama without an importance matrix
//! are here (no Falcon, mixture-of-experts or IQ-type rules).

use super::OutType;
use qllama_kernels::GgmlDType;

/// What the policy needs to know about the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// No `output.weight`: `token_embd.weight` doubles as the output.
    pub tied_output: bool,
}

impl ModelInfo {
    /// Query heads per KV head (llama.cpp's `n_gqa()`).
    fn n_gqa(&self) -> usize {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's `LLM_TYPE_70B` for Llama: 80 layers with grouped-query
    /// attention (80 layers without it is the 65B).
    fn is_70b(&self) -> bool {
        self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// llama.cpp's tensor categories (`tensor_get_category`), by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    Output,
    /// `attn_v`, and the fused `attn_qkv`/`attn_kv_b` that llama.cpp treats
    /// the same way (`category_is_attn_v`).
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

impl Category {
    fn of(name: &str) -> Self {
        if name == "output.weight" {
            Self::Output
        } else if name == "token_embd.weight" {
            Self::TokenEmbd
        } else if ["attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight"].iter().any(|s| name.contains(s)) {
            Self::AttnV
        } else if name.contains("attn_output.weight") {
            Self::AttnOutput
        } else if name.contains("ffn_down") {
            Self::FfnDown
        } else {
            Self::Other
        }
    }
}

/// Whether llama-quantize would quantize this tensor at all: 2-D or more,
/// a `weight`, and not a norm. Others keep their type (the converter writes
/// them as F32).
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    n_dims >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
}

/// The layer of a `blk.N.` tensor. llama.cpp counts `attn_v`/`ffn_down`
/// tensors in layer order instead; for Llama (one of each per layer) that
/// count is the layer number.
fn layer_of(name: &str) -> usize {
    name.strip_prefix("blk.").and_then(|r| r.split_once('.')).and_then(|(n, _)| n.parse().ok()).unwrap_or(0)
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and
/// every third layer in between.
fn use_more_bits(i_layer: usize, n_layer: usize) -> bool {
    i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer as isize - (n_layer / 8) as isize) % 3 == 2
}

/// The type of a tensor that [`allows_quantization`], with rows of
/// `row_len` weights.
pub fn tensor_type(out: OutType, model: &ModelInfo, name: &str, row_len: usize) -> GgmlDType {
    use GgmlDType as T;
    use OutType as O;
    let default = out.dtype();
    // F32/F16/BF16 files: every weight is that type, no policy.
    if !default.is_quantized() {
        return default;
    }
    let (i, n) = (layer_of(name), model.n_layer);
    let cat = Category::of(name);
    let mut t = default;
    let is_output = cat == Category::Output || (cat == Category::TokenEmbd && model.tied_output);
    match cat {
        // Output (or a tied embedding): Q6_K, or Q8_0 when rows are not whole
        // blocks of the default type; a Q8_0 file stays Q8_0.
        _ if is_output => {
            if !row_len.is_multiple_of(default.block_size()) {
                t = T::Q8_0;
            } else if t != T::Q8_0 {
                t = T::Q6K;
            }
        }
        Category::Output | Category::TokenEmbd | Category::Other => {}
        Category::AttnV => {
            t = match out {
                O::Q2_K if model.n_gqa() >= 4 => T::Q4K,
                O::Q2_K => T::Q3K,
                O::Q3_K_M if i < 2 => T::Q5K,
                O::Q3_K_M => T::Q4K,
                O::Q4_K_M | O::Q5_K_M if use_more_bits(i, n) => T::Q6K,
                O::Q4_K_S if i < 4 => T::Q5K,
                _ => t,
            };
            // 70B: eight query heads share each V row, so V is small and
            // more bits cost little.
            if model.is_70b() && matches!(t, T::Q3K | T::Q4K) {
                t = T::Q5K;
            }
        }
        Category::FfnDown => {
            t = match out {
                O::Q2_K => T::Q3K,
                O::Q3_K_M if i < n / 16 => T::Q5K,
                O::Q3_K_M => T::Q4K,
                O::Q4_K_M | O::Q5_K_M if use_more_bits(i, n) => T::Q6K,
                O::Q4_K_S if i < n / 8 => T::Q5K,
                _ => t,
            };
        }
        Category::AttnOutput => {
            t = match out {
                O::Q2_K => T::Q3K,
                O::Q3_K_M => T::Q4K,
                _ => t,
            };
        }
    }
    fallback(t, row_len)
}

/// llama.cpp's `tensor_type_fallback`: a row that is not whole blocks of the
/// chosen type takes a 32-weight type of about as many bits, or F16 when even
/// that does not fit.
fn fallback(t: GgmlDType, row_len: usize) -> GgmlDType {
    use GgmlDType as T;
    if row_len.is_multiple_of(t.block_size()) {
        return t;
    }
    let f = match t {
        T::Q2K | T::Q3K => T::Q4_0,
        T::Q4K => T::Q5_0,
        T::Q5K => T::Q5_1,
        T::Q6K => T::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(f.block_size()) {
        f
    } else {
        T::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GgmlDType as T;

    const LLAMA2_7B: ModelInfo = ModelInfo { n_layer: 32, n_head: 32, n_head_kv: 32, tied_output: false };

    #[test]
    fn use_more_bits_layers() {
        // llama.cpp's rule for 32 layers: 0-3, 28-31 and every third from 6.
        let more: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(more, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        let more: Vec<usize> = (0..4).filter(|&i| use_more_bits(i, 4)).collect();
        assert_eq!(more, [2, 3]);
    }

    #[test]
    fn legacy_types() {
        let m = &LLAMA2_7B;
        assert_eq!(tensor_type(OutType::Q4_0, m, "output.weight", 4096), T::Q6K);
        assert_eq!(tensor_type(OutType::Q5_1, m, "output.weight", 4096), T::Q6K);
        assert_eq!(tensor_type(OutType::Q8_0, m, "output.weight", 4096), T::Q8_0);
        assert_eq!(tensor_type(OutType::F16, m, "output.weight", 4096), T::F16);
        assert_eq!(tensor_type(OutType::BF16, m, "blk.0.attn_q.weight", 100), T::BF16);
        // Rows of 32k but not 256k: the Q6_K output falls back to Q8_0.
        assert_eq!(tensor_type(OutType::Q4_0, m, "output.weight", 4000), T::Q8_0);
        assert_eq!(tensor_type(OutType::Q4_1, m, "blk.0.ffn_down.weight", 256), T::Q4_1);
        assert_eq!(tensor_type(OutType::Q4_1, m, "blk.0.ffn_down.weight", 100), T::F16);
        assert_eq!(tensor_type(OutType::Q5_0, m, "output.weight", 100), T::F16);
        assert_eq!(tensor_type(OutType::Q4_0, m, "token_embd.weight", 4096), T::Q4_0);
        let tied = ModelInfo { tied_output: true, ..LLAMA2_7B };
        assert_eq!(tensor_type(OutType::Q4_0, &tied, "token_embd.weight", 4096), T::Q6K);
    }

    #[test]
    fn k_mixes() {
        let m = &LLAMA2_7B;
        let ty = |o, name: &str| tensor_type(o, m, name, 4096);
        assert_eq!(ty(OutType::Q4_K_M, "blk.0.attn_v.weight"), T::Q6K);
        assert_eq!(ty(OutType::Q4_K_M, "blk.4.attn_v.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q4_K_M, "blk.6.ffn_down.weight"), T::Q6K);
        assert_eq!(ty(OutType::Q4_K_M, "blk.7.ffn_down.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q4_K_M, "blk.7.attn_q.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q4_K_M, "token_embd.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q4_K_M, "output.weight"), T::Q6K);
        assert_eq!(ty(OutType::Q5_K_M, "blk.31.attn_v.weight"), T::Q6K);
        assert_eq!(ty(OutType::Q5_K_S, "blk.31.attn_v.weight"), T::Q5K);
        assert_eq!(ty(OutType::Q4_K_S, "blk.3.attn_v.weight"), T::Q5K);
        assert_eq!(ty(OutType::Q4_K_S, "blk.4.attn_v.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q4_K_S, "blk.3.ffn_down.weight"), T::Q5K);
        assert_eq!(ty(OutType::Q4_K_S, "blk.4.ffn_down.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.1.attn_v.weight"), T::Q5K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.2.attn_v.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.1.ffn_down.weight"), T::Q5K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.2.ffn_down.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.2.attn_output.weight"), T::Q4K);
        assert_eq!(ty(OutType::Q3_K_M, "blk.2.ffn_up.weight"), T::Q3K);
        assert_eq!(ty(OutType::Q2_K, "blk.2.attn_v.weight"), T::Q3K);
        assert_eq!(ty(OutType::Q2_K, "blk.2.attn_output.weight"), T::Q3K);
        assert_eq!(ty(OutType::Q2_K, "blk.2.ffn_down.weight"), T::Q3K);
        assert_eq!(ty(OutType::Q2_K, "blk.2.ffn_gate.weight"), T::Q2K);
        assert_eq!(ty(OutType::Q6_K, "blk.2.ffn_down.weight"), T::Q6K);
        // Grouped-query attention (4:1 or more): V gets Q4_K in Q2_K.
        let gqa = ModelInfo { n_head_kv: 8, ..LLAMA2_7B };
        assert_eq!(tensor_type(OutType::Q2_K, &gqa, "blk.2.attn_v.weight", 4096), T::Q4K);
        // Llama 2 70B: V gets Q5_K where the mix says Q3_K or Q4_K.
        let l70 = ModelInfo { n_layer: 80, n_head: 64, n_head_kv: 8, tied_output: false };
        assert_eq!(tensor_type(OutType::Q4_K_M, &l70, "blk.11.attn_v.weight", 8192), T::Q5K);
        assert_eq!(tensor_type(OutType::Q4_K_M, &l70, "blk.12.attn_v.weight", 8192), T::Q6K);
        assert_eq!(tensor_type(OutType::Q3_K_M, &l70, "blk.5.attn_v.weight", 8192), T::Q5K);
        assert_eq!(tensor_type(OutType::Q2_K, &l70, "blk.5.attn_v.weight", 8192), T::Q5K);
    }

    #[test]
    fn fallbacks_for_rows_not_whole_super_blocks() {
        let m = &LLAMA2_7B;
        // 11008 (Llama 2 7B FFN) = 43 × 256: no fallback.
        assert_eq!(tensor_type(OutType::Q4_K_M, m, "blk.7.ffn_down.weight", 11008), T::Q4K);
        // 13824 (13B FFN) = 54 × 256 too; 3200 (OpenLLaMA 3B) = 12.5 × 256.
        let ty = |o, name: &str| tensor_type(o, m, name, 3200);
        assert_eq!(ty(OutType::Q2_K, "blk.7.ffn_gate.weight"), T::Q4_0);
        assert_eq!(ty(OutType::Q3_K_M, "blk.7.ffn_up.weight"), T::Q4_0);
        assert_eq!(ty(OutType::Q4_K_M, "blk.7.ffn_down.weight"), T::Q5_0);
        assert_eq!(ty(OutType::Q5_K_S, "blk.7.ffn_down.weight"), T::Q5_1);
        assert_eq!(ty(OutType::Q4_K_M, "blk.6.ffn_down.weight"), T::Q8_0);
        assert_eq!(ty(OutType::Q6_K, "blk.7.ffn_down.weight"), T::Q8_0);
        // The output: Q8_0 straight away when rows are not whole K blocks.
        assert_eq!(ty(OutType::Q4_K_M, "output.weight"), T::Q8_0);
        // Not even whole 32-blocks: F16.
        assert_eq!(tensor_type(OutType::Q4_K_M, m, "blk.7.ffn_down.weight", 100), T::F16);
        assert_eq!(tensor_type(OutType::Q4_K_M, m, "output.weight", 100), T::F16);
    }

    #[test]
    fn what_is_quantized() {
        assert!(allows_quantization("blk.0.attn_q.weight", 2));
        assert!(!allows_quantization("blk.0.attn_norm.weight", 1));
        assert!(!allows_quantization("blk.0.attn_norm.weight", 2));
        assert!(!allows_quantization("rope_freqs.weight", 1));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2));
    }
}
