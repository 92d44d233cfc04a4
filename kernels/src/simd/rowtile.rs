//! Multi-token kernels for row-major weights: one weight row against
//! [`TILE`] activation rows in one pass over its blocks, so each block is
//! loaded and unpacked once per tile of tokens instead of once per token.
//! Prompt batches of K-quant weights use them (Q4_0 and Q8_0 use the
//! interleaved layout instead). Results equal the one-token kernels up to
//! f32 rounding; tested against the scalar reference in
//! `kernels/tests/simd.rs`.

use super::Isa;
use crate::dtype::GgmlDType;

/// Tokens per tile.
pub const TILE: usize = 4;

/// `out[t] = dot(w, act[t])`, where `w` is one weight row's bytes and `act`
/// holds [`TILE`] activation rows (the weight type's `vec_dot_type`) of
/// `w`'s length, one after the other.
pub type RowTile = fn(w: &[u8], act: &[u8], out: &mut [f32; TILE]);

/// The tile kernel for `dtype` on `isa`, where there is one.
pub fn row_tile(isa: Isa, dtype: GgmlDType) -> Option<RowTile> {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = dtype;
    match isa {
        // AVX-512 CPUs run the AVX2 kernels (as the one-token K-quant dots do).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if super::cpu_has(Isa::Avx2) => x86::tile(dtype),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{RowTile, TILE};
    use crate::dtype::GgmlDType;
    use crate::formats::*;
    use crate::simd::avx2::{
        f16_to_f32, group_scales, hsum_ps, levels_q2k, levels_q3k, levels_q4k, levels_q5k, levels_q6k, load_i8x32,
        scale_halves, scales_q2k, scales_q3k, scales_q4k, scales_q5k, scales_q6k,
    };
    use core::arch::x86_64::*;
    use half::f16;

    pub(super) fn tile(dtype: GgmlDType) -> Option<RowTile> {
        Some(match dtype {
            GgmlDType::Q2K => q2_k,
            GgmlDType::Q3K => q3_k,
            GgmlDType::Q4K => q4_k,
            GgmlDType::Q5K => q5_k,
            GgmlDType::Q6K => q6_k,
            _ => return None,
        })
    }

    /// One K-quant tile kernel, the one-token `avx2::k_dot` with the token
    /// loop moved inside the super-block loop: levels and scales are
    /// unpacked once, then each group of 32 weights meets the [`TILE`]
    /// tokens' activations while it sits in a register.
    ///
    /// `$scales` gives the scale and min of each 16-weight slice as i16
    /// lanes (the helpers are shared with `avx2.rs`). The offset (`$off`, the levels' distance above the format's
    /// signed values) is taken back through `bsums` in the integer sums, the
    /// mins' share is one `madd` of `bsums` by the mins. All sums stay exact
    /// in i32: per lane at most 8 groups · 2 · 16128 · 128 plus
    /// 2 · 2048 · 4096 for the offset, below 2^26.
    macro_rules! k_tile {
        ($name:ident, $kernel:ident, $x:ty, $levels:ident, $scales:ident, $off:expr, |$b:ident| $d_dmin:expr) => {
            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; `y` holds `TILE`
            /// activation rows of `x.len()` super-blocks.
            #[target_feature(enable = "avx2,fma,f16c")]
            fn $kernel(x: &[$x], y: &[BlockQ8K], out: &mut [f32; TILE]) {
                let nb = x.len();
                let ys: [&[BlockQ8K]; TILE] = std::array::from_fn(|t| &y[t * nb..(t + 1) * nb]);
                let mut acc = [_mm256_setzero_ps(); TILE];
                for (i, xb) in x.iter().enumerate() {
                    let (d, dmin) = {
                        let $b = xb;
                        $d_dmin
                    };
                    let (d, dmin) = (f16_to_f32(d), f16_to_f32(dmin));
                    let (sc16, min16) = $scales(xb);
                    let halves = scale_halves(sc16);
                    let groups = $levels(xb);
                    let mut sums = [_mm256_setzero_si256(); TILE];
                    for (g, &w) in groups.iter().enumerate() {
                        let scales = group_scales(&halves, g);
                        for (sum, yt) in sums.iter_mut().zip(&ys) {
                            let p = _mm256_maddubs_epi16(w, load_i8x32(&yt[i].qs.as_chunks::<32>().0[g]));
                            *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(p, scales));
                        }
                    }
                    let off16 = _mm256_mullo_epi16(sc16, _mm256_set1_epi16($off));
                    for ((a, sum), yt) in acc.iter_mut().zip(sums).zip(&ys) {
                        let yb = &yt[i];
                        // SAFETY: reads exactly the 32 bytes of `bsums`,
                        // unaligned.
                        let bsums = unsafe { _mm256_loadu_si256(yb.bsums.as_ptr().cast()) };
                        let mut sum = sum;
                        if $off != 0 {
                            sum = _mm256_sub_epi32(sum, _mm256_madd_epi16(bsums, off16));
                        }
                        *a = _mm256_fmadd_ps(_mm256_set1_ps(d * yb.d), _mm256_cvtepi32_ps(sum), *a);
                        if <$x as crate::simd::scalar::SuperBlock>::HAS_MIN {
                            let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, min16));
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(-(dmin * yb.d)), mins, *a);
                        }
                    }
                }
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = hsum_ps(a);
                }
            }

            fn $name(w: &[u8], act: &[u8], out: &mut [f32; TILE]) {
                let x: &[$x] = cast_blocks(w);
                let y: &[BlockQ8K] = cast_blocks(act);
                assert_eq!(y.len(), TILE * x.len(), "tile of {TILE} activation rows for a row of {} blocks", x.len());
                // SAFETY: `row_tile` hands this function out only after
                // checking that the CPU has AVX2, FMA and F16C, everything
                // the kernel is compiled for; the lengths match (above).
                unsafe { $kernel(x, y, out) }
            }
        };
    }

    k_tile!(q2_k, q2_k_avx2, BlockQ2K, levels_q2k, scales_q2k, 0, |b| (b.d, b.dmin));
    k_tile!(q3_k, q3_k_avx2, BlockQ3K, levels_q3k, scales_q3k, 4, |b| (b.d, f16::ZERO));
    k_tile!(q4_k, q4_k_avx2, BlockQ4K, levels_q4k, scales_q4k, 0, |b| (b.d, b.dmin));
    k_tile!(q5_k, q5_k_avx2, BlockQ5K, levels_q5k, scales_q5k, 0, |b| (b.d, b.dmin));
    k_tile!(q6_k, q6_k_avx2, BlockQ6K, levels_q6k, scales_q6k, 32, |b| (b.d, f16::ZERO));
}
