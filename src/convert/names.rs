//! Hugging Face Llama tensor names → llama.cpp's GGUF names, expected shapes,
//! and which tensors get llama.cpp's Q/K row permutation.

use super::config::HParams;

/// How a tensor is treated beyond renaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    TokenEmbd,
    Output,
    Norm,
    /// Query/key projection: rows permuted for `n_head` heads.
    Rope {
        n_head: usize,
    },
    Weight,
}

/// One GGUF tensor and where it comes from.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub gguf_name: String,
    pub role: Role,
    /// Expected PyTorch (row-major) shape.
    pub shape: Vec<usize>,
}

/// Map a checkpoint tensor name; `None` for names that are not Llama weights.
pub fn map_name(name: &str, hp: &HParams) -> Option<Mapped> {
    let (h, ff, v) = (hp.hidden_size, hp.intermediate_size, hp.vocab_size);
    let m = |n: &str, role, shape: &[usize]| Some(Mapped { gguf_name: n.to_string(), role, shape: shape.to_vec() });
    match name {
        "model.embed_tokens.weight" => return m("token_embd.weight", Role::TokenEmbd, &[v, h]),
        "lm_head.weight" => return m("output.weight", Role::Output, &[v, h]),
        "model.norm.weight" => return m("output_norm.weight", Role::Norm, &[h]),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, leaf) = rest.split_once('.')?;
    // Plain decimal only: "01" or "+1" would alias another layer.
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
        return None;
    }
    let bid: usize = layer.parse().ok().filter(|&b| b < hp.n_layers)?;
    let (leaf_name, role, shape): (&str, Role, Vec<usize>) = match leaf {
        "input_layernorm.weight" => ("attn_norm", Role::Norm, vec![h]),
        "post_attention_layernorm.weight" => ("ffn_norm", Role::Norm, vec![h]),
        "self_attn.q_proj.weight" => ("attn_q", Role::Rope { n_head: hp.n_heads }, vec![hp.q_dim(), h]),
        "self_attn.k_proj.weight" => ("attn_k", Role::Rope { n_head: hp.n_kv_heads }, vec![hp.kv_dim(), h]),
        "self_attn.v_proj.weight" => ("attn_v", Role::Weight, vec![hp.kv_dim(), h]),
        "self_attn.o_proj.weight" => ("attn_output", Role::Weight, vec![h, hp.q_dim()]),
        "mlp.gate_proj.weight" => ("ffn_gate", Role::Weight, vec![ff, h]),
        "mlp.up_proj.weight" => ("ffn_up", Role::Weight, vec![ff, h]),
        "mlp.down_proj.weight" => ("ffn_down", Role::Weight, vec![h, ff]),
        _ => return None,
    };
    Some(Mapped { gguf_name: format!("blk.{bid}.{leaf_name}.weight"), role, shape })
}

/// Checkpoint names that are not weights and are skipped, as llama.cpp does.
pub fn is_ignored(name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
}

/// Every checkpoint tensor a Llama model needs (`lm_head` only when untied).
pub fn required_names(hp: &HParams) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string(), "model.norm.weight".to_string()];
    if !hp.tie_word_embeddings {
        names.push("lm_head.weight".into());
    }
    for b in 0..hp.n_layers {
        for leaf in [
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            names.push(format!("model.layers.{b}.{leaf}.weight"));
        }
    }
    names
}

/// The source row of output row `r` under llama.cpp's Q/K permutation: within
/// each head of `d` rows, output row `2i + j` takes input row `j·d/2 + i`
/// (`reshape(n_head, 2, d/2, cols).swapaxes(1, 2)`), turning HF's
/// rotate-half RoPE layout into ggml's interleaved pairs.
pub fn permuted_src_row(r: usize, rows: usize, n_head: usize) -> usize {
    let d = rows / n_head;
    let (head, within) = (r / d, r % d);
    let (i, j) = (within / 2, within % 2);
    head * d + j * (d / 2) + i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_reshape_swapaxes() {
        // n_head = 2, d = 4: reshape(2, 2, 2).swapaxes(1, 2) takes rows
        // [0, 2, 1, 3, 4, 6, 5, 7].
        let got: Vec<usize> = (0..8).map(|r| permuted_src_row(r, 8, 2)).collect();
        assert_eq!(got, [0, 2, 1, 3, 4, 6, 5, 7]);
    }
}
