//! The Llama 2 decoder: hyperparameters, weights, KV cache, forward pass.
