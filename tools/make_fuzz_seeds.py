#!/usr/bin/env python3
"""Writes the seed inputs of the GGUF fuzz targets (fuzz/seeds/<target>/).

The seeds are small valid GGUF files written by the `gguf` Python package
(llama.cpp's own writer), so the fuzzers start from the real format rather
than from our writer's idea of it. Run from the repository root:

    python3 tools/make_fuzz_seeds.py
"""
from pathlib import Path

import numpy as np
import gguf

ROOT = Path(__file__).resolve().parent.parent / "fuzz" / "seeds"


def writer(path: Path, alignment: int | None = None) -> gguf.GGUFWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment is not None:
        # Sets both the key and the layout (a bare general.alignment key
        # would not move the tensors).
        w.add_custom_alignment(alignment)
    return w


def finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def values(path: Path) -> None:
    """Every metadata value type, including nested arrays."""
    w = writer(path)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 1.5)
    w.add_bool("t.bool", True)
    w.add_string("t.string", "Grüße 🦙")
    w.add_uint64("t.u64", 2**63)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -2.25)
    w.add_array("t.array.i32", [1, -2, 3])
    w.add_array("t.array.string", ["<s>", "", "▁a"])
    w.add_array("t.array.nested", [[1, 2], [3]])
    # (gguf-py refuses to write empty arrays; tests/gguf_writer.rs covers them.)
    finish(w)


def tensors(path: Path) -> None:
    """Tensors of several types, with a non-default alignment."""
    w = writer(path, alignment=64)
    rng = np.random.default_rng(0)
    w.add_tensor("f32", rng.standard_normal((2, 8)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((3,)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((1, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8_0", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    finish(w)


def vocab(path: Path) -> None:
    """A tiny Llama-style SentencePiece vocabulary: control tokens, the 256
    byte-fallback tokens, and a few word pieces with scores."""
    words = ["▁", "a", "b", "c", "▁a", "▁b", "ab", "▁ab", "▁abc", "bc", "."]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + words
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(words))]
    w = writer(path)
    w.add_block_count(1)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    finish(w)


def minimal(path: Path) -> None:
    finish(writer(path))


if __name__ == "__main__":
    for target in ["gguf_header", "gguf_tokenizer"]:
        for old in (ROOT / target).glob("*.gguf"):
            old.unlink()
    minimal(ROOT / "gguf_header" / "minimal.gguf")
    values(ROOT / "gguf_header" / "values.gguf")
    tensors(ROOT / "gguf_header" / "tensors.gguf")
    vocab(ROOT / "gguf_header" / "vocab.gguf")
    vocab(ROOT / "gguf_tokenizer" / "vocab.gguf")
    for p in sorted(ROOT.rglob("*.gguf")):
        print(p.relative_to(ROOT.parent.parent), p.stat().st_size)
