//! Multi-token AVX2 dots for prompt processing: one weight row against
//! [`TILE`] activation rows at once. Each weight block is loaded and unpacked
//! once (nibbles, |w|, its f16 scale) and then multiplied into four
//! accumulators, where one-token dots redo that work for every token.
//!
//! Activation scales come in as f32 (converted once per matmul, not once per
//! weight row). Results equal the one-token kernels up to f32 rounding: the
//! integer block sums are exact and identical, only the order of the f32
//! accumulation differs. Tested against the scalar reference in
//! `kernels/tests/tiled.rs`.

use crate::formats::{BlockQ4_0, BlockQ8_0};
use core::arch::x86_64::*;

/// Tokens per tile.
pub const TILE: usize = 4;

/// [`TILE`] activation rows, each as long as the weight row.
pub struct Tile<'a> {
    pub y: [&'a [BlockQ8_0]; TILE],
    /// `f32(y[t][b].d)`.
    pub yd: [&'a [f32]; TILE],
}

/// `dot(w, y[t])` for each activation row of the tile.
pub type TileDot<W> = fn(w: &[W], tile: &Tile) -> [f32; TILE];

/// The Q4_0 tile kernel, when this CPU can run it.
pub fn q4_0_q8_0() -> Option<TileDot<BlockQ4_0>> {
    has_avx2().then_some(q4_0_safe as TileDot<BlockQ4_0>)
}

/// The Q8_0 tile kernel, when this CPU can run it.
pub fn q8_0_q8_0() -> Option<TileDot<BlockQ8_0>> {
    has_avx2().then_some(q8_0_safe as TileDot<BlockQ8_0>)
}

fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

fn check<W>(w: &[W], tile: &Tile) {
    for t in 0..TILE {
        let n = w.len();
        let ok = tile.y[t].len() == n && tile.yd[t].len() == n;
        assert!(ok, "tile rows of different lengths");
    }
}

fn q4_0_safe(w: &[BlockQ4_0], tile: &Tile) -> [f32; TILE] {
    check(w, tile);
    // SAFETY: only handed out by `q4_0_q8_0` after checking that the CPU has
    // AVX2, FMA and F16C; lengths are checked just above.
    unsafe { q4_0_avx2(w, tile) }
}

fn q8_0_safe(w: &[BlockQ8_0], tile: &Tile) -> [f32; TILE] {
    check(w, tile);
    // SAFETY: as for `q4_0_safe`.
    unsafe { q8_0_avx2(w, tile) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load32(q: &[i8; 32]) -> __m256i {
    // SAFETY: reads exactly the 32 bytes of `q`; the load is unaligned.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// The weight block's f16 scale, converted once, in every lane.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn scale(d: half::f16) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(d.to_bits() as i16))
}

/// Horizontal sums of four vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum4(acc: [__m256; TILE]) -> [f32; TILE] {
    let mut out = [0.0; TILE];
    for (o, a) in out.iter_mut().zip(acc) {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        *o = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    out
}

/// Q4_0 weights (`w - 8`, w in 0..16) times Q8_0 activations: the offset is
/// subtracted in the 16-bit pair sums, as the one-token kernel does.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_avx2(w: &[BlockQ4_0], tile: &Tile) -> [f32; TILE] {
    let Tile { y, yd } = tile;
    let mut acc = [_mm256_setzero_ps(); TILE];
    let (ones, eight, low) = (_mm256_set1_epi16(1), _mm256_set1_epi8(8), _mm256_set1_epi8(0x0F));
    for (b, wb) in w.iter().enumerate() {
        // SAFETY: reads exactly the 16 bytes of `qs`; the load is unaligned.
        let lo = unsafe { _mm_loadu_si128(wb.qs.as_ptr().cast()) };
        let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(lo), lo), low);
        let dw = scale(wb.d);
        for t in 0..TILE {
            let yv = load32(&y[t][b].qs);
            let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(q, yv), _mm256_maddubs_epi16(eight, yv));
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
            acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_set1_ps(yd[t][b])), acc[t]);
        }
    }
    hsum4(acc)
}

/// Q8_0 by Q8_0: |w| times y with w's sign (ggml's trick; activations hold
/// -127..=127, as the Q8 quantizer writes), |w| computed once per block.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_avx2(w: &[BlockQ8_0], tile: &Tile) -> [f32; TILE] {
    let Tile { y, yd } = tile;
    let mut acc = [_mm256_setzero_ps(); TILE];
    let ones = _mm256_set1_epi16(1);
    for (b, wb) in w.iter().enumerate() {
        let wv = load32(&wb.qs);
        let aw = _mm256_abs_epi8(wv);
        let dw = scale(wb.d);
        for t in 0..TILE {
            let yv = _mm256_sign_epi8(load32(&y[t][b].qs), wv);
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, yv), ones));
            acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_set1_ps(yd[t][b])), acc[t]);
        }
    }
    hsum4(acc)
}
