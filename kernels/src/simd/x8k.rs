//! Kernels for the row-interleaved K-quant layouts (`formats::interleaved`,
//! [`BlockQ4Kx8`]): eight weight rows times `T` Q8_K activation rows in one
//! pass over the super-blocks, giving an 8 x `T` tile of outputs, as
//! `x8.rs` does for Q4_0 and Q8_0.
//!
//! The scalar reference keeps ggml's running sums per (row, token)
//! ([`KDotAcc`]), so it equals the one-row `scalar::vec_dot_q4_k_q8_k` bit
//! for bit. The AVX2 kernel agrees with it to f32 rounding and is tested
//! against it in `kernels/tests/interleaved.rs`.

#[cfg(target_arch = "x86_64")]
use super::cpu_has;
use super::scalar::{KDotAcc, SuperBlock};
use super::Isa;
use crate::formats::interleaved::{BlockQ4Kx8, Interleaved, ROWS};
use crate::formats::BlockQ8K;

/// `T` activation rows quantized to Q8_K, `nb` super-blocks each, one after
/// the other, with each super-block's [`pair_sums`].
#[derive(Clone, Copy)]
pub struct ActK<'a> {
    pub q: &'a [BlockQ8K],
    pub pairs: &'a [[i32; 4]],
}

/// The activation sums of the eight 32-weight sub-blocks as four pairs of
/// 16-bit values, `(sum[2p], sum[2p + 1])` in word `p`: one multiply-add of
/// a word by a pair of mins gives both sub-blocks' min terms. A sum of 32
/// values of at most 128 fits in 16 bits.
pub fn pair_sums(y: &BlockQ8K) -> [i32; 4] {
    let sum = |s: usize| (y.bsums[2 * s] + y.bsums[2 * s + 1]) as u16 as u32;
    std::array::from_fn(|p| (sum(2 * p) | sum(2 * p + 1) << 16) as i32)
}

/// An interleaved K-quant type with kernels.
pub trait X8KDot: Interleaved<Source: SuperBlock> {
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `act` must hold `T * w.len()`
    /// super-blocks and pair sums.
    unsafe fn avx2<const T: usize>(w: &[Self], act: ActK, out: &mut [[f32; ROWS]; T]);
}

/// `out[t][j] = dot(row j of w, activation row t)` for the eight rows of one
/// interleaved group and `T` activation rows.
#[inline]
pub fn gemm<X: X8KDot, const T: usize>(isa: Isa, w: &[X], act: ActK, out: &mut [[f32; ROWS]; T]) {
    let n = w.len() * T;
    assert!(act.q.len() == n && act.pairs.len() == n, "activations do not match the weights");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if cpu_has(Isa::Avx2) => {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above);
            // lengths are checked above.
            unsafe { X::avx2::<T>(w, act, out) }
        }
        // The runtime interleaves only on x86-64; other callers get the
        // reference.
        _ => reference::<X, T>(w, act, out),
    }
}

/// The scalar reference: ggml's one-row dot per (row, token).
pub fn reference<X: Interleaved<Source: SuperBlock>, const T: usize>(
    w: &[X],
    act: ActK,
    out: &mut [[f32; ROWS]; T],
) {
    let nb = w.len();
    let mut acc = [[KDotAcc::default(); ROWS]; T];
    for (b, wb) in w.iter().enumerate() {
        for (j, row) in wb.to_rows().iter().enumerate() {
            for (t, acc) in acc.iter_mut().enumerate() {
                acc[j].add(row, &act.q[t * nb + b]);
            }
        }
    }
    *out = acc.map(|a| a.map(KDotAcc::finish));
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use core::arch::x86_64::*;

    /// The 128 values of `K4Scales::unpack`, in vector code: bytes 0..64 the
    /// scales, 64..128 the mins.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn unpack_scales(p: &[u8; 96], out: &mut [u8; 128]) {
        // SAFETY: three 32-byte loads inside the 96 bytes of `p`, four
        // stores inside the 128 bytes of `out`; all unaligned.
        unsafe {
            let lo0 = _mm256_loadu_si256(p.as_ptr().cast());
            let lo1 = _mm256_loadu_si256(p.as_ptr().add(32).cast());
            let hi = _mm256_loadu_si256(p.as_ptr().add(64).cast());
            let (nib, top) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
            // Bit pair k of `hi` moved to bits 4..6: 16-bit shifts are
            // fine, as the bits they carry across bytes are masked off.
            let v = [
                _mm256_or_si256(_mm256_and_si256(lo0, nib), _mm256_and_si256(_mm256_slli_epi16::<4>(hi), top)),
                _mm256_or_si256(_mm256_and_si256(lo1, nib), _mm256_and_si256(_mm256_slli_epi16::<2>(hi), top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(lo0), nib), _mm256_and_si256(hi, top)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(lo1), nib),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(hi), top),
                ),
            ];
            for (k, v) in v.into_iter().enumerate() {
                _mm256_storeu_si256(out.as_mut_ptr().add(32 * k).cast(), v);
            }
        }
    }

    /// Sub-block `s`'s eight scales as 16-bit pairs `(sc[j], sc[j])`, to
    /// multiply-add the pair sums of row `j`'s four weights per chunk.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub_block_scales(v: &[u8; 128], s: usize) -> __m256i {
        let eight = &v[8 * s..8 * s + 8];
        let x = _mm256_set1_epi64x(i64::from_le_bytes(eight.try_into().expect("8 bytes")));
        // Each lane takes its four rows' bytes twice, zero-extended.
        const Z: i8 = -1;
        let pick = _mm256_setr_epi8(
            0, Z, 0, Z, 1, Z, 1, Z, 2, Z, 2, Z, 3, Z, 3, Z, 4, Z, 4, Z, 5, Z, 5, Z, 6, Z, 6, Z, 7, Z, 7, Z,
        );
        _mm256_shuffle_epi8(x, pick)
    }

    /// Pair `p`'s mins as 16-bit values, in the order [`pair_sums`] wants.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_mins(v: &[u8; 128], p: usize) -> __m256i {
        // SAFETY: a 16-byte unaligned load at 64 + 16p < 128 - 15.
        _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(v.as_ptr().add(64 + 16 * p).cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn halves(d: &[half::f16; ROWS]) -> __m256 {
        // SAFETY: reads exactly the 16 bytes of `d`; the load is unaligned.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr().cast()) })
    }

    impl X8KDot for BlockQ4Kx8 {
        /// Per sub-block: nibbles 0..16 times activations in 16-bit pair
        /// sums over its eight chunks (8 * 2 * 15 * 128 < 2^15), then one
        /// multiply-add by the rows' scales into 32 bits. Per super-block:
        /// the mins against the pair sums, and the two f16 scales.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2<const T: usize>(w: &[Self], act: ActK, out: &mut [[f32; ROWS]; T]) {
            let nb = w.len();
            let nib = _mm256_set1_epi8(0x0F);
            let ys: [*const BlockQ8K; T] = std::array::from_fn(|t| act.q.as_ptr().wrapping_add(t * nb));
            let pairs: [*const [i32; 4]; T] = std::array::from_fn(|t| act.pairs.as_ptr().wrapping_add(t * nb));
            let mut acc = [_mm256_setzero_ps(); T];
            let mut v = [0u8; 128];
            for (b, wb) in w.iter().enumerate() {
                // SAFETY: b < nb and t < T, so each pointer stays inside the
                // T * nb blocks and pair sums that `gemm` checked.
                let y: [&BlockQ8K; T] = std::array::from_fn(|t| unsafe { &*ys[t].add(b) });
                unpack_scales(&wb.scales, &mut v);
                let mut isum = [_mm256_setzero_si256(); T];
                for s in 0..8 {
                    let (g, high) = (s / 2, s % 2 == 1);
                    let mut p = [_mm256_setzero_si256(); T];
                    for c in 0..8 {
                        // SAFETY: chunk 8g + c < 32, a 32-byte load inside
                        // the 1024 bytes of `qs`.
                        let raw = unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(32 * (8 * g + c)).cast()) };
                        let q = if high { _mm256_srli_epi16::<4>(raw) } else { raw };
                        let q = _mm256_and_si256(q, nib);
                        let at = 64 * g + 32 * (s % 2) + 4 * c;
                        for (p, y) in p.iter_mut().zip(&y) {
                            // SAFETY: at + 4 <= 256, inside `qs`; unaligned read.
                            let a = unsafe { y.qs.as_ptr().add(at).cast::<i32>().read_unaligned() };
                            *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(q, _mm256_set1_epi32(a)));
                        }
                    }
                    let sc = sub_block_scales(&v, s);
                    for (isum, p) in isum.iter_mut().zip(p) {
                        *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(p, sc));
                    }
                }
                let mins: [__m256i; 4] = std::array::from_fn(|p| pair_mins(&v, p));
                let (d, dmin) = (halves(&wb.d), halves(&wb.dmin));
                for (t, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as for `y` above.
                    let pair = unsafe { &*pairs[t].add(b) };
                    let m: [__m256i; 4] = std::array::from_fn(|p| _mm256_madd_epi16(mins[p], _mm256_set1_epi32(pair[p])));
                    let m = _mm256_add_epi32(_mm256_add_epi32(m[0], m[1]), _mm256_add_epi32(m[2], m[3]));
                    let dy = _mm256_set1_ps(y[t].d);
                    *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(isum[t]), *acc);
                    *acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dy), _mm256_cvtepi32_ps(m), *acc);
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                // SAFETY: writes exactly the eight floats of `o`; unaligned.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl X8KDot for BlockQ4Kx8 {}
