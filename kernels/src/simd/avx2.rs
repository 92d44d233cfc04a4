//! AVX2 (+FMA, F16C) kernels (x86-64). Every function here is checked
//! against `scalar` in tests.
//!
//! Kernels are safe `#[target_feature]` functions: the only unsafe code is in
//! the loads below, so the dispatcher's promise that the CPU has the features
//! is the one thing callers must uphold. The quantized and float loops are
//! written once, as macros shared with `avx512.rs`; each file supplies its own
//! multiply-accumulate primitives (`mul_us`, `mul_us_off`) and vector width.

use crate::formats::*;
use crate::simd::scalar::SuperBlock;
use core::arch::x86_64::*;
use half::{bf16, f16};

// ---------------------------------------------------------------------------
// Activation quantization.

/// `formats::quantize_q8` in vector code: the same f32 operations (a max is
/// exact in any order, for inputs without NaN), and C's `roundf` (half away
/// from zero) made exact from a truncation: `t + sign(p)` when the dropped
/// fraction `p - t` (exact for |p| < 2^23) is at least one half.
///
/// # Safety
/// Callers outside AVX2 code must make sure the CPU has AVX2
/// (`simd::quantize_q8` does).
#[target_feature(enable = "avx2")]
pub fn quantize_q8(x: &[f32; 32]) -> (f32, [i8; 32]) {
    // SAFETY: four 8-float unaligned loads inside the 32 of `x`.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    let sign = _mm256_set1_ps(-0.0);
    let m = v.map(|v| _mm256_andnot_ps(sign, v));
    let m = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let q = v.map(|v| {
        let p = _mm256_mul_ps(v, id);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(p, t)), half);
        let step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(p, sign), one));
        let r = _mm256_add_ps(t, step);
        // ggml's C cast gives 0 for what does not fit (an infinite `id`
        // from a subnormal `d`, NaN), where the vector cast would give
        // i32::MIN.
        let fits = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, r), _mm256_set1_ps(2_147_483_648.0));
        _mm256_cvttps_epi32(_mm256_and_ps(r, fits))
    });
    // Packing works within 128-bit lanes; one permute puts the values back
    // in order.
    let w = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let mut out = [0i8; 32];
    // SAFETY: a 32-byte unaligned store into the 32 bytes of `out`.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), w) };
    (d, out)
}

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

/// Sixteen 16-bit floats (f16 or bf16 bits) as one 256-bit vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_u16x16<T: Copy>(v: &[T; 16]) -> __m256i {
    const { assert!(std::mem::size_of::<T>() == 2) };
    // SAFETY: `T` is 2 bytes (checked at compile time), so this reads exactly
    // the 32 bytes of `v`; the load is unaligned.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

/// `a * b` of two f16 values, in every lane. Both are converted in one
/// F16C instruction from a broadcast, which (unlike a scalar insert) does not
/// tie the conversion to whatever register LLVM picks to insert into: with
/// `_mm_cvtsi32_si128` it chose the accumulator, chaining every block's scale
/// to the previous block's FMA.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn mul_f16(a: f16, b: f16) -> __m256 {
    let bits = a.to_bits() as u32 | (b.to_bits() as u32) << 16;
    let v = _mm256_cvtph_ps(_mm_set1_epi32(bits as i32));
    _mm256_mul_ps(_mm256_moveldup_ps(v), _mm256_movehdup_ps(v))
}

/// `a * b` of two f16 values as a scalar.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn mul_f16_scalar(a: f16, b: f16) -> f32 {
    _mm256_cvtss_f32(mul_f16(a, b))
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
            (s, mul_f16(x.d, y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1, |x, y| {
            let s = mul_us(nibbles(&x.qs), load_i8x32(&y.qs));
            (s, mul_f16(x.d, y.d), mul_f16_scalar(x.m, y.s))
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0, |x, y| {
            let s = mul_us_off(q5_weights(&x.qs, x.qh), 16, load_i8x32(&y.qs));
            (s, mul_f16(x.d, y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1, |x, y| {
            let s = mul_us(q5_weights(&x.qs, x.qh), load_i8x32(&y.qs));
            (s, mul_f16(x.d, y.d), mul_f16_scalar(x.m, y.s))
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0, |x, y| {
            let s = mul_ss!(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, mul_f16(x.d, y.d), 0.0)
        });
        $crate::simd::avx2::q_dot_kernels!(@one $feat, vec_dot_q8_1_q8_1, BlockQ8_1, BlockQ8_1, |x, y| {
            let s = mul_ss!(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, mul_f16(x.d, y.d), 0.0)
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
            /// Integer sums, scale (in every lane) and additive term of one
            /// block pair.
            #[inline]
            #[target_feature(enable = $feat)]
            fn block($xb: &$x, $yb: &$y) -> (__m256i, __m256, f32) {
                #[allow(unused_imports)]
                use $crate::simd::avx2::{load_i8x32, mul_f16, mul_f16_scalar, mul_ss, nibbles, q5_weights};
                $block
            }

            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut extra = 0.0f32;
            let (xp, xr) = x.as_chunks::<2>();
            let (yp, yr) = y.as_chunks::<2>();
            for (xs, ys) in xp.iter().zip(yp) {
                let (s0, d0, m0) = block(&xs[0], &ys[0]);
                let (s1, d1, m1) = block(&xs[1], &ys[1]);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), d0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), d1, acc1);
                extra += m0 + m1;
            }
            if let (Some(xl), Some(yl)) = (xr.first(), yr.first()) {
                let (s, d, m) = block(xl, yl);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc0);
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
// `&[T; 2 * L]` to two vectors. A loader may return the values in any fixed
// order (bf16 comes out even lanes first, odd second), since both operands
// are loaded alike. Four accumulators hide the FMA latency; the tail under
// 2L values is summed in scalar f32.

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
                let (a, b) = (a.as_chunks::<{ 2 * L }>().0, b.as_chunks::<{ 2 * L }>().0);
                let (a0, b0, a1, b1) = ($load(&a[0]), $load(&b[0]), $load(&a[1]), $load(&b[1]));
                acc[0] = fmadd(a0[0], b0[0], acc[0]);
                acc[1] = fmadd(a0[1], b0[1], acc[1]);
                acc[2] = fmadd(a1[0], b1[0], acc[2]);
                acc[3] = fmadd(a1[1], b1[1], acc[3]);
            }
            let (xv, xs) = xt.as_chunks::<{ 2 * L }>();
            let (yv, ys) = yt.as_chunks::<{ 2 * L }>();
            for (a, b) in xv.iter().zip(yv) {
                let (a, b) = ($load(a), $load(b));
                acc[0] = fmadd(a[0], b[0], acc[0]);
                acc[1] = fmadd(a[1], b[1], acc[1]);
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
fn load_f32(v: &[f32; 2 * L]) -> [F; 2] {
    // SAFETY: reads the 64 bytes of `v`, 32 at offset 0 and 32 at offset 32
    // (8 floats); the loads are unaligned.
    unsafe { [_mm256_loadu_ps(v.as_ptr()), _mm256_loadu_ps(v.as_ptr().add(L))] }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_f16(v: &[f16; 2 * L]) -> [F; 2] {
    let h = load_u16x16(v);
    [_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(h))]
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_bf16(v: &[bf16; 2 * L]) -> [F; 2] {
    // bf16 is the top half of an f32: shifting each 32-bit lane left by 16
    // gives the even values as f32, masking off the low half the odd ones
    // (exact, and no shuffles).
    let h = load_u16x16(v);
    let even = _mm256_slli_epi32::<16>(h);
    let odd = _mm256_and_si256(h, _mm256_set1_epi32(0xFFFF_0000u32 as i32));
    [_mm256_castsi256_ps(even), _mm256_castsi256_ps(odd)]
}

float_dot_kernels!("avx2,fma,f16c");

// ---------------------------------------------------------------------------
// K-quant dots (Q2_K … Q6_K weights · Q8_K activations). A super-block is
// eight groups of 32 weights, each made unsigned bytes (Q3_K and Q6_K
// shifted up by 4 and 32; the shift is taken back through the activations'
// `bsums`). `maddubs` forms pair sums (below 2^15 for levels under 64),
// `madd` with the sub-block scales widens them to i32: exact integer
// arithmetic up to the super-block's `d * dy` and `dmin * dy`.

#[inline]
#[target_feature(enable = "avx2")]
fn load_u8x32(q: &[u8; 32]) -> __m256i {
    // SAFETY: reads exactly the 32 bytes of `q`; the load is unaligned.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// `(v >> shift) & mask` in every byte (the 16-bit shift's carry-in from
/// the neighbouring byte is masked off).
#[inline]
#[target_feature(enable = "avx2")]
fn shift_mask(v: __m256i, shift: i32, mask: i8) -> __m256i {
    _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(mask))
}

/// `add` in each byte of `bits` that has `bit` set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_to(bits: __m256i, bit: usize, add: i8) -> __m256i {
    let m = _mm256_set1_epi8((1u8 << bit) as i8);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bits, m), m), _mm256_set1_epi8(add))
}

/// The 2-bit planes of Q2_K and Q3_K: group `4 h + s` is bits `2 s` of
/// bytes `32 h ..`.
#[inline]
#[target_feature(enable = "avx2")]
fn planes_2bit(qs: &[u8; 64]) -> [__m256i; 8] {
    let halves = qs.as_chunks::<32>().0;
    std::array::from_fn(|g| shift_mask(load_u8x32(&halves[g / 4]), 2 * (g % 4) as i32, 3))
}

/// Q4_K and Q5_K nibbles: group `2 c` is the low nibbles of bytes `32 c ..`,
/// group `2 c + 1` the high ones.
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles_k(qs: &[u8; 128]) -> [__m256i; 8] {
    let chunks = qs.as_chunks::<32>().0;
    std::array::from_fn(|g| shift_mask(load_u8x32(&chunks[g / 2]), 4 * (g % 2) as i32, 0x0F))
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn levels_q2k(x: &BlockQ2K) -> [__m256i; 8] {
    planes_2bit(&x.qs)
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn levels_q3k(x: &BlockQ3K) -> [__m256i; 8] {
    let (low, hm) = (planes_2bit(&x.qs), load_u8x32(&x.hmask));
    std::array::from_fn(|g| _mm256_or_si256(low[g], bit_to(hm, g, 4)))
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn levels_q4k(x: &BlockQ4K) -> [__m256i; 8] {
    nibbles_k(&x.qs)
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn levels_q5k(x: &BlockQ5K) -> [__m256i; 8] {
    let (low, qh) = (nibbles_k(&x.qs), load_u8x32(&x.qh));
    std::array::from_fn(|g| _mm256_or_si256(low[g], bit_to(qh, g, 16)))
}

/// Q6_K: group `4 h + s` takes nibble `s / 2` of `ql` bytes
/// `64 h + 32 (s % 2) ..` and bits `2 s` of `qh` bytes `32 h ..` on top.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn levels_q6k(x: &BlockQ6K) -> [__m256i; 8] {
    let ql = x.ql.as_chunks::<32>().0;
    let qh = x.qh.as_chunks::<32>().0;
    std::array::from_fn(|g| {
        let (h, s) = (g / 4, g % 4);
        let low = shift_mask(load_u8x32(&ql[2 * h + s % 2]), 4 * (s / 2) as i32, 0x0F);
        let high = _mm256_slli_epi16::<4>(shift_mask(load_u8x32(&qh[h]), 2 * s as i32, 3));
        _mm256_or_si256(low, high)
    })
}

// Scales, as i16 lanes: the scale and min of each 16-weight slice
// (32-weight sub-blocks give theirs to both slices). Shared with the
// 4-token kernels in rowtile.rs.

/// One f16 as f32 through F16C (`f16::to_f32` is an out-of-line call
/// here, which would spill the vector registers).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// Twelve packed scale bytes as three little-endian words.
#[inline]
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
pub(super) fn scales_q2k(x: &BlockQ2K) -> (__m256i, __m256i) {
    let b = load_u8x16(&x.scales);
    let m4 = _mm_set1_epi8(0x0F);
    let (sc, m) = (_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16::<4>(b), m4));
    (_mm256_cvtepu8_epi16(sc), _mm256_cvtepu8_epi16(m))
}

/// Q3_K: slice `j`'s 6-bit scale has its low nibble in nibble `j / 8`
/// of byte `j % 8` and its top two bits at bit `2 (j / 4)` of byte
/// `8 + j % 4`; stored 32 above its value.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scales_q3k(x: &BlockQ3K) -> (__m256i, __m256i) {
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
pub(super) fn scales_q4k(x: &BlockQ4K) -> (__m256i, __m256i) {
    scales_k4(&x.scales)
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scales_q5k(x: &BlockQ5K) -> (__m256i, __m256i) {
    scales_k4(&x.scales)
}

/// Q6_K: one signed byte per 16-weight slice.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scales_q6k(x: &BlockQ6K) -> (__m256i, __m256i) {
    // SAFETY: reads exactly the 16 bytes of `x.scales`, unaligned.
    let b = unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) };
    (_mm256_cvtepi8_epi16(b), _mm256_setzero_si256())
}

/// The low and the high half of the 16 slice scales, each in both 128-bit
/// lanes, for [`group_scales`].
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scale_halves(sc16: __m256i) -> [__m256i; 2] {
    [_mm256_permute2x128_si256::<0x00>(sc16, sc16), _mm256_permute2x128_si256::<0x11>(sc16, sc16)]
}

/// The scales of group `g` (32 weights, slices `2 g` and `2 g + 1`) in
/// the 16 i16 lanes that `madd` meets the group's `maddubs` pair sums
/// with: slice `2 g` in the low 128 bits, `2 g + 1` in the high.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn group_scales(halves: &[__m256i; 2], g: usize) -> __m256i {
    let b = 4 * (g % 4) as i16;
    let pick = |b: i16| _mm_set1_epi16(b | (b + 1) << 8);
    _mm256_shuffle_epi8(halves[g / 4], _mm256_set_m128i(pick(b + 2), pick(b)))
}

/// One K-quant dot kernel: `$levels` gives a super-block's eight groups as
/// unsigned bytes, each `$off` above the format's signed levels; `$scales`
/// the slice scales and mins (see above); `$d_dmin` the f16 `d` and `dmin`.
///
/// All scale work is vector code, with nothing called out of line (an
/// `f16::to_f32` call or the scalar `scales_mins` spilled every register):
/// each group's pair sums meet its scales in one `madd`, alternating
/// between two integer sums; the offset is taken back and the mins' share
/// formed with one `madd` of `bsums` each. The integer sums are exact
/// (bounds in rowtile.rs's `k_tile`), up to the super-block's `d * dy` and
/// `dmin * dy`.
macro_rules! k_dot {
    ($name:ident, $x:ty, $levels:ident, $scales:ident, $off:expr, |$b:ident| $d_dmin:expr) => {
        /// Dot product of `x.len()` super-blocks (`y` must be as long).
        ///
        /// # Safety
        /// The CPU must have AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub fn $name(x: &[$x], y: &[BlockQ8K]) -> f32 {
            debug_assert_eq!(x.len(), y.len());
            let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (xb, yb) in x.iter().zip(y) {
                let (sc16, min16) = $scales(xb);
                let halves = scale_halves(sc16);
                let groups = $levels(xb);
                let q8 = yb.qs.as_chunks::<32>().0;
                let mut sums = [_mm256_setzero_si256(); 2];
                for (g, &w) in groups.iter().enumerate() {
                    let p = _mm256_maddubs_epi16(w, load_i8x32(&q8[g]));
                    sums[g % 2] = _mm256_add_epi32(sums[g % 2], _mm256_madd_epi16(p, group_scales(&halves, g)));
                }
                let mut sum = _mm256_add_epi32(sums[0], sums[1]);
                // SAFETY: reads exactly the 32 bytes of `bsums`, unaligned.
                let bsums = unsafe { _mm256_loadu_si256(yb.bsums.as_ptr().cast()) };
                if $off != 0 {
                    let off16 = _mm256_mullo_epi16(sc16, _mm256_set1_epi16($off));
                    sum = _mm256_sub_epi32(sum, _mm256_madd_epi16(bsums, off16));
                }
                let (d, dmin) = {
                    let $b = xb;
                    $d_dmin
                };
                acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(d) * yb.d), _mm256_cvtepi32_ps(sum), acc);
                if <$x as SuperBlock>::HAS_MIN {
                    let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, min16));
                    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(dmin) * yb.d), mins, acc_min);
                }
            }
            hsum_ps(_mm256_sub_ps(acc, acc_min))
        }
    };
}

k_dot!(vec_dot_q2_k_q8_k, BlockQ2K, levels_q2k, scales_q2k, 0, |b| (b.d, b.dmin));
k_dot!(vec_dot_q3_k_q8_k, BlockQ3K, levels_q3k, scales_q3k, 4, |b| (b.d, f16::ZERO));
k_dot!(vec_dot_q4_k_q8_k, BlockQ4K, levels_q4k, scales_q4k, 0, |b| (b.d, b.dmin));
k_dot!(vec_dot_q5_k_q8_k, BlockQ5K, levels_q5k, scales_q5k, 0, |b| (b.d, b.dmin));
k_dot!(vec_dot_q6_k_q8_k, BlockQ6K, levels_q6k, scales_q6k, 32, |b| (b.d, f16::ZERO));
