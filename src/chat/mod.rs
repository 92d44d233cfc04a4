//! Chat: prompt templates and a session that keeps the KV cache across turns.

mod template;

pub use template::{ChatTemplate, Message, Role, LLAMA2_TEMPLATE};
