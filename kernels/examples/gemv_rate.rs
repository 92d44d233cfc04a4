//! Weight bytes per second of one-token matrix-vector products over matrices
//! too large for the caches (as in generation), against a plain read loop
//! over the same memory: how close the generation kernels come to the
//! machine's bandwidth, and what tunes them (prefetch, layout). The
//! matrices are walked one by one, as the decoder does, alternating with
//! passes of the read loop, since this machine's bandwidth drifts from one
//! minute to the next: the median of the per-round ratios is the figure to
//! compare.
//!
//! `cargo run --release -p qllama-kernels --example gemv_rate -- q4_0 2`
//! (weight type, threads), optionally followed by the shapes of one layer,
//! rows x cols (default one 4096x4096; a 7B layer is `4096x4096 4096x4096
//! 4096x4096 4096x4096 11008x4096 11008x4096 4096x11008`), which are
//! repeated until the weights pass 400 MiB.

use qllama_kernels::formats::interleaved;
use qllama_kernels::matmul::{matmul_with, MatmulScratch, QMatrix};
use qllama_kernels::{simd, team, GgmlDType};
use std::time::Instant;

/// Weights walked per pass: far past any cache.
const TOTAL_BYTES: usize = 400 << 20;
const ROUNDS: usize = 15;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("q4_0", String::as_str);
    let dtype = GgmlDType::from_name(name).ok_or_else(|| format!("unknown type {name}"))?;
    let threads: usize = args.get(2).map_or(Ok(1), |s| s.parse()).map_err(|e| format!("threads: {e}"))?;
    let mut layer = Vec::new();
    for s in args.iter().skip(3) {
        let parse = |n: &str| n.parse::<usize>().map_err(|e| format!("shape {s}: {e}"));
        let (r, c) = s.split_once('x').ok_or_else(|| format!("shape {s}: want ROWSxCOLS"))?;
        layer.push((parse(r)?, parse(c)?));
    }
    if layer.is_empty() {
        layer.push((4096, 4096));
    }
    for &(rows, cols) in &layer {
        if !interleaved::can_interleave(dtype, rows, cols) {
            return Err(format!("{rows}x{cols} {dtype} has no interleaved layout"));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;

    // The layer's matrices, repeated, each interleaved into its slot of a
    // huge-page mapping, as the runtime repacks weights at load:
    // (rows, cols, byte range).
    let mut mats = Vec::new();
    let mut at = 0;
    while at < TOTAL_BYTES {
        for &(rows, cols) in &layer {
            let bytes = rows * dtype.row_bytes(cols).expect("checked");
            mats.push((rows, cols, at..at + bytes));
            at += bytes;
        }
    }
    let total = at;
    let mut map = memmap2::MmapMut::map_anon(total).map_err(|e| e.to_string())?;
    let _ = map.advise(memmap2::Advice::HugePage);
    let widest = layer.iter().map(|&(r, c)| r.max(c)).max().expect("a shape");
    let x: Vec<f32> = (0..widest).map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0).collect();
    for (rows, cols, range) in &mats {
        let row_bytes = dtype.row_bytes(*cols).expect("checked");
        let mut src = vec![0u8; rows * row_bytes];
        for r in src.chunks_mut(row_bytes) {
            dtype.quantize_row(&x[..*cols], r);
        }
        interleaved::interleave(dtype, *rows, &src, &mut map[range.clone()]);
    }

    let mut out = vec![0f32; widest];
    let mut scratch = MatmulScratch::default();
    let isa = simd::isa();
    let (mut matvec, mut read) = (Vec::new(), Vec::new());
    pool.install(|| {
        for _ in 0..ROUNDS {
            let t = Instant::now();
            // In a team, as the decoder's forward pass runs its products.
            team::with_team(|| {
                for (rows, cols, range) in &mats {
                    let w = QMatrix::interleaved(dtype, *rows, *cols, &map[range.clone()]).expect("valid matrix");
                    matmul_with(isa, &w, &x[..*cols], 1, &mut out[..*rows], &mut scratch);
                }
            });
            matvec.push(total as f64 / t.elapsed().as_secs_f64());
            read.push(qllama_kernels::limits::read_bandwidth(&map, 1));
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(matvec.iter().zip(&read).map(|(m, r)| m / r).collect());
    println!(
        "{dtype} {threads} thread(s), {}, medians of {ROUNDS} alternating passes: matvec {:.1} GB/s, read loop {:.1} GB/s, ratio {ratio:.2}",
        isa.name(),
        median(matvec) / 1e9,
        median(read) / 1e9,
    );
    Ok(())
}
