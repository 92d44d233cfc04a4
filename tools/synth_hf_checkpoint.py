#!/usr/bin/env python3
"""Write a random Hugging Face Llama checkpoint at given shapes.

For measuring and testing `qllama convert` (and llama.cpp's converter) at real
model sizes without downloading one. Weights are normal with std 0.02 (the
Llama initializer range), norms near 1; tensors are written shard by shard,
so only one tensor is ever in memory. Tokenizer files are copied from
../shared/models/llama2-tokenizer.

    tools/synth_hf_checkpoint.py OUT_DIR --shape 7b
    tools/synth_hf_checkpoint.py OUT_DIR --shape tiny --attn gqa --layers 2
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = ROOT.parent / "shared" / "models" / "llama2-tokenizer"

SHAPES = {
    # Llama 2 7B.
    "7b": dict(hidden=4096, ffn=11008, layers=32, heads=32, vocab=32000, ctx=4096),
    # Small enough for tests; --attn picks the KV heads.
    "tiny": dict(hidden=256, ffn=768, layers=2, heads=8, vocab=32000, ctx=2048),
}
DTYPES = {"f16": np.float16, "bf16": None, "f32": np.float32}


def tensor_specs(c):
    """(name, shape, kind) for every tensor, in layer order."""
    h, ff, v = c["hidden"], c["ffn"], c["vocab"]
    hd = h // c["heads"]
    q, kv = c["heads"] * hd, c["kv_heads"] * hd
    yield "model.embed_tokens.weight", (v, h), "w"
    for b in range(c["layers"]):
        p = f"model.layers.{b}."
        yield p + "input_layernorm.weight", (h,), "norm"
        yield p + "self_attn.q_proj.weight", (q, h), "w"
        yield p + "self_attn.k_proj.weight", (kv, h), "w"
        yield p + "self_attn.v_proj.weight", (kv, h), "w"
        yield p + "self_attn.o_proj.weight", (h, q), "w"
        yield p + "post_attention_layernorm.weight", (h,), "norm"
        yield p + "mlp.gate_proj.weight", (ff, h), "w"
        yield p + "mlp.up_proj.weight", (ff, h), "w"
        yield p + "mlp.down_proj.weight", (h, ff), "w"
    yield "model.norm.weight", (h,), "norm"
    if not c["tie"]:
        yield "lm_head.weight", (v, h), "w"


def make(rng, shape, kind, dtype):
    if kind == "norm":
        x = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
    else:
        x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
    if dtype is None:  # bf16: round to nearest even, stored as uint16 bits
        bits = x.view(np.uint32)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return bits.astype(np.uint16)
    return x.astype(dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--shape", choices=SHAPES, default="tiny")
    ap.add_argument("--attn", choices=["mha", "gqa", "mqa"], default=None,
                    help="KV heads: mha = heads, gqa = heads/4, mqa = 1 (default: mha for 7b, gqa for tiny)")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--ffn", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--tie", action="store_true", help="tied embeddings (no lm_head)")
    ap.add_argument("--dtype", choices=DTYPES, default="f16")
    ap.add_argument("--shard-mb", type=int, default=1000, help="approximate shard size")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    c = dict(SHAPES[a.shape])
    for k in ("hidden", "ffn", "layers", "heads", "vocab"):
        if getattr(a, k) is not None:
            c[k] = getattr(a, k)
    attn = a.attn or ("mha" if a.shape == "7b" else "gqa")
    c["kv_heads"] = {"mha": c["heads"], "gqa": max(1, c["heads"] // 4), "mqa": 1}[attn]
    c["tie"] = a.tie

    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}[a.dtype]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c["hidden"], "intermediate_size": c["ffn"], "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"], "num_key_value_heads": c["kv_heads"],
        "max_position_embeddings": c["ctx"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": None, "vocab_size": c["vocab"], "tie_word_embeddings": c["tie"],
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": torch_dtype,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}) + "\n")
    for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(TOKENIZER_DIR / f, out / f)

    # Plan shards by size, then write them one at a time.
    esize = 4 if a.dtype == "f32" else 2
    specs = list(tensor_specs(c))
    shards, cur, cur_bytes = [], [], 0
    for s in specs:
        nbytes = int(np.prod(s[1])) * esize
        if cur and cur_bytes + nbytes > a.shard_mb << 20:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(s)
        cur_bytes += nbytes
    shards.append(cur)

    rng = np.random.default_rng(a.seed)
    weight_map, total = {}, 0
    st_dtype = {"f16": "F16", "bf16": "BF16", "f32": "F32"}[a.dtype]
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(out / fname, shard, st_dtype, esize,
                             lambda shape, kind: make(rng, shape, kind, DTYPES[a.dtype]))
        for name, _, _ in shard:
            weight_map[name] = fname
        print(f"wrote {fname}", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_shard(path, specs, st_dtype, esize, gen):
    """Write a safetensors file one tensor at a time (the format is a JSON
    header, padded with spaces to 8 bytes, then the tensors back to back;
    safetensors.numpy.save_file would need the whole shard in memory, and
    has no bfloat16). Tensors are stored in name order, as HF does."""
    specs = sorted(specs)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * esize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name, shape, kind in specs:
            f.write(np.ascontiguousarray(gen(shape, kind)).tobytes())
    return off


if __name__ == "__main__":
    main()
