//! The machine's two limits that bound the kernels, measured the way a
//! well-written loop reaches them, so that `qllama bench --limits` can put
//! qllama's figures next to them:
//! - read bandwidth (generation reads every weight byte once per token),
//! - peak 8-bit multiply-accumulates per second (prompt processing is a
//!   stream of them): `vpmaddubsw` on AVX2 (32 per instruction),
//!   `vpdpbusd` where the CPU has AVX-512 VNNI (64 per instruction).

use rayon::prelude::*;
use std::time::Instant;

/// Best read bandwidth over `passes` passes of all rayon threads reading
/// disjoint parts of `buf` (bytes per second).
pub fn read_bandwidth(buf: &[u8], passes: usize) -> f64 {
    let share = (buf.len() / rayon::current_num_threads()).max(4096) / 64 * 64;
    let mut best = f64::MAX;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let sum: u64 = buf.par_chunks(share).map(read_all).sum();
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    buf.len() as f64 / best
}

/// How far ahead the read loop asks for lines: the hardware prefetchers
/// alone leave bandwidth unused here, as they do for the kernels
/// (`examples/gemv_rate.rs`, GB/s with 0/4/8/16 KiB ahead: one thread
/// 31/39/40/39, two threads 46/50/49/49).
const READ_AHEAD: usize = 4096;

/// Touch every byte of `b` with wide loads and four independent sums,
/// prefetching `READ_AHEAD` bytes ahead.
fn read_all(b: &[u8]) -> u64 {
    let (lines, tail) = b.as_chunks::<64>();
    let mut acc = [0u64; 4];
    for (l, c) in lines.iter().enumerate() {
        crate::simd::prefetch_read(b.as_ptr().wrapping_add(l * 64 + READ_AHEAD));
        for (i, a) in acc.iter_mut().enumerate() {
            *a ^= u64::from_le_bytes(c[i * 16..i * 16 + 8].try_into().expect("8 bytes"))
                ^ u64::from_le_bytes(c[i * 16 + 8..i * 16 + 16].try_into().expect("8 bytes"));
        }
    }
    acc.iter().fold(tail.len() as u64, |s, a| s ^ a)
}

/// Peak 8-bit multiply-accumulates per second on all rayon threads, with
/// the widest integer dot instruction this CPU has; `None` off x86-64 or
/// without AVX2.
pub fn int8_peak() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::Isa::Avx2.supported() {
        const ITERS: u64 = 20_000_000;
        let vnni = crate::simd::Isa::Avx512.supported();
        let threads = rayon::current_num_threads();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            (0..threads).into_par_iter().for_each(|_| {
                // SAFETY: AVX2 (and, for the VNNI loop, AVX-512 VNNI/VL) were
                // checked above.
                let v = unsafe {
                    if vnni {
                        peak::vnni(ITERS)
                    } else {
                        peak::avx2(ITERS)
                    }
                };
                std::hint::black_box(v);
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        // Eight instructions per iteration, per thread.
        let macs_per_insn = if vnni { 64.0 } else { 32.0 };
        let name = if vnni { "vpdpbusd (AVX-512 VNNI)" } else { "vpmaddubsw (AVX2)" };
        return Some((ITERS as f64 * 8.0 * macs_per_insn * threads as f64 / best, name));
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use core::arch::x86_64::*;

    /// Eight independent `vpmaddubsw` chains.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2(iters: u64) -> i32 {
        let b = _mm256_set1_epi8(1);
        let mut r: [__m256i; 8] = std::array::from_fn(|i| _mm256_set1_epi8(i as i8));
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm256_maddubs_epi16(*x, b);
            }
        }
        r.iter().fold(0, |s, x| s ^ _mm256_extract_epi32::<0>(*x))
    }

    /// Eight independent 512-bit `vpdpbusd` chains.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn vnni(iters: u64) -> i32 {
        let b = _mm512_set1_epi8(1);
        let mut r: [__m512i; 8] = std::array::from_fn(|i| _mm512_set1_epi32(i as i32));
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, b, b);
            }
        }
        r.iter().fold(0, |s, x| s ^ _mm512_reduce_add_epi32(*x))
    }
}
