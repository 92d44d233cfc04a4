//! ggml's K-quants: 256-weight super-blocks split into 16 or 32-weight
//! sub-blocks, each with its own small integer scale (and, for Q2_K, Q4_K
//! and Q5_K, a min), scaled again by the super-block's f16 `d` (and `dmin`).
//! Q8_K is the activation format their dot products use.
//!
//! Quantizers are ports of ggml's `quantize_row_q*_K_ref` (the weighted
//! least-squares scale searches `make_qkx2_quants`, `make_qx_quants`,
//! `make_q3_quants`), keeping ggml's f32 operation order so that the bytes
//! are identical. Every format is seen through [`SuperBlock`] (256 small
//! integers plus sub-block scales), which dequantization and the reference
//! dots are written against once.

use super::*;
use crate::simd::scalar::SuperBlock;
use crate::simd::{self, Isa};
use half::f16;

pub const QK_K: usize = 256;

/// ggml treats groups whose largest magnitude is below this as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// 2-bit weights: `w = d * sc * q - dmin * m`, q in 0..4, with a 4-bit scale
/// (low nibble) and min (high nibble) per 16 weights.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: f16,
    pub dmin: f16,
}

/// 3-bit weights: `w = d * (sc - 32) * (q - 4)`, the third bit in `hmask`,
/// 6-bit scales per 16 weights packed into 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: f16,
}

/// 4-bit weights: `w = d * sc * q - dmin * m`, q in 0..16, with 6-bit scale
/// and min per 32 weights packed into 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// 5-bit weights: Q4_K plus a fifth bit per weight in `qh`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 6-bit weights: `w = d * sc * (q - 32)`, low 4 bits in `ql`, high 2 in
/// `qh`, an i8 scale per 16 weights.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

/// 256 activations: `x = d * q`, with `bsums[j]` the sum of `q` over
/// weights `16 j .. 16 j + 16` (for the formats with mins).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const _: () = {
    assert!(std::mem::size_of::<BlockQ2K>() == 84);
    assert!(std::mem::size_of::<BlockQ3K>() == 110);
    assert!(std::mem::size_of::<BlockQ4K>() == 144);
    assert!(std::mem::size_of::<BlockQ5K>() == 176);
    assert!(std::mem::size_of::<BlockQ6K>() == 210);
    assert!(std::mem::size_of::<BlockQ8K>() == 292);
};

// ---------------------------------------------------------------------------
// ggml's scale searches, in its f32 operation order.

/// ggml's `nearest_int`: round half to even through the 1.5 * 2^23 trick.
/// Outside |v| <= 2^22 (where ggml only asserts in debug builds) it gives
/// the same wrapped bits as ggml's release build, NaN included (0).
#[inline]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007F_FFFF) - 0x0040_0000
}

/// The value of largest magnitude, sign kept (the first one on ties), and
/// that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// `make_qkx2_quants`: levels `l` in 0..=nmax for `x ≈ scale * l - min`,
/// trying `nstep + 1` scales around `nmax / (max - min)` and keeping the one
/// with the least weighted error (squared, or absolute when `use_mad`), each
/// refitted by weighted least squares. Returns (scale, min).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let level = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        l[i] = level(iscale, x[i], min);
        best_error += w[i] * err(scale * l[i] as f32 + min - x[i]);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            laux[i] = level(iscale, x[i], min);
            let lf = laux[i] as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                cur_error += w[i] * err(this_scale * laux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_qx_quants` with `rmse_type = 1` and no importance weights (the only
/// way the reference quantizers call it): symmetric levels `l` in
/// 0..2*nmax (stored with +nmax), weighted by x², trying 18 scales around
/// `-nmax / max`. Returns the scale.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Weighted sums of x·l and l² for the levels at `iscale`.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let q = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut set_levels = |iscale: f32| {
        for (l, &v) in l.iter_mut().zip(x) {
            *l = (level(iscale, v) + nmax) as i8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set_levels(iscale);
    let (sumlx, suml2) = sums(iscale);
    // C's `suml2 ? ... : 0`: NaN counts as true.
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_levels(iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse`: symmetric levels in -nmax..nmax
/// (stored with +nmax), then up to five passes moving single levels where
/// that improves the x²-weighted fit. Returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (l, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *l = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (l, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let old = *l as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != *l as i32 {
                    slx += w * v * new as f32;
                    sl2 += w * new as f32 * new as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *l = new as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for l in l.iter_mut() {
        *l += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------
// Bit packing, shared between formats. Weight `e` of a super-block is stored
// in byte `e % 32` (within its 128-weight half for the 2-bit planes) so that
// SIMD loads take 32 consecutive weights from one byte range.

/// 2-bit planes (Q2_K, Q3_K low bits): byte `32 h + i` holds weights
/// `128 h + 32 s + i` for s = 0..4 in bits `2 s`.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; 64] {
    std::array::from_fn(|b| {
        let (h, i) = (b / 32, b % 32);
        (0..4).fold(0u8, |q, s| q | (l[128 * h + 32 * s + i] & 3) << (2 * s))
    })
}

fn unpack_2bit(qs: &[u8; 64]) -> [u8; QK_K] {
    std::array::from_fn(|e| (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3)
}

/// One extra bit per weight (Q3_K `hmask`, Q5_K `qh`): bit `e / 32` of byte
/// `e % 32`, taken from bit `bit` of each level.
fn pack_bit(l: &[u8; QK_K], bit: u32) -> [u8; 32] {
    std::array::from_fn(|i| (0..8).fold(0u8, |m, k| m | ((l[32 * k + i] >> bit) & 1) << k))
}

fn unpack_bit(bits: &[u8; 32]) -> [u8; QK_K] {
    std::array::from_fn(|e| (bits[e % 32] >> (e / 32)) & 1)
}

/// Nibbles (Q4_K, Q5_K low bits): byte `32 c + i` holds weight `64 c + i` low
/// and `64 c + 32 + i` high.
fn pack_nibbles(l: &[u8; QK_K]) -> [u8; 128] {
    std::array::from_fn(|b| {
        let (c, i) = (b / 32, b % 32);
        (l[64 * c + i] & 0xF) | (l[64 * c + 32 + i] & 0xF) << 4
    })
}

fn unpack_nibbles(qs: &[u8; 128]) -> [u8; QK_K] {
    std::array::from_fn(|e| {
        let b = qs[32 * (e / 64) + e % 32];
        if e % 64 < 32 {
            b & 0xF
        } else {
            b >> 4
        }
    })
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min of sub-block `j` of
/// Q4_K/Q5_K. Bytes 0..4 hold scales 0..4, bytes 4..8 mins 0..4, bytes 8..12
/// the low nibbles of scales and mins 4..8, whose top two bits sit in the
/// top bits of bytes 0..8.
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4, (q[j + 4] >> 4) | (q[j] >> 6) << 4)
    }
}

pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0xF) | (lm[j] & 0xF) << 4;
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
    q
}

/// Q3_K's sixteen 6-bit scales (stored +32): low nibbles in bytes 0..8
/// (scale j in byte j % 8, high nibble for j >= 8), top two bits of scale j
/// in byte `8 + j % 4` at bit `2 (j / 4)`.
fn unpack_q3_scales(q: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { q[j] & 0xF } else { q[j - 8] >> 4 };
        low | ((q[8 + j % 4] >> (2 * (j / 4))) & 3) << 4
    })
}

fn pack_q3_scales(ls: &[u8; 16]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        q[j % 8] |= (l & 0xF) << (4 * (j / 8));
        q[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    q
}

// ---------------------------------------------------------------------------
// Quantizers.

/// Levels of a super-block after the sub-block scales are fixed: where the
/// final sub-block scale `d` is nonzero, ggml recomputes every level from it
/// (keeping the search's levels only where `d` is 0).
fn requantize(x: &[f32], l: &mut [u8], d: f32, m: f32, lo: i32, hi: i32) {
    // C's `if (!d) continue;`: NaN counts as nonzero.
    if d == 0.0 {
        return;
    }
    for (l, &v) in l.iter_mut().zip(x) {
        *l = (nearest_int((v + m) / d).clamp(lo, hi) - lo) as u8;
    }
}

impl BlockQ2K {
    /// `quantize_row_q2_K_ref`.
    fn quantize(x: &[f32]) -> Self {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let w: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
            (scales[j], mins[j]) = make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        // Scale in the low nibble, min in the high one; C truncates the
        // levels to bytes as they are (they are in 0..16 for sane input).
        let mut sc = [0u8; 16];
        let mut d = f16::ZERO;
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
            d = f16::from_f32(max_scale / 15.0);
        }
        let mut dmin = f16::ZERO;
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            dmin = f16::from_f32(max_min / 15.0);
        }
        for j in 0..16 {
            let dl = d.to_f32() * (sc[j] & 0xF) as f32;
            let ml = dmin.to_f32() * (sc[j] >> 4) as f32;
            requantize(&x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], dl, ml, 0, 3);
        }
        Self { scales: sc, qs: pack_2bit(&l), d, dmin }
    }
}

impl BlockQ3K {
    /// `quantize_row_q3_K_ref`.
    fn quantize(x: &[f32]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        let mut packed = [0u8; 12];
        let mut d = f16::ZERO;
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            // C stores the level in an int8_t before clamping.
            let ls = scales.map(|s| ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8);
            packed = pack_q3_scales(&ls);
            d = f16::from_f32(1.0 / iscale);
        }
        let mut l = l.map(|v| v as u8);
        for (j, &s) in unpack_q3_scales(&packed).iter().enumerate() {
            let dl = d.to_f32() * (s as i32 - 32) as f32;
            requantize(&x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], dl, 0.0, -4, 3);
        }
        Self { hmask: pack_bit(&l, 2), qs: pack_2bit(&l), scales: packed, d }
    }
}

/// `quantize_row_q4_K_ref` / `quantize_row_q5_K_ref`, which differ only in
/// `nmax` and the search range: levels, d, dmin and packed scales.
fn quantize_qkx(x: &[f32], nmax: i32, rmin: f32, nstep: i32) -> ([u8; QK_K], f16, f16, [u8; 12]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(nmax, xs, &w, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep, false);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // C stores the levels in a uint8_t before clamping.
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dl = d.to_f32() * sc as f32;
        let ml = dmin.to_f32() * m as f32;
        requantize(&x[32 * j..32 * j + 32], &mut l[32 * j..32 * j + 32], dl, ml, 0, nmax);
    }
    (l, d, dmin, packed)
}

impl BlockQ4K {
    fn quantize(x: &[f32]) -> Self {
        let (l, d, dmin, scales) = quantize_qkx(x, 15, -1.0, 20);
        Self { d, dmin, scales, qs: pack_nibbles(&l) }
    }
}

impl BlockQ5K {
    fn quantize(x: &[f32]) -> Self {
        let (l, d, dmin, scales) = quantize_qkx(x, 31, -0.5, 15);
        Self { d, dmin, scales, qh: pack_bit(&l, 4), qs: pack_nibbles(&l) }
    }
}

impl BlockQ6K {
    /// `quantize_row_q6_K_ref`.
    fn quantize(x: &[f32]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > max_abs {
                max_abs = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs < GROUP_MAX_EPS {
            return Self { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: f16::ZERO };
        }
        let iscale = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        let sc = scales.map(|s| nearest_int(iscale * s).min(127) as i8);
        let mut l = l.map(|v| v as u8);
        for j in 0..16 {
            let dl = d.to_f32() * sc[j] as f32;
            requantize(&x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], dl, 0.0, -32, 31);
        }
        // Low nibbles as Q4_K's but in 128-weight halves (weights 64..128
        // of a half in the high nibbles); the top two bits as the 2-bit
        // planes of Q2_K.
        let ql = std::array::from_fn(|b| {
            let (h, i) = (b / 64, b % 64);
            (l[128 * h + i] & 0xF) | (l[128 * h + 64 + i] & 0xF) << 4
        });
        let high = l.map(|v| v >> 4);
        Self { ql, qh: pack_2bit(&high), scales: sc, d }
    }

    fn levels(&self) -> [u8; QK_K] {
        let high = unpack_2bit(&self.qh);
        std::array::from_fn(|e| {
            let b = self.ql[64 * (e / 128) + e % 64];
            let low = if e % 128 < 64 { b & 0xF } else { b >> 4 };
            low | high[e] << 4
        })
    }
}

impl BlockQ8K {
    /// `quantize_row_q8_K_ref`: `d = max / -127` from the signed maximum,
    /// `q = min(127, round(x / d))`, and the sums of each 16 `q`.
    fn quantize(x: &[f32]) -> Self {
        let (max, amax) = signed_max(x);
        if amax == 0.0 {
            // ggml leaves `bsums` as they were; zero is what they sum to.
            return Self { d: 0.0, qs: [0; QK_K], bsums: [0; 16] };
        }
        let iscale = -127.0 / max;
        let qs: [i8; QK_K] = std::array::from_fn(|j| nearest_int(iscale * x[j]).min(127) as i8);
        let bsums = std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
        Self { d: 1.0 / iscale, qs, bsums }
    }
}

// ---------------------------------------------------------------------------
// The integer view every dequantizer and reference dot works on.

impl SuperBlock for BlockQ2K {
    const SUB: usize = 16;
    const HAS_MIN: bool = true;
    const ONE_SUM: bool = true;
    fn ints(&self) -> [i8; QK_K] {
        unpack_2bit(&self.qs).map(|q| q as i8)
    }
    #[inline]
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]) {
        (self.scales.map(|s| (s & 0xF) as i32), self.scales.map(|s| (s >> 4) as i32))
    }
    #[inline]
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn dmin(&self) -> f32 {
        self.dmin.to_f32()
    }
}

impl SuperBlock for BlockQ3K {
    const SUB: usize = 16;
    const HAS_MIN: bool = false;
    fn ints(&self) -> [i8; QK_K] {
        let (low, high) = (unpack_2bit(&self.qs), unpack_bit(&self.hmask));
        std::array::from_fn(|e| (low[e] | high[e] << 2) as i8 - 4)
    }
    #[inline]
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]) {
        (unpack_q3_scales(&self.scales).map(|s| s as i32 - 32), [0; 16])
    }
    #[inline]
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

/// Q4_K and Q5_K's 6-bit scales and mins.
#[inline]
fn scales_mins_k4(q: &[u8; 12]) -> ([i32; 16], [i32; 16]) {
    let (mut sc, mut m) = ([0; 16], [0; 16]);
    for j in 0..8 {
        let (s, n) = get_scale_min_k4(j, q);
        (sc[j], m[j]) = (s as i32, n as i32);
    }
    (sc, m)
}

impl SuperBlock for BlockQ4K {
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn ints(&self) -> [i8; QK_K] {
        unpack_nibbles(&self.qs).map(|q| q as i8)
    }
    #[inline]
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]) {
        scales_mins_k4(&self.scales)
    }
    #[inline]
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn dmin(&self) -> f32 {
        self.dmin.to_f32()
    }
}

impl SuperBlock for BlockQ5K {
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn ints(&self) -> [i8; QK_K] {
        let (low, high) = (unpack_nibbles(&self.qs), unpack_bit(&self.qh));
        std::array::from_fn(|e| (low[e] | high[e] << 4) as i8)
    }
    #[inline]
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]) {
        scales_mins_k4(&self.scales)
    }
    #[inline]
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn dmin(&self) -> f32 {
        self.dmin.to_f32()
    }
}

impl SuperBlock for BlockQ6K {
    const SUB: usize = 16;
    const HAS_MIN: bool = false;
    fn ints(&self) -> [i8; QK_K] {
        self.levels().map(|q| q as i8 - 32)
    }
    #[inline]
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]) {
        (self.scales.map(|s| s as i32), [0; 16])
    }
    #[inline]
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

// ---------------------------------------------------------------------------
// GgmlType impls.

/// ggml's `dequantize_row_q*_K`: per sub-block `dl = d * sc` (and
/// `ml = dmin * m`), then `dl * q (- ml)`, in f32.
fn to_float_blocks<T: SuperBlock>(src: &[T], dst: &mut [f32]) {
    assert_eq!(dst.len(), src.len() * QK_K, "dequantize: {} values for {} blocks", dst.len(), src.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (b.d(), b.dmin());
        let (sc, m) = b.scales_mins();
        let q = b.ints();
        for (j, (y, q)) in y.chunks_exact_mut(T::SUB).zip(q.chunks_exact(T::SUB)).enumerate() {
            let dl = d * sc[j] as f32;
            let ml = dmin * m[j] as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                // Symmetric formats have no `- ml` in ggml (it would turn
                // -0.0 into +0.0).
                *y = if T::HAS_MIN { dl * q as f32 - ml } else { dl * q as f32 };
            }
        }
    }
}

fn from_float_blocks<T>(src: &[f32], dst: &mut [T], quantize: fn(&[f32]) -> T) {
    assert_eq!(src.len(), dst.len() * QK_K, "quantize: {} values for {} blocks", src.len(), dst.len());
    for (b, x) in dst.iter_mut().zip(src.chunks_exact(QK_K)) {
        *b = quantize(x);
    }
}

macro_rules! k_type {
    ($t:ty, $dt:ident, $dot:ident) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = GgmlDType::$dt;
            const BLOCK_SIZE: usize = QK_K;
            type VecDot = BlockQ8K;
            fn from_float(src: &[f32], dst: &mut [Self]) {
                from_float_blocks(src, dst, Self::quantize)
            }
            fn to_float(src: &[Self], dst: &mut [f32]) {
                to_float_blocks(src, dst)
            }
            fn vec_dot(isa: Isa, x: &[Self], y: &[BlockQ8K]) -> f32 {
                simd::$dot(isa, x, y)
            }
        }
    };
}
k_type!(BlockQ2K, Q2K, vec_dot_q2_k_q8_k);
k_type!(BlockQ3K, Q3K, vec_dot_q3_k_q8_k);
k_type!(BlockQ4K, Q4K, vec_dot_q4_k_q8_k);
k_type!(BlockQ5K, Q5K, vec_dot_q5_k_q8_k);
k_type!(BlockQ6K, Q6K, vec_dot_q6_k_q8_k);

impl GgmlType for BlockQ8K {
    const DTYPE: GgmlDType = GgmlDType::Q8K;
    const BLOCK_SIZE: usize = QK_K;
    type VecDot = BlockQ8K;
    fn from_float(src: &[f32], dst: &mut [Self]) {
        from_float_blocks(src, dst, Self::quantize)
    }
    /// `dequantize_row_q8_K`: `d * q`.
    fn to_float(src: &[Self], dst: &mut [f32]) {
        assert_eq!(dst.len(), src.len() * QK_K, "dequantize: {} values for {} blocks", dst.len(), src.len());
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = b.d * q as f32;
            }
        }
    }
    /// Q8_K is activation-only in ggml (no matmul uses it as weights, and
    /// the type table gives it no dot); this scalar dot exists for tests.
    fn vec_dot(_isa: Isa, x: &[Self], y: &[Self]) -> f32 {
        simd::scalar::vec_dot_q8_k_q8_k(x, y)
    }
}
