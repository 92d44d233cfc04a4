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
            *d = f16::from_f32(s);
        }
    }

    fn to_float(src: &[Self], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
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
            *d = bf16::from_f32(s);
        }
    }

    fn to_float(src: &[Self], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }

    fn vec_dot(isa: Isa, x: &[Self], y: &[Self]) -> f32 {
        simd::vec_dot_bf16(isa, x, y)
    }
}
