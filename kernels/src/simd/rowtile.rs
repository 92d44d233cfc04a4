//! Multi-token kernels for row-major weights: one weight row against
//! [`TILE`] activation rows in one pass over its blocks, so each block is
//! loaded and unpacked once per tile of tokens instead of once per token.
//! Prompt batches of K-quant weights use them (Q4_0 and Q8_0 use the
//! interleaved layout instead). Results equal the one-token kernels up to
//! f32 rounding; tested against the scalar reference in
//! `kernels/tests/rowtile.rs`.

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
    use crate::simd::avx2::{hsum_ps, levels_q2k, levels_q3k, levels_q4k, levels_q5k, levels_q6k, load_i8x32};
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

    /// One f16 as f32 through F16C (`f16::to_f32` is an out-of-line call
    /// here, which would spill the vector registers).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn f16_to_f32(h: f16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
    }

    /// Twelve packed scale bytes as three little-endian words.
    fn words(b: &[u8; 12]) -> [u32; 3] {
        std::array::from_fn(|i| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
    }

    /// Sixteen bytes, given as four little-endian words, widened to i16.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn widen(w: [u32; 4]) -> __m256i {
        _mm256_cvtepu8_epi16(_mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32))
    }

    /// Q2_K: scale and min of each 16-weight slice, the low and high nibbles
    /// of its byte.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_q2k(x: &BlockQ2K) -> (__m256i, __m256i) {
        // SAFETY: reads exactly the 16 bytes of `x.scales`, unaligned.
        let b = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
        let m4 = _mm_set1_epi8(0x0F);
        let (sc, m) = (_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16::<4>(b), m4));
        (_mm256_cvtepu8_epi16(sc), _mm256_cvtepu8_epi16(m))
    }

    /// Q3_K: slice `j`'s 6-bit scale has its low nibble in nibble `j / 8`
    /// of byte `j % 8` and its top two bits at bit `2 (j / 4)` of byte
    /// `8 + j % 4`; stored 32 above its value.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_q3k(x: &BlockQ3K) -> (__m256i, __m256i) {
        let [lo0, lo1, hi] = words(&x.scales);
        let (m4, m2) = (0x0F0F_0F0F, 0x0303_0303);
        let low = [lo0 & m4, lo1 & m4, (lo0 >> 4) & m4, (lo1 >> 4) & m4];
        let sc = widen(std::array::from_fn(|k| low[k] | ((hi >> (2 * k)) & m2) << 4));
        (_mm256_sub_epi16(sc, _mm256_set1_epi16(32)), _mm256_setzero_si256())
    }

    /// Q4_K and Q5_K: eight 6-bit scales and mins of 32-weight sub-blocks
    /// (ggml's `get_scale_min_k4`: sub-blocks 0..4 in the low six bits of
    /// bytes 0..4 and 4..8, sub-blocks 4..8 in the nibbles of bytes 8..12
    /// with their top two bits in the spare bits of bytes 0..8), each given
    /// to both of its 16-weight slices.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_k4(q: &[u8; 12]) -> (__m256i, __m256i) {
        let [s, m, low4] = words(q);
        let (m6, m4, m2) = (0x3F3F_3F3F, 0x0F0F_0F0F, 0x0303_0303);
        let scales = [s & m6, (low4 & m4) | ((s >> 6) & m2) << 4];
        let mins = [m & m6, ((low4 >> 4) & m4) | ((m >> 6) & m2) << 4];
        let pairs = |v: [u32; 2]| {
            let v = _mm_setr_epi32(v[0] as i32, v[1] as i32, 0, 0);
            _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v))
        };
        (pairs(scales), pairs(mins))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_q4k(x: &BlockQ4K) -> (__m256i, __m256i) {
        scales_k4(&x.scales)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_q5k(x: &BlockQ5K) -> (__m256i, __m256i) {
        scales_k4(&x.scales)
    }

    /// Q6_K: one signed byte per 16-weight slice.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_q6k(x: &BlockQ6K) -> (__m256i, __m256i) {
        // SAFETY: reads exactly the 16 bytes of `x.scales`, unaligned.
        let b = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
        (_mm256_cvtepi8_epi16(b), _mm256_setzero_si256())
    }

    /// The scales of group `g` (32 weights, slices `2 g` and `2 g + 1`) in
    /// the 16 i16 lanes that `madd` meets the group's `maddubs` pair sums
    /// with: slice `2 g` in the low 128 bits, `2 g + 1` in the high.
    /// `halves` holds the low and the high half of the 16 slice scales,
    /// each in both 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn group_scales(halves: &[__m256i; 2], g: usize) -> __m256i {
        let b = 4 * (g % 4) as i16;
        let pick = |b: i16| _mm_set1_epi16(b | (b + 1) << 8);
        _mm256_shuffle_epi8(halves[g / 4], _mm256_set_m128i(pick(b + 2), pick(b)))
    }

    /// One K-quant tile kernel, the one-token `avx2::k_dot` with the token
    /// loop moved inside the super-block loop: levels and scales are
    /// unpacked once, then each group of 32 weights meets the [`TILE`]
    /// tokens' activations while it sits in a register.
    ///
    /// `$scales` gives the scale and min of each 16-weight slice as i16
    /// lanes. The offset (`$off`, the levels' distance above the format's
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
                    let halves =
                        [_mm256_permute2x128_si256::<0x00>(sc16, sc16), _mm256_permute2x128_si256::<0x11>(sc16, sc16)];
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
