//! qllama: a ggml-style quantized CPU runtime for Llama 2.
//!
//! Data flows one way: files ([`gguf`], [`convert`]) → tensors ([`model`]) →
//! kernels (`qllama_kernels`) → tokens ([`tokenizer`], [`sampling`], [`chat`]).

pub mod chat;
pub mod cli;
pub mod convert;
pub mod eval;
pub mod gguf;
pub mod model;
pub mod sampling;
pub mod server;
pub mod tokenizer;

pub use qllama_kernels as kernels;
