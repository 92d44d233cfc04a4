//! ggml's original 32-weight block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
//! the activation format Q8_1. Quantizers are bit-exact ports of ggml's
//! `quantize_row_*_ref` (and of gguf-py's numpy versions of them).
//!
//! Each format is two pieces of shared logic: how 32 floats become a scale
//! and 32 small integers (symmetric, offset, or 8-bit), and how those integers
//! are packed (nibbles, nibbles + a fifth bit, or bytes). The [`BlockInts`]
//! view gives the integers back for dequantization and the reference dots.

use super::*;
use crate::simd::scalar::{BlockInts, BlockMin, BlockSum};
use crate::simd::{self, Isa};
use half::f16;

pub const QK: usize = 32;

/// C's float-to-integer cast as ggml's reference compiles on x86
/// (`cvttss2si`, keeping the low byte): truncation toward zero, and 0 for
/// NaN, infinities and out-of-range values. numpy's cast, which gguf-py uses,
/// gives the same bytes. Only blocks whose scale is subnormal (so `1/d`
/// overflows) produce non-finite values here.
#[inline]
fn c_cast_byte(v: f32) -> u8 {
    if v.is_finite() && v.abs() < 2_147_483_648.0 {
        v as i32 as u8
    } else {
        0
    }
}

/// ggml's `id = d ? 1/d : 0`, from the f32 scale (not its f16 rounding).
#[inline]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Q4_0 / Q5_0: `d = max / -2^(bits-1)` where `max` is the value of largest
/// magnitude, sign included (the first one on ties), so that it maps to the
/// extreme level exactly; `q = min(2^bits-1, trunc(x/d + 2^(bits-1) + 0.5))`.
fn quantize_sym<const BITS: u32>(x: &[f32]) -> (f32, [u8; QK]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let half = (1u32 << (BITS - 1)) as f32;
    let d = max / -half;
    let id = inverse(d);
    let top = (1u8 << BITS) - 1;
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = c_cast_byte(v * id + (half + 0.5)).min(top);
    }
    (d, q)
}

/// Q4_1 / Q5_1: `d = (max - min) / (2^bits - 1)`, `q = trunc((x - min)/d + 0.5)`.
fn quantize_offset<const BITS: u32>(x: &[f32]) -> (f32, f32, [u8; QK]) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let top = (1u8 << BITS) - 1;
    let d = (max - min) / top as f32;
    let id = inverse(d);
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        // ggml's Q5_1 does not clamp; the value cannot exceed 31 anyway
        // (gguf-py clamps both), so clamping keeps one code path.
        *q = c_cast_byte((v - min) * id + 0.5).min(top);
    }
    (d, min, q)
}

/// Q8_0 / Q8_1: `d = amax / 127`, `q = roundf(x / d)` (half away from zero).
/// The scalar reference of `simd::quantize_q8`.
pub(crate) fn quantize_q8(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = inverse(d);
    let mut q = [0i8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = c_cast_byte((v * id).round()) as i8;
    }
    (d, q)
}

/// Low nibbles hold weights 0..16, high nibbles 16..32.
fn pack_nibbles(q: &[u8; QK]) -> [u8; QK / 2] {
    std::array::from_fn(|j| (q[j] & 0x0F) | (q[j + QK / 2] & 0x0F) << 4)
}

fn unpack_nibbles(qs: &[u8; QK / 2]) -> [u8; QK] {
    std::array::from_fn(|i| if i < QK / 2 { qs[i] & 0x0F } else { qs[i - QK / 2] >> 4 })
}

/// Bit `i` of the little-endian u32 is the fifth bit of weight `i`.
fn pack_high_bits(q: &[u8; QK]) -> [u8; 4] {
    let qh = q.iter().enumerate().fold(0u32, |qh, (i, &q)| qh | (((q >> 4) & 1) as u32) << i);
    qh.to_le_bytes()
}

fn with_high_bits(low: [u8; QK], qh: &[u8; 4]) -> [u8; QK] {
    let qh = u32::from_le_bytes(*qh);
    std::array::from_fn(|i| low[i] | (((qh >> i) & 1) as u8) << 4)
}

/// Subtract the zero level of a symmetric format.
fn centre(q: [u8; QK], zero: u8) -> [i8; QK] {
    q.map(|q| q as i8 - zero as i8)
}

/// How each format is built from a block of floats; the [`GgmlType`] impls
/// below are generic over this.
trait Legacy: BlockInts + Sized {
    /// Whether values are `d * q + m` rather than `d * q`.
    const HAS_OFFSET: bool = false;
    fn quantize(x: &[f32]) -> Self;
    /// The `m` of offset formats; 0 for symmetric ones.
    fn offset(&self) -> f32 {
        0.0
    }
}

impl Legacy for BlockQ4_0 {
    fn quantize(x: &[f32]) -> Self {
        let (d, q) = quantize_sym::<4>(x);
        Self { d: f16::from_f32(d), qs: pack_nibbles(&q) }
    }
}

impl BlockInts for BlockQ4_0 {
    fn ints(&self) -> [i8; QK] {
        centre(unpack_nibbles(&self.qs), 8)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl Legacy for BlockQ5_0 {
    fn quantize(x: &[f32]) -> Self {
        let (d, q) = quantize_sym::<5>(x);
        Self { d: f16::from_f32(d), qh: pack_high_bits(&q), qs: pack_nibbles(&q) }
    }
}

impl BlockInts for BlockQ5_0 {
    fn ints(&self) -> [i8; QK] {
        centre(with_high_bits(unpack_nibbles(&self.qs), &self.qh), 16)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl Legacy for BlockQ4_1 {
    fn quantize(x: &[f32]) -> Self {
        let (d, m, q) = quantize_offset::<4>(x);
        Self { d: f16::from_f32(d), m: f16::from_f32(m), qs: pack_nibbles(&q) }
    }
    const HAS_OFFSET: bool = true;
    fn offset(&self) -> f32 {
        self.m()
    }
}

impl BlockInts for BlockQ4_1 {
    fn ints(&self) -> [i8; QK] {
        unpack_nibbles(&self.qs).map(|q| q as i8)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl BlockMin for BlockQ4_1 {
    fn m(&self) -> f32 {
        self.m.to_f32()
    }
}

impl Legacy for BlockQ5_1 {
    fn quantize(x: &[f32]) -> Self {
        let (d, m, q) = quantize_offset::<5>(x);
        Self { d: f16::from_f32(d), m: f16::from_f32(m), qh: pack_high_bits(&q), qs: pack_nibbles(&q) }
    }
    const HAS_OFFSET: bool = true;
    fn offset(&self) -> f32 {
        self.m()
    }
}

impl BlockInts for BlockQ5_1 {
    fn ints(&self) -> [i8; QK] {
        with_high_bits(unpack_nibbles(&self.qs), &self.qh).map(|q| q as i8)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl BlockMin for BlockQ5_1 {
    fn m(&self) -> f32 {
        self.m.to_f32()
    }
}

impl Legacy for BlockQ8_0 {
    fn quantize(x: &[f32]) -> Self {
        // Activations are quantized on every matmul: the vector version
        // (bit-identical) where there is one.
        let (d, qs) = simd::quantize_q8(simd::isa(), x);
        Self { d: f16::from_f32(d), qs }
    }
}

impl BlockInts for BlockQ8_0 {
    fn ints(&self) -> [i8; QK] {
        self.qs
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl Legacy for BlockQ8_1 {
    /// Q8_0's `d` and `qs`, plus `s = sum(qs) * d` from the f32 `d`.
    fn quantize(x: &[f32]) -> Self {
        let (d, qs) = simd::quantize_q8(simd::isa(), x);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        Self { d: f16::from_f32(d), s: f16::from_f32(sum as f32 * d), qs }
    }
}

impl BlockInts for BlockQ8_1 {
    fn ints(&self) -> [i8; QK] {
        self.qs
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
}

impl BlockSum for BlockQ8_1 {
    fn s(&self) -> f32 {
        self.s.to_f32()
    }
}

fn from_float_blocks<T: Legacy>(src: &[f32], dst: &mut [T]) {
    assert_eq!(src.len(), dst.len() * QK, "quantize: {} values for {} blocks", src.len(), dst.len());
    for (b, x) in dst.iter_mut().zip(src.chunks_exact(QK)) {
        *b = T::quantize(x);
    }
}

/// ggml's `dequantize_row_*`: `(float)int * d (+ m)`, in f32.
fn to_float_blocks<T: Legacy>(src: &[T], dst: &mut [f32]) {
    assert_eq!(dst.len(), src.len() * QK, "dequantize: {} values for {} blocks", dst.len(), src.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (b.d(), b.offset());
        for (y, &q) in y.iter_mut().zip(&b.ints()) {
            // Symmetric formats have no `+ m` in ggml; adding 0.0 is exact
            // except that it turns -0.0 into +0.0, so skip it.
            *y = if T::HAS_OFFSET { q as f32 * d + m } else { q as f32 * d };
        }
    }
}

macro_rules! legacy_type {
    ($t:ty, $dt:ident, $vd:ty, $dot:ident) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = GgmlDType::$dt;
            const BLOCK_SIZE: usize = QK;
            type VecDot = $vd;
            fn from_float(src: &[f32], dst: &mut [Self]) {
                from_float_blocks(src, dst)
            }
            fn to_float(src: &[Self], dst: &mut [f32]) {
                to_float_blocks(src, dst)
            }
            fn vec_dot(isa: Isa, x: &[Self], y: &[Self::VecDot]) -> f32 {
                simd::$dot(isa, x, y)
            }
        }
    };
}
legacy_type!(BlockQ4_0, Q4_0, BlockQ8_0, vec_dot_q4_0_q8_0);
legacy_type!(BlockQ4_1, Q4_1, BlockQ8_1, vec_dot_q4_1_q8_1);
legacy_type!(BlockQ5_0, Q5_0, BlockQ8_0, vec_dot_q5_0_q8_0);
legacy_type!(BlockQ5_1, Q5_1, BlockQ8_1, vec_dot_q5_1_q8_1);
legacy_type!(BlockQ8_0, Q8_0, BlockQ8_0, vec_dot_q8_0_q8_0);
legacy_type!(BlockQ8_1, Q8_1, BlockQ8_1, vec_dot_q8_1_q8_1);
