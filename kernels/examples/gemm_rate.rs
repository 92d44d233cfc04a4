//! Multiply-accumulates per second of prompt-sized matrix products (512
//! tokens) at the 7B layer shapes, next to the CPU's 8-bit peak: how close
//! the prompt kernels come to the machine's compute, and how much of the gap
//! is the kernel itself (run on a weight slice that stays in L1) rather than
//! the walk around it (caches, threads, the activations' quantization).
//!
//! `cargo run --release -p qllama-kernels --example gemm_rate -- q8_0 2`
//! (weight type, threads, then optionally shapes `ROWSxCOLS` for the 7B ones).

use qllama_kernels::formats::{cast_blocks, interleaved, BlockQ8_0};
use qllama_kernels::matmul::{matmul_with, MatmulScratch, QMatrix};
use qllama_kernels::simd::scalar::BlockInts;
use qllama_kernels::simd::x8::{self, ActBuf, X8Dot};
use qllama_kernels::{limits, simd, GgmlDType};
use std::time::Instant;

const TOKENS: usize = 512;
/// (rows, cols) of the 7B projections: attention, gate/up, down.
const SHAPES: [(usize, usize); 3] = [(4096, 4096), (11008, 4096), (4096, 11008)];

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("q8_0", String::as_str);
    let dtype = GgmlDType::from_name(name).ok_or_else(|| format!("unknown type {name}"))?;
    let threads: usize = args.get(2).map_or(Ok(1), |s| s.parse()).map_err(|e| format!("threads: {e}"))?;
    // Further arguments: shapes as ROWSxCOLS in place of the 7B ones (a
    // small matrix stays in the caches: the walk's cost without memory).
    let shapes: Vec<(usize, usize)> = match args.get(3..) {
        Some(extra) if !extra.is_empty() => extra
            .iter()
            .map(|s| {
                let (r, c) = s.split_once('x').ok_or_else(|| format!("shape {s}: want ROWSxCOLS"))?;
                Ok((r.parse().map_err(|e| format!("{s}: {e}"))?, c.parse().map_err(|e| format!("{s}: {e}"))?))
            })
            .collect::<Result<_, String>>()?,
        _ => SHAPES.to_vec(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    let isa = simd::isa();
    pool.install(|| {
        let (peak, insn) = limits::int8_peak().unwrap_or((f64::NAN, "none"));
        println!("{dtype}, {threads} thread(s), {}: peak {:.0} G MAC/s ({insn})", isa.name(), peak / 1e9);
        for (rows, cols) in shapes.iter().copied() {
            let (w, x) = matrix(dtype, rows, cols, TOKENS);
            let m = if interleaved::can_interleave(dtype, rows, cols) {
                QMatrix::interleaved(dtype, rows, cols, &w)
            } else {
                QMatrix::new(dtype, rows, cols, &w)
            }
            .expect("valid matrix");
            let rate = rate(&m, &x, TOKENS, 3);
            println!("{rows}x{cols} x {TOKENS} tokens: {:.0} G MAC/s, {:.0}% of peak", rate / 1e9, 100.0 * rate / peak);
        }
        if dtype == GgmlDType::Q8_0 {
            hot::<interleaved::BlockQ8_0x8>(dtype, peak);
        } else if dtype == GgmlDType::Q4_0 {
            hot::<interleaved::BlockQ4_0x8>(dtype, peak);
        }
    });
    Ok(())
}

/// The bare two-group kernel over 8 tokens, on one thread, with weights
/// (16 rows of 1024 values) and activations that stay in L1.
fn hot<X: X8Dot>(dtype: GgmlDType, peak: f64)
where
    X::Source: BlockInts,
{
    const COLS: usize = 1024;
    const T: usize = 8;
    let isa = simd::isa();
    let (w, x) = matrix(dtype, 2 * interleaved::ROWS, COLS, T);
    let blocks: &[X] = interleaved::cast(&w);
    let nb = COLS / 32;
    // (The allocator's alignment is ample; `cast_blocks` checks it.)
    let row_bytes = GgmlDType::Q8_0.row_bytes(COLS).expect("whole blocks");
    let mut qbytes = vec![0u8; T * row_bytes];
    for (xs, o) in x.chunks(COLS).zip(qbytes.chunks_mut(row_bytes)) {
        GgmlDType::Q8_0.quantize_row(xs, o);
    }
    let q: &[BlockQ8_0] = cast_blocks(&qbytes);
    let mut packed = ActBuf::default();
    packed.pack(q, T, T, X::needs(isa), X::BIAS);
    let act = packed.tile(0..T, 0..nb);
    let mut out = [[0f32; x8::ROWS2]; T];
    let reps = 200_000;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..reps {
            x8::gemm2::<X, T>(isa, [&blocks[..nb], &blocks[nb..]], act, &mut out);
            std::hint::black_box(&mut out);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let rate = (2 * interleaved::ROWS * COLS * T * reps) as f64 / best;
    let threads = rayon::current_num_threads() as f64;
    println!(
        "bare kernel, 16x{COLS} x {T} tokens in L1, one thread: {:.0} G MAC/s, {:.0}% of one thread's peak",
        rate / 1e9,
        100.0 * rate * threads / peak
    );
}

/// Random-ish weights quantized to `dtype` (interleaved where it can be) and
/// `tokens` activation rows.
fn matrix(dtype: GgmlDType, rows: usize, cols: usize, tokens: usize) -> (Vec<u8>, Vec<f32>) {
    let val = |i: usize| ((i.wrapping_mul(2654435761) >> 7) % 2001) as f32 / 1000.0 - 1.0;
    let row_bytes = dtype.row_bytes(cols).expect("whole blocks");
    let mut q = vec![0u8; rows * row_bytes];
    for (r, out) in q.chunks_mut(row_bytes).enumerate() {
        let src: Vec<f32> = (0..cols).map(|c| val(r * cols + c)).collect();
        dtype.quantize_row(&src, out);
    }
    let w = if interleaved::can_interleave(dtype, rows, cols) {
        let mut w = vec![0u8; q.len()];
        interleaved::interleave(dtype, rows, &q, &mut w);
        w
    } else {
        q
    };
    (w, (0..tokens * cols).map(|i| val(i + 17)).collect())
}

/// Best-of-three multiply-accumulates per second of `reps` products.
fn rate(w: &QMatrix, x: &[f32], tokens: usize, reps: usize) -> f64 {
    let mut out = vec![0f32; tokens * w.rows];
    let mut scratch = MatmulScratch::default();
    let isa = simd::isa();
    matmul_with(isa, w, x, tokens, &mut out, &mut scratch);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..reps {
            matmul_with(isa, w, x, tokens, &mut out, &mut scratch);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (w.rows * w.cols * tokens * reps) as f64 / best
}
