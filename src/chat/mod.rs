//! Chat: prompt templates and a session that keeps the KV cache across turns.

mod session;
mod template;

pub use session::{ChatSession, StopReason, TurnStats};
pub use template::{ChatTemplate, Message, Role, LLAMA2_TEMPLATE};
