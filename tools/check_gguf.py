#!/usr/bin/env python3
"""Check a GGUF written by `qllama convert` against its Hugging Face checkpoint.

Independent of qllama: reads the file with the `gguf` Python package and the
checkpoint with `safetensors`, then for every tensor checks
  - the name, shape (ggml order) and type expected for --type,
  - that the dequantized weights (gguf.quants.dequantize) are within the
    quantization error expected for the type of the HF originals (relative
    RMS error per tensor, bounds below),
  - and, with --exact, that the data equals gguf.quants.quantize (ggml's
    reference quantizers) of the permuted HF tensor, byte for byte;
plus the main llama.* metadata against config.json. Exits non-zero on any
failure.

    tools/check_gguf.py OUT.gguf HF_DIR --type q4_0 [--exact]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import load_file

# Worst relative RMS error (|deq - w|_2 / |w|_2) we accept per tensor type. A
# b-bit block format with a per-block scale from the block's absolute maximum
# has an RMS error of about step/sqrt(12), step = 2*amax/2^b; for the weight
# distributions of trained and random Llama checkpoints amax/rms is at most
# about 4 in blocks of 32, so the bounds below leave a margin of about 1.5x.
REL_RMS_BOUND = {
    T.F32: 0.0,
    T.F16: 1e-3,
    T.BF16: 5e-3,
    T.Q8_0: 0.012,
    T.Q5_1: 0.06,
    T.Q5_0: 0.07,
    T.Q4_1: 0.12,
    T.Q4_0: 0.14,
}
OUT_TYPES = {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0,
             "q5_1": T.Q5_1, "q5_0": T.Q5_0, "q4_1": T.Q4_1, "q4_0": T.Q4_0}
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "bf16": 32}
LEAVES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    return f"blk.{parts[2]}.{LEAVES['.'.join(parts[3:-1])]}.weight"


def permute(w, n_head):
    """llama.cpp's Q/K row permutation (HF rotate-half → ggml pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_type(name, shape, out, has_output):
    """Mirror of qllama's rule, which follows llama.cpp (Q8_0 stands in for
    llama-quantize's Q6_K on the output with 4/5-bit types)."""
    if len(shape) == 1 or name.endswith("_norm.weight"):
        return T.F32
    qt = OUT_TYPES[out]
    if qt in (T.F32, T.F16, T.BF16):
        return qt
    row = shape[-1]
    block = gguf.GGML_QUANT_SIZES[qt][0]
    if name == "output.weight" or (name == "token_embd.weight" and not has_output):
        want = T.Q8_0
    else:
        want = qt if row % block == 0 else T.F16
    return want if row % gguf.GGML_QUANT_SIZES[want][0] == 0 else T.F16


def load_hf(hf_dir):
    tensors = {}
    index = hf_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    for f in files:
        for k, v in load_file(str(hf_dir / f)).items():
            tensors[k] = v
    return tensors


def to_f32(a):
    if a.dtype == np.uint16:  # not produced by safetensors.numpy; kept for clarity
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf_file", type=Path)
    ap.add_argument("hf_dir", type=Path)
    ap.add_argument("--type", required=True, choices=OUT_TYPES)
    ap.add_argument("--exact", action="store_true", help="also require byte equality with gguf.quants.quantize")
    a = ap.parse_args()

    cfg = json.loads((a.hf_dir / "config.json").read_text())
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    r = gguf.GGUFReader(str(a.gguf_file))
    fails = []

    def field(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()

    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    want_md = {
        "general.architecture": "llama",
        "general.file_type": FILE_TYPE[a.type],
        "llama.block_count": cfg["num_hidden_layers"],
        "llama.embedding_length": cfg["hidden_size"],
        "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_kv,
        "llama.rope.dimension_count": head_dim,
        "llama.vocab_size": cfg["vocab_size"],
        "tokenizer.ggml.model": "llama",
    }
    for k, v in want_md.items():
        if field(k) != v:
            fails.append(f"metadata {k} = {field(k)!r}, expected {v!r}")
    if len(r.fields["tokenizer.ggml.tokens"].data) != cfg["vocab_size"]:
        fails.append("tokenizer.ggml.tokens length differs from vocab_size")

    hf = load_hf(a.hf_dir)
    by_name = {t.name: t for t in r.tensors}
    has_output = "output.weight" in by_name
    expected_names = {gguf_name(k) for k in hf if not k.endswith("rotary_emb.inv_freq")}
    if set(by_name) != expected_names:
        fails.append(f"tensor names differ: missing {sorted(expected_names - set(by_name))}, "
                     f"extra {sorted(set(by_name) - expected_names)}")

    worst = {}
    for hf_name, w in hf.items():
        name = gguf_name(hf_name)
        t = by_name.get(name)
        if t is None:
            continue
        w = to_f32(w)
        if hf_name.endswith("q_proj.weight"):
            w = permute(w, n_head)
        elif hf_name.endswith("k_proj.weight"):
            w = permute(w, n_kv)
        want_t = expected_type(name, w.shape, a.type, has_output)
        if t.tensor_type != want_t:
            fails.append(f"{name}: type {t.tensor_type.name}, expected {want_t.name}")
            continue
        if [int(d) for d in t.shape] != list(reversed(w.shape)):
            fails.append(f"{name}: shape {list(t.shape)}, expected {list(reversed(w.shape))}")
            continue
        deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w.shape).astype(np.float32)
        rel = float(np.sqrt(np.mean((deq - w) ** 2)) / max(np.sqrt(np.mean(w ** 2)), 1e-30))
        bound = REL_RMS_BOUND[t.tensor_type]
        worst[t.tensor_type.name] = max(worst.get(t.tensor_type.name, 0.0), rel)
        if rel > bound:
            fails.append(f"{name}: relative RMS error {rel:.4g} above {bound} for {t.tensor_type.name}")
        if a.exact:
            ref = gguf.quants.quantize(w, t.tensor_type)
            if not np.array_equal(np.asarray(t.data).view(np.uint8).ravel(), np.asarray(ref).view(np.uint8).ravel()):
                fails.append(f"{name}: data differs from gguf.quants.quantize")

    summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(worst.items()))
    if fails:
        print(f"{a.gguf_file}: FAIL ({len(fails)} problems)")
        for f in fails[:50]:
            print("  " + f)
        sys.exit(1)
    print(f"{a.gguf_file}: OK, {len(r.tensors)} tensors; worst relative RMS error per type: {summary}")


if __name__ == "__main__":
    main()
