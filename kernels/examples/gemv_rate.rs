//! Weight bytes per second of one-token matrix-vector products over matrices
//! too large for the caches (as in generation), next to a plain read loop
//! over the same memory: how close the generation kernels come to the
//! machine's bandwidth, and what tunes them (prefetch distance, layout).
//! The matrices are walked one by one, as the decoder does, and then as
//! one tall matrix (no per-call overhead).
//!
//! `cargo run --release -p qllama-kernels --example gemv_rate -- q4_0 2`
//! (weight type, threads).

use qllama_kernels::formats::interleaved;
use qllama_kernels::matmul::{matmul_with, MatmulScratch, QMatrix};
use qllama_kernels::{simd, GgmlDType};
use std::time::Instant;

/// 48 matrices of 4096x4096: about 450 MiB of Q4_0, far past any cache.
const MATRICES: usize = 48;
const N: usize = 4096;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("q4_0", String::as_str);
    let dtype = GgmlDType::from_name(name).ok_or_else(|| format!("unknown type {name}"))?;
    if !interleaved::can_interleave(dtype, N, N) {
        return Err(format!("{dtype} has no interleaved layout"));
    }
    let threads: usize = args.get(2).map_or(Ok(1), |s| s.parse()).map_err(|e| format!("threads: {e}"))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;

    // One quantized matrix, interleaved into every slot of a huge-page
    // mapping, as the runtime repacks weights at load.
    let row_bytes = dtype.row_bytes(N).ok_or("whole blocks")?;
    let bytes = N * row_bytes;
    let x: Vec<f32> = (0..N).map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0).collect();
    let mut rows = vec![0u8; bytes];
    for r in rows.chunks_mut(row_bytes) {
        dtype.quantize_row(&x, r);
    }
    let mut map = memmap2::MmapMut::map_anon(MATRICES * bytes).map_err(|e| e.to_string())?;
    let _ = map.advise(memmap2::Advice::HugePage);
    for m in map.chunks_mut(bytes) {
        interleaved::interleave(dtype, N, &rows, m);
    }

    let mut out = vec![0f32; N];
    let mut scratch = MatmulScratch::default();
    let isa = simd::isa();
    pool.install(|| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for m in map.chunks(bytes) {
                let w = QMatrix::interleaved(dtype, N, N, m).expect("valid matrix");
                matmul_with(isa, &w, &x, 1, &mut out, &mut scratch);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let mut big = vec![0f32; MATRICES * N];
        let mut best1 = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let w = QMatrix::interleaved(dtype, MATRICES * N, N, &map).expect("valid matrix");
            matmul_with(isa, &w, &x, 1, &mut big, &mut scratch);
            best1 = best1.min(t.elapsed().as_secs_f64());
        }
        println!("one matrix {:.1} GB/s", (MATRICES * bytes) as f64 / best1 / 1e9);
        let read = qllama_kernels::limits::read_bandwidth(&map, 5);
        println!(
            "{dtype} {threads} thread(s), {}: matvec {:.1} GB/s, read loop {:.1} GB/s",
            isa.name(),
            (MATRICES * bytes) as f64 / best / 1e9,
            read / 1e9
        );
    });
    Ok(())
}
