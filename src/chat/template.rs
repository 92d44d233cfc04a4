//! Chat prompt rendering with the model's own Jinja template
//! (`tokenizer.chat_template`), as Hugging Face and llama.cpp render it.

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

/// Llama 2 chat's `[INST] <<SYS>>` format, used when a file has no template.
/// This is Meta's template as shipped in Llama 2 chat's tokenizer_config.json.
pub const LLAMA2_TEMPLATE: &str = concat!(
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}",
    "{% set system_message = messages[0]['content'] %}",
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}",
    "{% for message in loop_messages %}",
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}",
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}",
    "{% if loop.index0 == 0 and system_message != false %}",
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}",
    "{% else %}{% set content = message['content'] %}{% endif %}",
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}",
    "{% endfor %}"
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// A compiled chat template with the model's special-token texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether this is the built-in Llama 2 fallback.
    pub is_fallback: bool,
}

impl ChatTemplate {
    /// Compile `source` (a file's `tokenizer.chat_template`), or the Llama 2
    /// format when `None`.
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        let is_fallback = source.is_none();
        env.add_template_owned("chat", source.unwrap_or(LLAMA2_TEMPLATE).to_string())
            .map_err(|e| anyhow::anyhow!("chat template does not compile: {e}"))?;
        Ok(Self { env, bos: bos.to_string(), eos: eos.to_string(), is_fallback })
    }

    /// Render a conversation; `add_generation_prompt` asks for the text that
    /// opens the assistant's answer (templates that have one use it).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> anyhow::Result<String> {
        let tmpl = self.env.get_template("chat")?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        })
        .map_err(|e| anyhow::anyhow!("chat template: {e}"))
    }

    /// The text a new message adds to a conversation already rendered: the
    /// rendering of `history + [new]` minus that of `history`, as llama.cpp's
    /// chat does, so each turn tokenizes and evaluates only its own text.
    pub fn render_delta(&self, history: &[Message], new: &Message) -> anyhow::Result<String> {
        let before = if history.is_empty() { String::new() } else { self.render(history, false)? };
        let mut all = history.to_vec();
        all.push(new.clone());
        let after = self.render(&all, new.role == Role::User)?;
        match after.strip_prefix(&before) {
            Some(delta) => Ok(delta.to_string()),
            // A template that rewrites earlier turns: fall back to the whole.
            None => Ok(after),
        }
    }
}
