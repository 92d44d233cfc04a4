#!/usr/bin/env python3
"""Generate the K-quant fixtures of kernels/tests/k_quants.rs.

References: ggml's C reference quantizers `quantize_row_q{2..6,8}_K_ref`
and its generic (scalar) dot products `ggml_vec_dot_q*_K_q8_K_generic`,
called through ctypes from libggml-base.so / libggml-cpu.so (set GGML_LIB_DIR,
or build llama.cpp at ~/.cache/qllama-ref/llama.cpp/build), and gguf-py's
`gguf.quants.dequantize` (numpy) for the dequantized values. The script
checks that gguf-py and ggml's `dequantize_row_*` agree bit for bit (gguf-py
has no Q8_K; its values come from ggml). For each type this writes
kernels/tests/fixtures/<type>.bin:

    f32 LE inputs (n) | ggml quantized | dequantized f32 LE (n)
      | Q8_K activations (ggml-quantized, weights types only)
      | ggml generic dot per super-block (f32 LE, n/256) | dot of the whole row (f32 LE)

and kernels/tests/fixtures/k_index.txt:

    type <name> <file> <n_values> <quant_bytes> <act_bytes>
    case <name> <case> <first_value> <n_values>

Cases are whole super-blocks. Run from the repository root:
    python3 tools/gen_kquant_fixtures.py
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
from gguf.quants import dequantize

OUT = pathlib.Path(__file__).resolve().parent.parent / "kernels" / "tests" / "fixtures"
QK_K = 256
LIB_DIR = pathlib.Path(os.environ.get("GGML_LIB_DIR", os.path.expanduser("~/.cache/qllama-ref/llama.cpp/build/bin")))
Q8K_SIZE = 292
WEIGHTS = [(T.Q2_K, "q2_k", "q2_K"), (T.Q3_K, "q3_k", "q3_K"), (T.Q4_K, "q4_k", "q4_K"),
           (T.Q5_K, "q5_k", "q5_K"), (T.Q6_K, "q6_k", "q6_K")]


def ggml_quantize(base: ctypes.CDLL, cname: str, x: np.ndarray, type_size: int) -> bytes:
    """ggml's own reference quantizer, quantize_row_<cname>_ref."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = ctypes.create_string_buffer(x.size // QK_K * type_size)  # zeroed
    fn = getattr(base, f"quantize_row_{cname}_ref")
    fn.restype = None
    fn(x.ctypes.data_as(ctypes.c_void_p), out, ctypes.c_int64(x.size))
    return out.raw


def ggml_dequantize(base: ctypes.CDLL, cname: str, q: bytes, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    fn = getattr(base, f"dequantize_row_{cname}")
    fn.restype = None
    buf = ctypes.create_string_buffer(q, len(q))
    fn(buf, out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n))
    return out


def ggml_dot(cpu: ctypes.CDLL, cname: str, wq: bytes, aq: bytes, n: int) -> float:
    """ggml_vec_dot_<cname>_q8_K_generic over n values."""
    fn = getattr(cpu, f"ggml_vec_dot_{cname}_q8_K_generic")
    fn.restype = None
    s = ctypes.c_float(0)
    fn(ctypes.c_int(n), ctypes.byref(s), ctypes.c_size_t(0), ctypes.create_string_buffer(wq, len(wq)),
       ctypes.c_size_t(0), ctypes.create_string_buffer(aq, len(aq)), ctypes.c_size_t(0), ctypes.c_int(1))
    return s.value


def f32_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def weight_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Super-blocks aimed at the edges of ggml's K-quant scale searches."""
    cases = [("zeros", np.zeros(QK_K))]
    # All-zero sub-blocks (of 16 and of 32) inside a live super-block.
    zs = rng.normal(0, 1, QK_K)
    zs[0:16] = 0
    zs[64:96] = 0
    zs[240:256] = 0
    cases.append(("zero_subblocks", zs))
    out = rng.normal(0, 0.02, 2 * QK_K)
    out[5] = 40.0  # one outlier squashes its sub-block and the super-scale
    out[QK_K + 200] = -40.0
    cases.append(("outlier", out))
    neg = rng.uniform(-1, 1, 2 * QK_K)
    neg[3] = -3.0
    neg[QK_K + 130] = -2.5
    neg[QK_K:QK_K + 16] = -rng.uniform(0, 1, 16)  # an all-negative sub-block
    cases.append(("negative_max", neg))
    # Tiny values: above ggml's 1e-15 "all zero" threshold (d underflows in
    # f16), below it, and f32 subnormals.
    cases.append(("tiny", rng.normal(0, 1, QK_K) * 1e-12))
    cases.append(("below_eps", rng.normal(0, 1, QK_K) * 1e-17))
    sub = f32_bits(rng.integers(1, 0x007FFFFF, QK_K)) * rng.choice([-1, 1], QK_K)
    cases.append(("subnormal", sub))
    # Large magnitudes: d still finite in f16, then beyond it (d = inf).
    cases.append(("large", rng.normal(0, 1, QK_K) * 1e4))
    cases.append(("f16_edge", rng.uniform(-1, 1, QK_K) * 6e4))
    huge = rng.uniform(-1, 1, QK_K) * 1e30
    huge[7], huge[200] = 1e30, -1e30
    cases.append(("huge", huge))
    cases.append(("uniform_positive", rng.uniform(0.5, 2, QK_K)))
    cases.append(("constant", np.concatenate([np.full(QK_K, 0.3), np.full(QK_K, -7.0)])))
    cases.append(("normal", rng.normal(0, 1, 6 * QK_K)))
    scale = np.repeat(10.0 ** rng.uniform(-4, 4, 2 * QK_K // 16), 16)
    cases.append(("normal_scaled", rng.normal(0, 1, 2 * QK_K) * scale))
    return cases


def q8k_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    cases = weight_cases(rng)
    # max = -127 gives iscale = 1, so x + 0.5 lands on exact ties (to even).
    ties = np.concatenate([[-127.0], np.arange(-127, 128)[:255] + 0.5])
    ties[-1] = 126.5
    cases.append(("round_ties", ties))
    cases.append(("round_ties_positive", -ties))
    return cases


def activations(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(0, 1, n)
    a[::37] *= 20.0  # a few large activations, as residual streams have
    a[QK_K:2 * QK_K] = 0.0  # one all-zero activation block
    return a.astype(np.float32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240611)
    base = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
    cpu = ctypes.CDLL(str(LIB_DIR / "libggml-cpu.so"))
    cpu.ggml_cpu_init()  # fills the f16 -> f32 table the CPU kernels read d through
    index = [f"# generated by tools/gen_kquant_fixtures.py with gguf {version('gguf')}, numpy {np.__version__}",
             "# type <name> <file> <n_values> <quant_bytes> <act_bytes>",
             "# case <type> <case> <first_value> <n_values>",
             "# file = f32 inputs | ggml quantized | dequantized f32 | Q8_K activations"
             " | ggml generic dot per super-block f32 | whole-row dot f32"]
    total = 0
    for qtype, name, cname in WEIGHTS + [(T.Q8_K, "q8_k", "q8_K")]:
        cases = q8k_cases(rng) if qtype == T.Q8_K else weight_cases(rng)
        x = np.concatenate([np.asarray(c, dtype=np.float32) for _, c in cases])
        assert all(np.asarray(c).size % QK_K == 0 for _, c in cases)
        n, nb = x.size, x.size // QK_K
        ts = Q8K_SIZE if qtype == T.Q8_K else GGML_QUANT_SIZES[qtype][1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf/NaN in the huge case
            q = ggml_quantize(base, cname, x, ts)
            deq_c = ggml_dequantize(base, cname, q, n)
            if qtype == T.Q8_K:
                deq = deq_c  # not in gguf-py
            else:
                deq = dequantize(np.frombuffer(q, dtype=np.uint8).reshape(1, -1), qtype).astype(np.float32).reshape(-1)
                same = (deq.view(np.uint32) == deq_c.view(np.uint32)) | (np.isnan(deq) & np.isnan(deq_c))
                print(f"{name}: gguf-py and ggml dequantize differ at {np.flatnonzero(~same)[:10]}")
        act, dots = b"", b""
        if qtype != T.Q8_K:
            act = ggml_quantize(base, "q8_K", activations(rng, n), Q8K_SIZE)
            per_block = [ggml_dot(cpu, cname, q[b * ts:(b + 1) * ts], act[b * Q8K_SIZE:(b + 1) * Q8K_SIZE], QK_K)
                         for b in range(nb)]
            whole = ggml_dot(cpu, cname, q, act, n)
            dots = np.asarray(per_block + [whole], dtype="<f4").tobytes()
        blob = x.astype("<f4").tobytes() + q + deq.astype("<f4").tobytes() + act + dots
        (OUT / f"{name}.bin").write_bytes(blob)
        total += len(blob)
        index.append(f"type {name} {name}.bin {n} {len(q)} {len(act)}")
        first = 0
        for case, c in cases:
            index.append(f"case {name} {case} {first} {np.asarray(c).size}")
            first += np.asarray(c).size
    (OUT / "k_index.txt").write_text("\n".join(index) + "\n")
    print(f"wrote {len(WEIGHTS) + 1} fixtures, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
