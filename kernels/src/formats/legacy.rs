//! ggml's original 32-weight block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
//! the activation format Q8_1. Quantizers are bit-exact ports of ggml's
//! `quantize_row_*_ref`.

use super::*;
use crate::simd::{scalar, Isa};

pub const QK: usize = 32;

macro_rules! todo_type {
    ($t:ty, $dt:ident, $vd:ty) => {
        impl GgmlType for $t {
            const DTYPE: GgmlDType = GgmlDType::$dt;
            const BLOCK_SIZE: usize = QK;
            type VecDot = $vd;
            fn from_float(_src: &[f32], _dst: &mut [Self]) {
                todo!()
            }
            fn to_float(_src: &[Self], _dst: &mut [f32]) {
                todo!()
            }
            fn vec_dot(_isa: Isa, _x: &[Self], _y: &[Self::VecDot]) -> f32 {
                let _ = scalar::vec_dot_f32;
                todo!()
            }
        }
    };
}
todo_type!(BlockQ4_0, Q4_0, BlockQ8_0);
todo_type!(BlockQ4_1, Q4_1, BlockQ8_1);
todo_type!(BlockQ5_0, Q5_0, BlockQ8_0);
todo_type!(BlockQ5_1, Q5_1, BlockQ8_1);
todo_type!(BlockQ8_0, Q8_0, BlockQ8_0);
todo_type!(BlockQ8_1, Q8_1, BlockQ8_1);
