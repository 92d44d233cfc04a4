//! The machine's two limits that bound the kernels, measured the way a
//! well-written loop reaches them, so that `qllama bench --limits` can put
//! qllama's figures next to them:
//! - read bandwidth (generation reads every weight byte once per token),
//! - peak multiply-accumulates per second (prompt processing is a stream
//!   of them): for the quantized types 8-bit dots, `vpmaddubsw` on AVX2 (32
//!   per instruction), `vpdpbusd` where the CPU has AVX-512 VNNI (64); for
//!   F16 and F32 f32 FMAs (8 or 16); for BF16 `vdpbf16ps` (32) where the
//!   CPU has AVX-512 BF16.

use rayon::prelude::*;
use std::time::Instant;

/// Best read bandwidth over `passes` passes of all rayon threads reading
/// disjoint parts of `buf` (bytes per second), each pass with every loop
/// of [`LOOPS`]: which loop reads fastest depends on the CPU (on an Intel
/// Xeon host, one thread, 400 MiB: 64-byte loads asking for lines 512
/// bytes ahead 19.7 GB/s, without asking 16.5, 16-byte loads 4 KiB ahead
/// 15.0; on an AMD EPYC the last was best).
pub fn read_bandwidth(buf: &[u8], passes: usize) -> f64 {
    let share = (buf.len() / rayon::current_num_threads()).max(4096) / 64 * 64;
    let mut best = f64::MAX;
    for _ in 0..passes.max(1) {
        for read in LOOPS {
            let t = Instant::now();
            let sum: u64 = buf.par_chunks(share).map(read).sum();
            std::hint::black_box(sum);
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    buf.len() as f64 / best
}

/// The read loops [`read_bandwidth`] tries.
const LOOPS: [fn(&[u8]) -> u64; 3] = [|b| read_all(b, 4096), |b| read_wide(b, 512), |b| read_wide(b, 0)];

/// Touch every byte of `b` with 16-byte loads and four independent sums,
/// asking for each line `ahead` bytes before it is read.
fn read_all(b: &[u8], ahead: usize) -> u64 {
    let (lines, tail) = b.as_chunks::<64>();
    let mut acc = [0u64; 4];
    for (l, c) in lines.iter().enumerate() {
        crate::simd::prefetch_read(b.as_ptr().wrapping_add(l * 64 + ahead));
        for (i, a) in acc.iter_mut().enumerate() {
            *a ^= u64::from_le_bytes(c[i * 16..i * 16 + 8].try_into().expect("8 bytes"))
                ^ u64::from_le_bytes(c[i * 16 + 8..i * 16 + 16].try_into().expect("8 bytes"));
        }
    }
    acc.iter().fold(tail.len() as u64, |s, a| s ^ a)
}

/// [`read_all`] with one 64-byte load per line where the CPU has AVX-512,
/// asking for lines `ahead` bytes early (not at all for 0; elsewhere it is
/// `read_all`, whose ask for the line itself at 0 costs nothing).
fn read_wide(b: &[u8], ahead: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::Isa::Avx512.supported() {
        // SAFETY: AVX-512 F was checked just above.
        return unsafe { wide::read512(b, ahead) };
    }
    read_all(b, ahead)
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use core::arch::x86_64::*;

    /// Four lines a step, one 64-byte load each, into four sums.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn read512(b: &[u8], ahead: usize) -> u64 {
        let (steps, tail) = b.as_chunks::<256>();
        let mut acc = [_mm512_setzero_si512(); 4];
        for (i, step) in steps.iter().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                if ahead > 0 {
                    crate::simd::prefetch_read(b.as_ptr().wrapping_add(i * 256 + 64 * l + ahead));
                }
                // SAFETY: 64 bytes inside the step's 256; unaligned.
                *a = _mm512_xor_si512(*a, unsafe { _mm512_loadu_si512(step.as_ptr().add(64 * l).cast()) });
            }
        }
        let x = _mm512_xor_si512(_mm512_xor_si512(acc[0], acc[1]), _mm512_xor_si512(acc[2], acc[3]));
        tail.iter().fold(_mm512_reduce_add_epi64(x) as u64, |s, &t| s ^ t as u64)
    }
}

/// Peak 8-bit multiply-accumulates per second on all rayon threads, with
/// the widest integer dot instruction this CPU has; `None` off x86-64 or
/// without AVX2.
pub fn int8_peak() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::Isa::Avx2.supported() {
        return Some(if crate::simd::Isa::Avx512.supported() {
            // SAFETY: AVX-512 F/BW/VL/VNNI were checked just above.
            (rate(64, |n| unsafe { peak::vnni(n) }), "vpdpbusd (AVX-512 VNNI)")
        } else {
            // SAFETY: AVX2 was checked just above.
            (rate(32, |n| unsafe { peak::avx2(n) }), "vpmaddubsw (AVX2)")
        });
    }
    None
}

/// The peak multiply-accumulate rate of the instruction that products on
/// `dtype` weights are made of: 8-bit dots for the quantized types, f32
/// FMAs for F16 and F32, `vdpbf16ps` for BF16 where the CPU has AVX-512
/// BF16 (FMAs otherwise). `None` off x86-64 or without AVX2.
pub fn mac_peak(dtype: crate::GgmlDType) -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::Isa::Avx2.supported() && !dtype.is_quantized() {
        let avx512 = crate::simd::Isa::Avx512.supported();
        return Some(if dtype == crate::GgmlDType::BF16 && avx512 && is_x86_feature_detected!("avx512bf16") {
            // SAFETY: AVX-512 F and BF16 were checked just above.
            (rate(32, |n| unsafe { peak::bf16(n) }), "vdpbf16ps (AVX-512 BF16)")
        } else if avx512 {
            // SAFETY: AVX-512 F was checked just above.
            (rate(16, |n| unsafe { peak::fma512(n) }), "vfmadd231ps (AVX-512)")
        } else {
            // SAFETY: AVX2 and FMA (part of `Isa::Avx2`) were checked above.
            (rate(8, |n| unsafe { peak::fma256(n) }), "vfmadd231ps (AVX2)")
        });
    }
    let _ = dtype;
    int8_peak()
}

/// Multiply-accumulates per second of `run` (eight instructions of
/// `macs_per_insn` per iteration) on every rayon thread at once, best of
/// three.
#[cfg(target_arch = "x86_64")]
fn rate(macs_per_insn: u32, run: impl Fn(u64) -> f32 + Sync) -> f64 {
    const ITERS: u64 = 20_000_000;
    let threads = rayon::current_num_threads();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        (0..threads).into_par_iter().for_each(|_| {
            std::hint::black_box(run(ITERS));
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    ITERS as f64 * 8.0 * macs_per_insn as f64 * threads as f64 / best
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use core::arch::x86_64::*;

    /// Eight independent `vpmaddubsw` chains.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2(iters: u64) -> f32 {
        let b = _mm256_set1_epi8(1);
        let mut r: [__m256i; 8] = std::array::from_fn(|i| _mm256_set1_epi8(i as i8));
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm256_maddubs_epi16(*x, b);
            }
        }
        r.iter().fold(0, |s, x| s ^ _mm256_extract_epi32::<0>(*x)) as f32
    }

    /// Eight independent 512-bit `vpdpbusd` chains.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn vnni(iters: u64) -> f32 {
        let b = _mm512_set1_epi8(1);
        let mut r: [__m512i; 8] = std::array::from_fn(|i| _mm512_set1_epi32(i as i32));
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, b, b);
            }
        }
        r.iter().fold(0, |s, x| s ^ _mm512_reduce_add_epi32(*x)) as f32
    }

    /// Eight independent 512-bit FMA chains (enough for one or two per
    /// cycle at a latency of four).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(iters: u64) -> f32 {
        let (b, c) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-3));
        let mut r = [_mm512_set1_ps(1.0); 8];
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm512_fmadd_ps(*x, b, c);
            }
        }
        r.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
    }

    /// Eight independent 256-bit FMA chains.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(iters: u64) -> f32 {
        let (b, c) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-3));
        let mut r = [_mm256_set1_ps(1.0); 8];
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm256_fmadd_ps(*x, b, c);
            }
        }
        r.iter().map(|x| _mm256_cvtss_f32(*x)).sum()
    }

    /// Eight independent `vdpbf16ps` chains.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16(iters: u64) -> f32 {
        // SAFETY: 64 bytes of plain SIMD data either way.
        let b: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3F80_3F80)) };
        let mut r = [_mm512_set1_ps(1.0); 8];
        for _ in 0..iters {
            for x in r.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, b, b);
            }
        }
        r.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
    }
}
