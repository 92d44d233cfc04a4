//! The plain float types: one "block" is one value.

use super::GgmlType;
use crate::dtype::GgmlDType;
use crate::simd::{self, Isa};
use half::{bf16, f16};

impl GgmlType for f32 {
    const DTYPE: GgmlDType = GgmlDType::F32;
    const BLOCK_SIZE: usize = 1;
    type VecDot = f32;

    fn from_float(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }

    fn to_float(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn vec_dot(isa: Isa, x: &[Self], y: &[Self]) -> f32 {
        simd::vec_dot_f32(isa, x, y)
    }
}

impl GgmlType for f16 {
    const DTYPE: GgmlDType = GgmlDType::F16;
    const BLOCK_SIZE: usize = 1;
    type VecDot = f16;

    fn from_float(src: &[f32], dst: &mut [Self]) {
        assert_eq!(src.len(), dst.len());
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f32_to_f16(s);
        }
    }

    fn to_float(src: &[Self], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16_to_f32(*s);
        }
    }

    fn vec_dot(isa: Isa, x: &[Self], y: &[Self]) -> f32 {
        simd::vec_dot_f16(isa, x, y)
    }
}

impl GgmlType for bf16 {
    const DTYPE: GgmlDType = GgmlDType::BF16;
    const BLOCK_SIZE: usize = 1;
    type VecDot = bf16;

    fn from_float(src: &[f32], dst: &mut [Self]) {
        assert_eq!(src.len(), dst.len());
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f32_to_bf16(s);
        }
    }

    fn to_float(src: &[Self], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        for (d, s) in dst.iter_mut().zip(src) {
            *d = bf16_to_f32(*s);
        }
    }

    fn vec_dot(isa: Isa, x: &[Self], y: &[Self]) -> f32 {
        simd::vec_dot_bf16(isa, x, y)
    }
}

// Conversions match gguf-py (numpy), which writes the F16/BF16 tensors of
// GGUF files, for every bit pattern. `half` already rounds to nearest even
// (subnormals included) and quiets NaNs as ggml's BF16 code does; it differs
// only in how NaN payloads travel, handled here.

/// f32 -> f16, as numpy's `astype(float16)`: NaN payloads keep their top ten
/// bits unquieted (`half` would set the quiet bit; ggml's C code instead
/// writes 0x7E00), with the lowest bit set if that would read as infinity.
pub fn f32_to_f16(x: f32) -> f16 {
    if x.is_nan() {
        let b = x.to_bits();
        let sign = (b >> 16) as u16 & 0x8000;
        let payload = ((b & 0x007F_FFFF) >> 13) as u16;
        return f16::from_bits(sign | 0x7C00 | payload.max(1));
    }
    f16::from_f32(x)
}

/// f16 -> f32, exact; NaN payloads are moved up unchanged, as numpy does.
pub fn f16_to_f32(h: f16) -> f32 {
    if h.is_nan() {
        let b = h.to_bits() as u32;
        return f32::from_bits((b & 0x8000) << 16 | 0x7F80_0000 | (b & 0x03FF) << 13);
    }
    h.to_f32()
}

/// f32 -> bf16, as ggml's `ggml_compute_fp32_to_bf16` and gguf-py: round to
/// nearest even, NaNs truncated and forced quiet. `half` does exactly this.
pub fn f32_to_bf16(x: f32) -> bf16 {
    bf16::from_f32(x)
}

/// bf16 -> f32 is a plain shift in ggml and gguf-py; `half` would quiet
/// signalling NaNs.
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}
