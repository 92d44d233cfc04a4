//! AVX2 (+FMA, F16C) kernels (x86-64). Every function here is checked
//! against `scalar` in tests.
//!
//! Kernels are safe `#[target_feature]` functions: the only unsafe code is in
//! the loads below, so the dispatcher's promise that the CPU has the features
//! is the one thing callers must uphold. The quantized and float loops are
//! written once, as macros shared with `avx512.rs`; each file supplies its own
//! multiply-accumulate primitives (`mul_us`, `mul_us_off`) and vector width.

use crate::formats::*;
use core::arch::x86_64::*;
use half::{bf16, f16};

// ---------------------------------------------------------------------------
// Loads and unpacking, shared with avx512.rs.

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_i8x32(q: &[i8; 32]) -> __m256i {
    // SAFETY: reads exactly the 32 bytes of `q`; the load is unaligned.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_u8x16(q: &[u8; 16]) -> __m128i {
    // SAFETY: reads exactly the 16 bytes of `q`; the load is unaligned.
    unsafe { _mm_loadu_si128(q.as_ptr().cast()) }
}

/// Eight 16-bit floats (f16 or bf16 bits) as one 128-bit vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_u16x8<T: Copy>(v: &[T; 8]) -> __m128i {
    const { assert!(std::mem::size_of::<T>() == 2) };
    // SAFETY: `T` is 2 bytes (checked at compile time), so this reads exactly
    // the 16 bytes of `v`; the load is unaligned.
    unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
}

/// One f16 to f32 in a register (exact, like `f16::to_f32`, without its
/// runtime feature check).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// 32 4-bit weights as bytes 0..16: low nibbles are weights 0..16, high
/// nibbles 16..32, matching ggml's layout.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn nibbles(qs: &[u8; 16]) -> __m256i {
    let lo = load_u8x16(qs);
    let hi = _mm_srli_epi16::<4>(lo);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0F))
}

/// The fifth bits of Q5 weights, as 0x10 in byte j where bit j of `qh` is set.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn fifth_bits(qh: [u8; 4]) -> __m256i {
    // Byte j takes byte j/8 of qh (the shuffle works within 128-bit lanes,
    // and the broadcast puts all four bytes in both), then tests its bit j%8.
    let spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(qh)), spread);
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Q5 weights as bytes 0..32.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q5_weights(qs: &[u8; 16], qh: [u8; 4]) -> __m256i {
    _mm256_or_si256(nibbles(qs), fifth_bits(qh))
}

// ---------------------------------------------------------------------------
// Horizontal sums.

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

// ---------------------------------------------------------------------------
// Quantized dots. `mul_us(w, y)` sums unsigned bytes `w` times signed bytes
// `y` in groups of four into eight i32 lanes; `mul_us_off(w, o, y)` does the
// same for `w - o`. Both are exact for w < 128 (AVX2's `maddubs` saturates
// 16-bit pair sums beyond that); everything built on them is exact integer
// arithmetic until the per-block scale.

/// Signed by signed bytes, via |x| times y with x's sign (ggml's trick).
/// Exact unless `y` holds -128 where `x` is negative: activations come from
/// the Q8 quantizer, which writes -127..=127.
macro_rules! mul_ss {
    ($x:expr, $y:expr) => {{
        let (x, y) = ($x, $y);
        mul_us(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x))
    }};
}
pub(super) use mul_ss;

/// The quantized dot kernels, written once for every x86 instruction set.
///
/// Expects `mul_us` and `mul_us_off` in scope, compiled for `$feat`. Each
/// block gives eight i32 partial sums and a scale; blocks alternate between
/// two f32 accumulators so consecutive FMAs do not wait on each other.
macro_rules! q_dot_kernels {
    ($feat:literal) => {
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q4_0_q8_0, BlockQ4_0, BlockQ8_0, |x, y| {
            let s = mul_us_off(nibbles(&x.qs), 8, load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1, |x, y| {
            let s = mul_us(nibbles(&x.qs), load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), h(x.m) * h(y.s))
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0, |x, y| {
            let s = mul_us_off(q5_weights(&x.qs, x.qh), 16, load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1, |x, y| {
            let s = mul_us(q5_weights(&x.qs, x.qh), load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), h(x.m) * h(y.s))
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0, |x, y| {
            let s = mul_ss!(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q8_1_q8_1, BlockQ8_1, BlockQ8_1, |x, y| {
            let s = mul_ss!(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, h(x.d) * h(y.d), 0.0)
        });
    };
    (@one $feat:literal, $name:ident, $x:ty, $y:ty, |$xb:ident, $yb:ident| $block:block) => {
        /// Dot product of `x.len()` blocks (`y` must be as long).
        ///
        /// # Safety
        /// The CPU must have the features this function is compiled for.
        #[target_feature(enable = $feat)]
        pub fn $name(x: &[$x], y: &[$y]) -> f32 {
            debug_assert_eq!(x.len(), y.len());
            /// Integer sums, scale and additive term of one block pair.
            #[inline]
            #[target_feature(enable = $feat)]
            fn block($xb: &$x, $yb: &$y) -> (__m256i, f32, f32) {
                #[allow(unused_imports)]
                use $crate::simd::avx2::{f16_to_f32 as h, load_i8x32, mul_ss, nibbles, q5_weights};
                $block
            }

            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut extra = 0.0f32;
            let (xp, xr) = x.as_chunks::<2>();
            let (yp, yr) = y.as_chunks::<2>();
            for (xs, ys) in xp.iter().zip(yp) {
                let (s0, d0, m0) = block(&xs[0], &ys[0]);
                let (s1, d1, m1) = block(&xs[1], &ys[1]);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d1), acc1);
                extra += m0 + m1;
            }
            if let (Some(xl), Some(yl)) = (xr.first(), yr.first()) {
                let (s, d, m) = block(xl, yl);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc0);
                extra += m;
            }
            $crate::simd::avx2::hsum_ps(_mm256_add_ps(acc0, acc1)) + extra
        }
    };
}
pub(super) use q_dot_kernels;

#[inline]
#[target_feature(enable = "avx2")]
fn mul_us(w: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2")]
fn mul_us_off(w: __m256i, off: i8, y: __m256i) -> __m256i {
    // (w - o)·y = w·y - o·y, subtracted in the 16-bit pair sums (|w·y| and
    // |o·y| stay below 2^13 for w, o < 32) so there is one widening madd.
    let wy = _mm256_maddubs_epi16(w, y);
    let oy = _mm256_maddubs_epi16(_mm256_set1_epi8(off), y);
    _mm256_madd_epi16(_mm256_sub_epi16(wy, oy), _mm256_set1_epi16(1))
}

q_dot_kernels!("avx2,fma,f16c");

// ---------------------------------------------------------------------------
// Float dots. Expects in scope: `F` (the vector type), `L` (its f32 lanes),
// `fzero`, `fmadd`, `fadd`, `fhsum`, and for each element type a loader from
// `&[T; L]`. Four accumulators hide the FMA latency; the tail under L values
// is summed in scalar f32.

macro_rules! float_dot_kernels {
    ($feat:literal) => {
        $crate::simd::avx2::float_dot_kernels!(@one $feat, vec_dot_f32, f32, load_f32);
        $crate::simd::avx2::float_dot_kernels!(@one $feat, vec_dot_f16, half::f16, load_f16);
        $crate::simd::avx2::float_dot_kernels!(@one $feat, vec_dot_bf16, half::bf16, load_bf16);
    };
    (@one $feat:literal, $name:ident, $t:ty, $load:ident) => {
        /// Dot product of two rows of equal length.
        ///
        /// # Safety
        /// The CPU must have the features this function is compiled for.
        #[target_feature(enable = $feat)]
        pub fn $name(x: &[$t], y: &[$t]) -> f32 {
            debug_assert_eq!(x.len(), y.len());
            let mut acc = [fzero(); 4];
            let (xc, xt) = x.as_chunks::<{ 4 * L }>();
            let (yc, yt) = y.as_chunks::<{ 4 * L }>();
            for (a, b) in xc.iter().zip(yc) {
                let (a, b) = (a.as_chunks::<L>().0, b.as_chunks::<L>().0);
                for k in 0..4 {
                    acc[k] = fmadd($load(&a[k]), $load(&b[k]), acc[k]);
                }
            }
            let (xv, xs) = xt.as_chunks::<L>();
            let (yv, ys) = yt.as_chunks::<L>();
            for (a, b) in xv.iter().zip(yv) {
                acc[0] = fmadd($load(a), $load(b), acc[0]);
            }
            let tail: f32 = xs.iter().zip(ys).map(|(a, b)| f32::from(*a) * f32::from(*b)).sum();
            fhsum(fadd(fadd(acc[0], acc[1]), fadd(acc[2], acc[3]))) + tail
        }
    };
}
pub(super) use float_dot_kernels;

type F = __m256;
const L: usize = 8;

#[inline]
#[target_feature(enable = "avx2")]
fn fzero() -> F {
    _mm256_setzero_ps()
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn fmadd(a: F, b: F, c: F) -> F {
    _mm256_fmadd_ps(a, b, c)
}

#[inline]
#[target_feature(enable = "avx2")]
fn fadd(a: F, b: F) -> F {
    _mm256_add_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn fhsum(a: F) -> f32 {
    hsum_ps(a)
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_f32(v: &[f32; L]) -> F {
    // SAFETY: reads exactly the 32 bytes of `v`; the load is unaligned.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_f16(v: &[f16; L]) -> F {
    _mm256_cvtph_ps(load_u16x8(v))
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_bf16(v: &[bf16; L]) -> F {
    // bf16 is the top half of an f32: widen and shift (exact).
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load_u16x8(v))))
}

float_dot_kernels!("avx2,fma,f16c");
