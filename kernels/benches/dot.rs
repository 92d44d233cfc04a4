//! Dot-product kernels on one 4096-wide row, and matrix-vector and
//! matrix-matrix products at Llama 2 7B layer shapes, on every instruction
//! set this CPU has.
//! Throughput is weight bytes per second (one multiply-accumulate per weight,
//! so weights/s = MAC/s).
//!
//! `cargo bench -p qllama-kernels --bench dot -- --warm-up-time 1 --measurement-time 2 'dot/q4_0'`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qllama_kernels::formats::interleaved;
use qllama_kernels::matmul::{matmul_with, MatmulScratch, QMatrix};
use qllama_kernels::simd::Isa;
use qllama_kernels::GgmlDType;
use std::hint::black_box;

const WEIGHT_TYPES: [GgmlDType; 13] = [
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::F32,
];

/// Deterministic values in [-1, 1) (xorshift), so runs are comparable.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `len` bytes at a 4-byte-aligned offset of `buf` (block data needs 2, f32 4).
fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    buf.resize(len + 4, 0);
    let off = buf.as_ptr().align_offset(4);
    &mut buf[off..off + len]
}

/// Rows of `cols` random values quantized to `dtype`, into `buf`.
fn quantized(dtype: GgmlDType, rows: usize, cols: usize, seed: u64, buf: &mut Vec<u8>) -> &[u8] {
    let row_bytes = dtype.row_bytes(cols).expect("whole blocks");
    let out = aligned(buf, rows * row_bytes);
    let src = values(cols, seed);
    for (r, dst) in out.chunks_mut(row_bytes).enumerate() {
        // Vary rows cheaply: scale the one random row.
        let row: Vec<f32> = src.iter().map(|v| v * (1.0 + (r % 7) as f32 * 0.1)).collect();
        dtype.quantize_row(&row, dst);
    }
    out
}

fn dot(c: &mut Criterion) {
    const N: usize = 4096;
    let mut g = c.benchmark_group("dot");
    for dtype in WEIGHT_TYPES {
        let (mut wb, mut ab) = (Vec::new(), Vec::new());
        let w = quantized(dtype, 1, N, 1, &mut wb);
        let a = quantized(dtype.vec_dot_type(), 1, N, 2, &mut ab);
        g.throughput(Throughput::Bytes(w.len() as u64));
        for isa in Isa::available() {
            g.bench_with_input(BenchmarkId::new(dtype.name(), isa.name()), &isa, |b, &isa| {
                b.iter(|| dtype.vec_dot(isa, black_box(w), black_box(a)))
            });
        }
    }
    g.finish();
}

/// The 7B layer shapes: attention (q, k, v, o), feed-forward gate/up, down.
const SHAPES: [(usize, usize); 3] = [(4096, 4096), (11008, 4096), (4096, 11008)];

/// `out = x · Wᵀ` at 7B layer shapes for `n` tokens, on the row-major
/// layout and, where the type has one, the interleaved layout the runtime
/// repacks to. Throughput: weight bytes per call for one token (so the
/// figure is bytes/s, the generation bound), and multiply-accumulates per
/// call for a batch (MAC/s, the prompt-processing bound).
fn products(c: &mut Criterion, group: &str, n: usize) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
        for (rows, cols) in SHAPES {
            let mut wb = Vec::new();
            let data = quantized(dtype, rows, cols, 3, &mut wb);
            let mut packed = vec![0u8; data.len() + 4];
            let off = packed.as_ptr().align_offset(4);
            let packed = &mut packed[off..off + data.len()];
            let mut layouts = vec![("rows", QMatrix::new(dtype, rows, cols, data).expect("valid matrix"))];
            if interleaved::can_interleave(dtype, rows, cols) {
                interleaved::interleave(dtype, rows, data, packed);
                layouts.push(("x8", QMatrix::interleaved(dtype, rows, cols, packed).expect("valid matrix")));
            }
            let x = values(n * cols, 4);
            let mut out = vec![0.0f32; n * rows];
            let mut scratch = MatmulScratch::default();
            g.throughput(if n == 1 {
                Throughput::Bytes(data.len() as u64)
            } else {
                Throughput::Elements((n * rows * cols) as u64)
            });
            for (name, w) in &layouts {
                for isa in Isa::available() {
                    let id = BenchmarkId::new(format!("{}/{rows}x{cols}/{name}", dtype.name()), isa.name());
                    g.bench_function(id, |b| b.iter(|| matmul_with(isa, w, black_box(&x), n, &mut out, &mut scratch)));
                }
            }
        }
    }
    g.finish();
}

fn matvec(c: &mut Criterion) {
    products(c, "matvec", 1);
}

/// A 64-token prompt batch (elements/s = multiply-accumulates/s).
fn matmul(c: &mut Criterion) {
    products(c, "matmul64", 64);
}

criterion_group!(benches, dot, matvec, matmul);
criterion_main!(benches);
