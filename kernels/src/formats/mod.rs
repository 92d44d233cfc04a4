//! Block formats, each declared once through [`GgmlType`].
//!
//! `legacy.rs` holds ggml's original 32-weight formats (Q4_0 … Q8_1),
//! `float.rs` the plain float types; the K-quants go in `k_quants.rs`.
//! Everything generic over a type (byte casts, whole-row helpers, the type
//! table) lives here and in `dtype.rs`, never in per-type copies.

mod blocks;
mod float;
pub mod interleaved;
mod k_quants;
mod legacy;

pub use blocks::*;
pub use k_quants::*;
pub(crate) use legacy::quantize_q8;

use crate::dtype::GgmlDType;
use crate::simd::Isa;

/// One ggml type: its block layout, its conversions and its dot product.
///
/// Implementors are `#[repr(C)]` plain-old-data blocks with ggml's exact byte
/// layout, no padding, and every bit pattern valid, so that a byte slice from
/// a memory-mapped file can be viewed as a slice of blocks without copying.
pub trait GgmlType: Copy + Send + Sync + 'static {
    const DTYPE: GgmlDType;
    /// Weights per block.
    const BLOCK_SIZE: usize;
    /// The activation block type rows of this type are dotted against
    /// (ggml's `vec_dot_type`).
    type VecDot: GgmlType;

    /// Quantize `src` (exactly `dst.len() * BLOCK_SIZE` values), bit-exact
    /// with ggml's reference quantizer.
    fn from_float(src: &[f32], dst: &mut [Self]);
    /// Dequantize `src` into `dst` (exactly `src.len() * BLOCK_SIZE` values).
    fn to_float(src: &[Self], dst: &mut [f32]);
    /// Dot product of a row of weights with a row of activations (same number
    /// of blocks' worth of values) on the given instruction set. Every ISA
    /// path must agree with `Isa::Scalar` to rounding.
    fn vec_dot(isa: Isa, x: &[Self], y: &[Self::VecDot]) -> f32;
}

/// View bytes as blocks of `T`.
///
/// Panics when `bytes` is not a whole number of blocks or is misaligned for
/// `T`; callers validate sizes and alignment when the tensor is opened.
pub fn cast_blocks<T: GgmlType>(bytes: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert!(bytes.len().is_multiple_of(size), "{} bytes is not a whole number of {} blocks", bytes.len(), T::DTYPE);
    assert!(bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0, "misaligned {} data", T::DTYPE);
    // SAFETY: `T` is a padding-free POD block for which every bit pattern is
    // valid (GgmlType contract); length and alignment were checked above, and
    // the returned slice borrows `bytes`, so it cannot outlive the memory.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) }
}

/// Mutable version of [`cast_blocks`].
pub fn cast_blocks_mut<T: GgmlType>(bytes: &mut [u8]) -> &mut [T] {
    let size = std::mem::size_of::<T>();
    assert!(bytes.len().is_multiple_of(size), "{} bytes is not a whole number of {} blocks", bytes.len(), T::DTYPE);
    assert!(bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0, "misaligned {} data", T::DTYPE);
    // SAFETY: as in `cast_blocks`; the unique borrow of `bytes` makes the
    // unique borrow of the blocks sound.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), bytes.len() / size) }
}

/// View blocks as bytes (for writing them out).
pub fn as_bytes<T: GgmlType>(blocks: &[T]) -> &[u8] {
    // SAFETY: `T` is padding-free POD, so every byte is initialized; the
    // slice covers exactly the blocks' memory and borrows them.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

pub(crate) fn to_float_bytes<T: GgmlType>(src: &[u8], dst: &mut [f32]) {
    T::to_float(cast_blocks::<T>(src), dst)
}

pub(crate) fn from_float_bytes<T: GgmlType>(src: &[f32], dst: &mut [u8]) {
    T::from_float(src, cast_blocks_mut::<T>(dst))
}

pub(crate) fn vec_dot_bytes<T: GgmlType>(isa: Isa, x: &[u8], y: &[u8]) -> f32 {
    T::vec_dot(isa, cast_blocks::<T>(x), cast_blocks::<T::VecDot>(y))
}
