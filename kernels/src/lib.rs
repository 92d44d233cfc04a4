//! qllama-kernels: ggml's block quantization formats and the quantized
//! matmul kernels. Knows nothing about models, files or tokens.
//!
//! - [`GgmlDType`] is the type table: one entry per ggml type id, everything
//!   else (sizes, quantize, dequantize, dot) is looked up through it.
//! - [`formats`] declares each block format once, via the [`GgmlType`] trait.
//! - [`simd`] holds one file per instruction set; the best one is picked once
//!   at start-up by runtime feature detection ([`simd::isa`]).
//! - [`matmul`] is the only interface the runtime needs.
//! - [`quantize`] quantizes whole tensors across threads (for the converter).
//! - [`team`] keeps the threads polling through a forward pass, so that the
//!   products' tasks start without waking anyone.

pub mod dtype;
pub mod formats;
pub mod limits;
pub mod matmul;
pub mod quantize;
pub mod simd;
pub mod team;

pub use dtype::{GgmlDType, TypeTraits};
pub use formats::GgmlType;
pub use matmul::{matmul, matmul_many, Layout, MatmulScratch, QMatrix};
pub use quantize::quantize_rows_par;
