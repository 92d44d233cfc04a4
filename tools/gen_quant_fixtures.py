#!/usr/bin/env python3
"""Generate the quantization fixtures of kernels/tests/formats.rs.

Two references: gguf-py's `gguf.quants.quantize` / `dequantize` (numpy ports
of ggml's reference quantizers, used by llama.cpp's converter), and ggml's C
`quantize_row_*_ref` itself, called from libggml-base.so (set GGML_LIB, or
build llama.cpp at ~/.cache/qllama-ref/llama.cpp/build). The two agree except
for the sign of d in Q4_0/Q5_0 blocks of all -0.0 (C: -0, numpy: +0); the
C bytes also give Q8_1, which gguf-py cannot make. For each type this writes
kernels/tests/fixtures/<type>.bin:

    f32 LE inputs (n) | gguf quantized | gguf dequantized f32 LE (n) | ggml C quantized

(a missing reference has length 0) and to kernels/tests/fixtures/index.txt:

    type <name> <file> <n_values> <gguf_quant_bytes> <ggml_quant_bytes>
    case <name> <case> <first_value> <n_values>

plus gguf-py's type table (`typeinfo <name> <id> <block_size> <type_size>`).

Cases are whole blocks. Run from the repository root:
    python3 tools/gen_quant_fixtures.py
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import warnings

from importlib.metadata import version

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).resolve().parent.parent / "kernels" / "tests" / "fixtures"
QK = 32
GGML_LIB = os.environ.get("GGML_LIB", os.path.expanduser("~/.cache/qllama-ref/llama.cpp/build/bin/libggml-base.so"))


def ggml_quantize(lib: ctypes.CDLL, name: str, x: np.ndarray, type_size: int) -> bytes:
    """ggml's own reference quantizer, quantize_row_<name>_ref."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = ctypes.create_string_buffer(x.size // QK * type_size)
    fn = getattr(lib, f"quantize_row_{name}_ref")
    fn.restype = None
    fn(x.ctypes.data_as(ctypes.c_void_p), out, ctypes.c_int64(x.size))
    return out.raw


def f32_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def legacy_cases(rng: np.random.Generator, big: float) -> list[tuple[str, np.ndarray]]:
    """Blocks of 32 aimed at the edges of ggml's 32-weight quantizers."""
    cases = []
    cases.append(("zeros", np.zeros(2 * QK)))
    # -0.0 everywhere: max stays +0.0 for Q4_0 but min is -0.0 for Q4_1.
    cases.append(("negative_zeros", np.full(QK, -0.0)))
    out = rng.normal(0, 0.02, 2 * QK)
    out[5] = 40.0  # one huge outlier squashes the rest of its block to 0
    out[QK + 17] = -40.0
    cases.append(("outlier", out))
    # Largest magnitude negative: Q4_0/Q5_0 keep its sign in d.
    neg = rng.uniform(-1, 1, 2 * QK)
    neg[3] = -3.0
    neg[QK + 30] = -2.5
    cases.append(("negative_max", neg))
    # +a and -a tie for the largest magnitude: the first one wins.
    tie = rng.uniform(-1, 1, 2 * QK)
    tie[2], tie[9] = 2.0, -2.0
    tie[QK + 2], tie[QK + 9] = -2.0, 2.0
    cases.append(("magnitude_tie", tie))
    # Exact .5 ties after scaling by 1/d, for each format's grid:
    # Q4_0 (max -8 -> d = 1), Q5_0 (max -16), Q4_1 (0..15), Q5_1 (0..31),
    # Q8_0 (amax 127 -> d = 1).
    q4_0 = np.arange(-16, 16) / 2.0
    q5_0 = np.concatenate([np.arange(-32, 0) / 2.0, -np.arange(0, 32) / 2.0])
    q5_0[QK] = -16.0
    q4_1 = np.append(np.arange(0, 31) / 2.0, 15.0)
    q5_1 = np.append(np.arange(0, 31) + 0.5, 31.0)
    q5_1[0] = 0.0
    q8 = np.append([127.0, -126.5, 126.5, -0.5, 0.5, 1.5], np.arange(-13, 13) + 0.5)
    cases.append(("round_ties", np.concatenate([q4_0, q5_0, q4_1, q5_1, q8])))
    # The same grids scaled by a power of two stay exact.
    cases.append(("round_ties_scaled", np.concatenate([q4_0 * 2.0**-10, q8 * 2.0**6])))
    # Subnormal values next to normal ones, all-subnormal blocks (d rounds
    # to 0 in f16, 1/d overflows), and tiny normals whose d is subnormal.
    sub = rng.uniform(-1, 1, QK) * 1e-39
    sub[0] = 1.0
    sub[1] = -0.75
    allsub = f32_bits(rng.integers(1, 0x007FFFFF, QK)) * rng.choice([-1, 1], QK)
    tiny = rng.uniform(-1, 1, QK) * 1e-37
    cases.append(("subnormal", np.concatenate([sub, allsub, tiny])))
    # Huge values: d (and m) overflow f16 to infinity.
    huge = rng.uniform(-1, 1, 2 * QK) * big
    huge[0] = big
    huge[QK] = -big
    cases.append(("huge", huge))
    # Largest values f16 holds: d stays finite.
    cases.append(("f16_range", rng.uniform(-1, 1, QK) * 6e4))
    # Constant blocks: d = 0 for Q4_1/Q5_1, with the value in m.
    cases.append(("constant", np.concatenate([np.full(QK, 0.3), np.full(QK, -7.0)])))
    cases.append(("normal", rng.normal(0, 1, 16 * QK)))
    cases.append(("normal_scaled", rng.normal(0, 1, 8 * QK) * np.repeat(10.0 ** rng.integers(-6, 6, 8), QK)))
    cases.append(("uniform_positive", rng.uniform(0.5, 2, 2 * QK)))
    return cases


def float_cases(rng: np.random.Generator, qtype: T) -> list[tuple[str, np.ndarray]]:
    cases = []
    qnans = f32_bits([0x7FC00000, 0xFFC00000, 0x7FC12345, 0xFFE00001, 0x7FFFFFFF, 0xFFFFE000])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1.0, -1.0], dtype=np.float32)
    cases.append(("specials", np.concatenate([specials, qnans])))
    cases.append(("normal", rng.normal(0, 1, 512)))
    cases.append(("normal_scaled", rng.normal(0, 1, 256) * 10.0 ** rng.integers(-30, 30, 256)))
    if qtype == T.F16:
        # numpy keeps NaN payloads bits as they are, signalling ones included.
        snans = f32_bits([0x7F800001, 0x7FA00000, 0xFF802000, 0x7F801FFF])
        # Ties between two f16 values round to even; around 65504 to inf.
        ties = np.array([1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11), 2**-24 * 0.5, 2**-24 * 1.5,
                         2**-24 * 0.49, 2**-14 * (1 + 2**-11), 65504.0, 65519.0, 65520.0, -65520.0,
                         6e4, -6e4, 7e4, 1e-8, 3e-8, 5.96e-8, 6.1e-5], dtype=np.float32)
        # f16 subnormals and values near them.
        subs = rng.uniform(-1, 1, 128) * 2.0**-14
        # Every 7th f16 bit pattern, as f32 (exact), to check the way back.
        grid = np.arange(0, 65536, 7, dtype=np.uint16).view(np.float16).astype(np.float32)
        cases += [("signalling_nans", snans), ("ties", ties), ("subnormals", subs), ("f16_grid", grid)]
    else:
        snans = f32_bits([0x7F800001, 0x7FA00000, 0xFF800001, 0x7F80FFFF, 0x7FBFFFFF, 0xFF80C000])
        # Ties (1 + 2^-8 is halfway between two bf16 values), rounding to inf.
        ties = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-8 + 2**-20, 3.3895314e38,
                         3.4e38, -3.4e38, 1e30, -1e30, 1e-40, -1e-40, 1e-45], dtype=np.float32)
        randbits = f32_bits(rng.integers(0, 2**32, 2048, dtype=np.uint64).astype(np.uint32))
        grid = (np.arange(0, 65536, 7, dtype=np.uint32) << 16).view(np.float32)
        cases += [("signalling_nans", snans), ("ties", ties), ("random_bits", randbits), ("bf16_grid", grid)]
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240517)
    index = [f"# generated by tools/gen_quant_fixtures.py with gguf {version('gguf')}, numpy {np.__version__}",
             "# type <name> <file> <n_values> <gguf_quant_bytes> <ggml_quant_bytes>",
             "# case <type> <case> <first_value> <n_values>",
             "# file = f32 LE inputs | gguf quantized | gguf dequantized f32 LE | ggml C quantized"]
    lib = ctypes.CDLL(GGML_LIB)
    types = [(T.F16, "f16"), (T.BF16, "bf16"), (T.Q4_0, "q4_0"), (T.Q4_1, "q4_1"),
             (T.Q5_0, "q5_0"), (T.Q5_1, "q5_1"), (T.Q8_0, "q8_0"), (T.Q8_1, "q8_1")]
    total = 0
    for qtype, name in types:
        if qtype in (T.F16, T.BF16):
            cases = float_cases(rng, qtype)
        else:
            cases = legacy_cases(rng, 1e30)
        x = np.concatenate([np.asarray(c, dtype=np.float32) for _, c in cases])
        q, deq, cq = b"", b"", b""
        if qtype != T.Q8_1:  # gguf-py has no Q8_1 quantizer
            with warnings.catch_warnings():
                # Overflowing 1/d in tiny blocks is part of what is tested.
                warnings.simplefilter("ignore", RuntimeWarning)
                qa = np.ascontiguousarray(quantize(x.reshape(1, -1), qtype)).view(np.uint8).reshape(-1)
                da = dequantize(qa.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
            assert da.size == x.size
            q, deq = qa.tobytes(), da.astype("<f4").tobytes()
        if qtype not in (T.F16, T.BF16):
            assert all(np.asarray(c).size % QK == 0 for _, c in cases)
            cq = ggml_quantize(lib, name, x, GGML_QUANT_SIZES[qtype][1] if qtype != T.Q8_1 else 36)
            if q:
                ts = len(q) // (x.size // QK)
                diff = [b for b in range(x.size // QK) if q[b * ts:(b + 1) * ts] != cq[b * ts:(b + 1) * ts]]
                print(f"{name}: gguf-py and ggml differ in blocks {diff}")
        blob = x.astype("<f4").tobytes() + q + deq + cq
        (OUT / f"{name}.bin").write_bytes(blob)
        total += len(blob)
        index.append(f"type {name} {name}.bin {x.size} {len(q)} {len(cq)}")
        first = 0
        for case, c in cases:
            n = np.asarray(c).size
            index.append(f"case {name} {case} {first} {n}")
            first += n
    # The type table as gguf-py has it, to check ids and sizes against.
    index.append("# typeinfo <name> <ggml id> <block_size> <type_size>")
    for name in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                 "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]:
        qtype = T[name]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        index.append(f"typeinfo {name.lower()} {int(qtype)} {block_size} {type_size}")
    (OUT / "index.txt").write_text("\n".join(index) + "\n")
    print(f"wrote {len(types)} fixtures, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
