//! The type table: ggml's numeric type ids mapped to their traits.
//!
//! Like ggml's `type_traits[]`, each type is described once, its traits
//! derived generically from its [`GgmlType`] declaration.

use crate::formats::{self, GgmlType};
use crate::simd::Isa;

/// A ggml tensor type, with ggml's numeric ids (as stored in GGUF files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlDType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    BF16 = 30,
}

/// Row dot product on raw bytes: `dot(weights_row, activations_row)`.
pub type VecDotFn = fn(Isa, &[u8], &[u8]) -> f32;
pub type ToFloatFn = fn(&[u8], &mut [f32]);
pub type FromFloatFn = fn(&[f32], &mut [u8]);

/// What the runtime needs to know about a type, as in ggml's type traits.
#[derive(Clone, Copy)]
pub struct TypeTraits {
    pub name: &'static str,
    /// Weights per block.
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    pub is_quantized: bool,
    /// The activation type rows of this type are dotted against.
    pub vec_dot_type: GgmlDType,
    pub to_float: Option<ToFloatFn>,
    pub from_float: Option<FromFloatFn>,
    pub vec_dot: Option<VecDotFn>,
}

/// Traits of a declared type, derived from its [`GgmlType`] impl.
const fn declared<T: GgmlType>(name: &'static str, is_quantized: bool) -> TypeTraits {
    TypeTraits {
        name,
        block_size: T::BLOCK_SIZE,
        type_size: std::mem::size_of::<T>(),
        is_quantized,
        vec_dot_type: <T::VecDot as GgmlType>::DTYPE,
        to_float: Some(formats::to_float_bytes::<T>),
        from_float: Some(formats::from_float_bytes::<T>),
        vec_dot: Some(formats::vec_dot_bytes::<T>),
    }
}

impl GgmlDType {
    /// Every type in the table, in id order.
    pub const ALL: [GgmlDType; 15] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
        Self::BF16,
    ];

    /// The table itself: one line per type.
    pub const fn traits(self) -> TypeTraits {
        use formats::*;
        match self {
            Self::F32 => declared::<f32>("f32", false),
            Self::F16 => declared::<half::f16>("f16", false),
            Self::BF16 => declared::<half::bf16>("bf16", false),
            Self::Q4_0 => declared::<BlockQ4_0>("q4_0", true),
            Self::Q4_1 => declared::<BlockQ4_1>("q4_1", true),
            Self::Q5_0 => declared::<BlockQ5_0>("q5_0", true),
            Self::Q5_1 => declared::<BlockQ5_1>("q5_1", true),
            Self::Q8_0 => declared::<BlockQ8_0>("q8_0", true),
            Self::Q8_1 => declared::<BlockQ8_1>("q8_1", true),
            Self::Q2K => declared::<BlockQ2K>("q2_K", true),
            Self::Q3K => declared::<BlockQ3K>("q3_K", true),
            Self::Q4K => declared::<BlockQ4K>("q4_K", true),
            Self::Q5K => declared::<BlockQ5K>("q5_K", true),
            Self::Q6K => declared::<BlockQ6K>("q6_K", true),
            // Activation-only, as in ggml: no matmul takes Q8_K weights.
            Self::Q8K => TypeTraits { vec_dot: None, ..declared::<BlockQ8K>("q8_K", true) },
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name as llama.cpp prints it (`q4_0`, `q4_K`, `f16`).
    pub fn name(self) -> &'static str {
        self.traits().name
    }

    /// Case-insensitive lookup by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    pub fn block_size(self) -> usize {
        self.traits().block_size
    }

    pub fn type_size(self) -> usize {
        self.traits().type_size
    }

    pub fn is_quantized(self) -> bool {
        self.traits().is_quantized
    }

    /// Bits per weight of this type.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.type_size() as f64 / self.block_size() as f64
    }

    /// Bytes of a row of `n` weights; `None` when `n` is not a whole number of
    /// blocks or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let t = self.traits();
        if !n.is_multiple_of(t.block_size) {
            return None;
        }
        (n / t.block_size).checked_mul(t.type_size)
    }

    /// Whether rows of this type can be dequantized.
    pub fn can_dequantize(self) -> bool {
        self.traits().to_float.is_some()
    }

    /// Whether f32 rows can be quantized to this type.
    pub fn can_quantize(self) -> bool {
        self.traits().from_float.is_some()
    }

    /// Whether rows of this type can be used as matmul weights.
    pub fn can_dot(self) -> bool {
        self.traits().vec_dot.is_some()
    }

    pub fn vec_dot_type(self) -> GgmlDType {
        self.traits().vec_dot_type
    }

    /// Quantize `src` (a whole number of blocks) into `dst`.
    ///
    /// Panics when the type cannot be quantized or the lengths do not match:
    /// callers check [`Self::can_quantize`] and size buffers with
    /// [`Self::row_bytes`].
    pub fn quantize_row(self, src: &[f32], dst: &mut [u8]) {
        let f = self.traits().from_float.unwrap_or_else(|| panic!("cannot quantize to {}", self.name()));
        f(src, dst)
    }

    /// Dequantize `src` (a whole number of blocks) into `dst`.
    pub fn dequantize_row(self, src: &[u8], dst: &mut [f32]) {
        let f = self.traits().to_float.unwrap_or_else(|| panic!("cannot dequantize {}", self.name()));
        f(src, dst)
    }

    /// Dot product of a weight row of this type with an activation row of
    /// [`Self::vec_dot_type`], using the given instruction set.
    pub fn vec_dot(self, isa: Isa, w: &[u8], x: &[u8]) -> f32 {
        let f = self.traits().vec_dot.unwrap_or_else(|| panic!("no dot product for {}", self.name()));
        f(isa, w, x)
    }
}

impl std::fmt::Display for GgmlDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
