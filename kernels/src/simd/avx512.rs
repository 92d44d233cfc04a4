//! AVX-512 (F/BW/VL + VNNI) kernels (x86-64). Every function here is checked
//! against `scalar` in tests.
//!
//! The quantized dots are the AVX2 loops (one 32-weight block per 256-bit
//! register) with the multiply-accumulate done by VNNI's `vpdpbusd`, which
//! sums u8·i8 products in groups of four straight into i32 lanes, replacing
//! AVX2's `maddubs` + `madd` pair and its 16-bit saturation. 256-bit VNNI
//! (AVX512VL) keeps one block per register, so there is no shuffling to pair
//! blocks up; on Zen 4 a 512-bit op costs two 256-bit ones anyway. The float
//! dots use full 512-bit registers.

use super::avx2::{float_dot_kernels, hsum_ps, q_dot_kernels};
// K-quants: the AVX2 kernels (every AVX-512 CPU here has AVX2, FMA, F16C).
pub use super::avx2::{vec_dot_q2_k_q8_k, vec_dot_q3_k_q8_k, vec_dot_q4_k_q8_k, vec_dot_q5_k_q8_k, vec_dot_q6_k_q8_k};
use crate::formats::*;
use core::arch::x86_64::*;
use half::{bf16, f16};

#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn mul_us(w: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, y)
}

#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn mul_us_off(w: __m256i, off: i8, y: __m256i) -> __m256i {
    // (w - o)·y = w·y - o·y; both sums are exact in i32.
    _mm256_sub_epi32(mul_us(w, y), mul_us(_mm256_set1_epi8(off), y))
}

q_dot_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

type F = __m512;
const L: usize = 16;

#[inline]
#[target_feature(enable = "avx512f")]
fn fzero() -> F {
    _mm512_setzero_ps()
}

#[inline]
#[target_feature(enable = "avx512f")]
fn fmadd(a: F, b: F, c: F) -> F {
    _mm512_fmadd_ps(a, b, c)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn fadd(a: F, b: F) -> F {
    _mm512_add_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn fhsum(a: F) -> f32 {
    let lo = _mm512_castps512_ps256(a);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
    hsum_ps(_mm256_add_ps(lo, hi))
}

/// Thirty-two 16-bit floats (f16 or bf16 bits) as one 512-bit vector.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_u16x32<T: Copy>(v: &[T; 2 * L]) -> __m512i {
    const { assert!(std::mem::size_of::<T>() == 2) };
    // SAFETY: `T` is 2 bytes (checked at compile time), so this reads exactly
    // the 64 bytes of `v`; the load is unaligned.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_f32(v: &[f32; 2 * L]) -> [F; 2] {
    // SAFETY: reads the 128 bytes of `v`, 64 at offset 0 and 64 at offset 64
    // (16 floats); the loads are unaligned.
    unsafe { [_mm512_loadu_ps(v.as_ptr()), _mm512_loadu_ps(v.as_ptr().add(L))] }
}

#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn load_f16(v: &[f16; 2 * L]) -> [F; 2] {
    let h = load_u16x32(v);
    [_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h))]
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_bf16(v: &[bf16; 2 * L]) -> [F; 2] {
    // bf16 is the top half of an f32: even values by a 16-bit shift of each
    // 32-bit lane, odd ones by masking off the low half (exact, no shuffles).
    let h = load_u16x32(v);
    let even = _mm512_slli_epi32::<16>(h);
    let odd = _mm512_and_si512(h, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
    [_mm512_castsi512_ps(even), _mm512_castsi512_ps(odd)]
}

float_dot_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
