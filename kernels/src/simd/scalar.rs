//! Scalar reference kernels: the definition every SIMD path is tested
//! against. Plain loops, accumulating in the same order ggml's reference does.

use half::{bf16, f16};

pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    // f64 accumulation: the reference should be more exact than any path.
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32
}

pub fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| a.to_f32() as f64 * b.to_f32() as f64).sum::<f64>() as f32
}

pub fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| a.to_f32() as f64 * b.to_f32() as f64).sum::<f64>() as f32
}

use crate::formats::*;

// Filled in with the formats (bit-exact ports of ggml's reference dots).
pub fn vec_dot_q4_0_q8_0(_x: &[BlockQ4_0], _y: &[BlockQ8_0]) -> f32 { todo!() }
pub fn vec_dot_q4_1_q8_1(_x: &[BlockQ4_1], _y: &[BlockQ8_1]) -> f32 { todo!() }
pub fn vec_dot_q5_0_q8_0(_x: &[BlockQ5_0], _y: &[BlockQ8_0]) -> f32 { todo!() }
pub fn vec_dot_q5_1_q8_1(_x: &[BlockQ5_1], _y: &[BlockQ8_1]) -> f32 { todo!() }
pub fn vec_dot_q8_0_q8_0(_x: &[BlockQ8_0], _y: &[BlockQ8_0]) -> f32 { todo!() }
pub fn vec_dot_q8_1_q8_1(_x: &[BlockQ8_1], _y: &[BlockQ8_1]) -> f32 { todo!() }
