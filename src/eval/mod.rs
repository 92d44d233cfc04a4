//! Accuracy measurement: perplexity by llama.cpp's method, and KL divergence
//! against a full-precision model's saved logits.

pub mod bench;
pub mod kl;
pub mod perplexity;
pub mod report;

pub use perplexity::{perplexity, PerplexityOptions, PerplexityResult};
