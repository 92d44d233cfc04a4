//! A chat session: the conversation, the tokens in the KV cache, and the
//! generation loop. Each turn tokenizes and evaluates only its own text; the
//! cache is kept across turns, and when the context fills the oldest turns
//! are dropped (the system prompt kept) and only what changed is re-evaluated.

use super::template::{ChatTemplate, Message, Role};
use crate::model::{BatchToken, KvCache, KvType, LogitRows, Model, Scratch, MAX_BATCH};
use crate::sampling::{Sampler, SamplerParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use anyhow::{bail, Context as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What one turn cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TurnStats {
    /// Prompt tokens evaluated this turn.
    pub prompt_evaluated: usize,
    /// Prompt tokens already in the cache and reused.
    pub prompt_reused: usize,
    pub prompt_secs: f64,
    pub generated: usize,
    pub gen_secs: f64,
    /// Why generation stopped.
    pub stop: StopReason,
    /// Earlier turns dropped to make room.
    pub turns_dropped: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopReason {
    #[default]
    EndOfText,
    MaxTokens,
    ContextFull,
    Interrupted,
}

pub struct ChatSession<'m> {
    model: &'m Model,
    tok: &'m Tokenizer,
    template: ChatTemplate,
    kv: KvCache,
    scratch: Scratch,
    sampler: Sampler,
    system: Option<String>,
    /// The conversation after the system prompt.
    messages: Vec<Message>,
    /// Exactly the tokens whose keys and values are in the cache.
    cached: Vec<u32>,
    /// Most tokens an answer may take.
    pub max_answer: usize,
}

impl<'m> ChatSession<'m> {
    pub fn new(
        model: &'m Model,
        tok: &'m Tokenizer,
        n_ctx: usize,
        kv_type: KvType,
        params: SamplerParams,
        system: Option<String>,
    ) -> anyhow::Result<Self> {
        let source = model.file.get_str("tokenizer.chat_template")?;
        let template = ChatTemplate::new(source, tok.piece(tok.bos_id()), tok.piece(tok.eos_id()))
            .with_context(|| format!("{}", model.file.path.display()))?;
        Ok(Self {
            model,
            tok,
            template,
            kv: model.new_kv_cache(n_ctx, 1, kv_type)?,
            scratch: model.new_scratch(MAX_BATCH.min(n_ctx), n_ctx),
            sampler: Sampler::new(params)?,
            system,
            messages: Vec::new(),
            cached: Vec::new(),
            max_answer: n_ctx / 2,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// The tokens now in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Forget the conversation (the system prompt stays).
    pub fn reset(&mut self) {
        self.messages.clear();
        self.cached.clear();
        self.kv.clear(0);
        self.sampler.reset();
    }

    /// Tokenize rendered template text: control-token texts (`<s>`) become
    /// their ids, as llama.cpp's `parse_special` does.
    pub fn encode_rendered(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self.tok.encode_special(text, false)?)
    }

    fn all_messages(&self, extra: Option<&Message>) -> Vec<Message> {
        let mut all: Vec<Message> = self.system.iter().map(|s| Message::new(Role::System, s.clone())).collect();
        all.extend(self.messages.iter().cloned());
        all.extend(extra.cloned());
        all
    }

    /// The full prompt for the conversation plus `user`, from scratch.
    fn full_prompt(&self, user: &Message) -> anyhow::Result<Vec<u32>> {
        let text = self.template.render(&self.all_messages(Some(user)), true)?;
        let mut ids = self.encode_rendered(&text)?;
        if self.tok.add_bos() && ids.first() != Some(&self.tok.bos_id()) {
            ids.insert(0, self.tok.bos_id());
        }
        Ok(ids)
    }

    /// Work out the tokens the cache must hold after `user`'s message: the
    /// cached tokens plus this turn's text when it fits, else a re-rendered
    /// conversation without its oldest turns. Returns (tokens, turns dropped).
    fn plan_turn(&mut self, user: &Message) -> anyhow::Result<(Vec<u32>, usize)> {
        let n_ctx = self.n_ctx();
        let room = |n: usize| n + self.max_answer.min(n_ctx / 2) <= n_ctx;
        if !self.cached.is_empty() {
            let delta = self.template.render_delta(&self.all_messages(None), user)?;
            let mut next = self.cached.clone();
            // An answer cut short never got its end-of-turn token.
            if self.cached.last().is_some_and(|&t| !self.tok.is_eog(t)) {
                next.push(self.tok.eos_id());
            }
            next.extend(self.encode_rendered(&delta)?);
            if room(next.len()) {
                return Ok((next, 0));
            }
        }
        let mut dropped = 0;
        loop {
            let ids = self.full_prompt(user)?;
            if room(ids.len()) {
                return Ok((ids, dropped));
            }
            if self.messages.len() < 2 {
                if ids.len() < n_ctx {
                    // No history left to drop: answer in what room remains.
                    return Ok((ids, dropped));
                }
                bail!("the message is {} tokens with the system prompt; the context holds {n_ctx}", ids.len());
            }
            // Drop the oldest user/assistant exchange.
            self.messages.drain(..2);
            dropped += 1;
        }
    }

    /// Evaluate `tokens` so that the cache holds exactly them, reusing the
    /// longest common prefix already cached. Leaves the last token's logits
    /// in the scratch. Returns (evaluated, reused).
    fn evaluate(&mut self, tokens: &[u32]) -> anyhow::Result<(usize, usize)> {
        let mut reused = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // The last token is always evaluated so that its logits exist.
        if reused == tokens.len() {
            reused -= 1;
        }
        self.kv.truncate(0, reused);
        self.cached.truncate(reused);
        let mut batch = Vec::with_capacity(self.scratch.max_batch());
        for chunk in tokens[reused..].chunks(self.scratch.max_batch()) {
            batch.clear();
            let start = self.cached.len();
            batch.extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken { token, pos: start + i, seq: 0 }));
            let last = start + chunk.len() == tokens.len();
            let want = if last { LogitRows::Last } else { LogitRows::None };
            self.model.forward(&batch, &mut self.kv, &mut self.scratch, want)?;
            self.cached.extend_from_slice(chunk);
        }
        Ok((tokens.len() - reused, reused))
    }

    /// Answer `user`, streaming the answer's text to `on_text`. `stop`
    /// (set by Ctrl-C) ends the answer early; the turn is still kept.
    pub fn respond(
        &mut self,
        user: &str,
        stop: &AtomicBool,
        mut on_text: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<(String, TurnStats)> {
        let user = Message::new(Role::User, user);
        let (prompt, turns_dropped) = self.plan_turn(&user)?;
        let t0 = Instant::now();
        let (prompt_evaluated, prompt_reused) = self.evaluate(&prompt)?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        self.messages.push(user);

        let t1 = Instant::now();
        let mut dec = StreamDecoder::new();
        let mut answer = String::new();
        let mut generated = 0;
        let stop_reason = loop {
            if stop.load(Ordering::Relaxed) {
                break StopReason::Interrupted;
            }
            let next = self.sampler.sample(self.scratch.logits_mut(0));
            self.sampler.accept(next);
            if self.tok.is_eog(next) {
                // Keep the end-of-turn token: the next turn follows it.
                self.evaluate_one(next)?;
                break StopReason::EndOfText;
            }
            generated += 1;
            let piece = dec.push(self.tok, next);
            answer.push_str(&piece);
            on_text(&piece)?;
            if self.cached.len() >= self.n_ctx() {
                break StopReason::ContextFull;
            }
            // Evaluated even when the answer ends here, so that the cache
            // holds the whole answer for the next turn.
            self.evaluate_one(next)?;
            if generated >= self.max_answer {
                break StopReason::MaxTokens;
            }
        };
        let tail = dec.flush();
        answer.push_str(&tail);
        on_text(&tail)?;
        self.messages.push(Message::new(Role::Assistant, answer.trim().to_string()));
        let stats = TurnStats {
            prompt_evaluated,
            prompt_reused,
            prompt_secs,
            generated,
            gen_secs: t1.elapsed().as_secs_f64(),
            stop: stop_reason,
            turns_dropped,
        };
        Ok((answer, stats))
    }

    fn evaluate_one(&mut self, token: u32) -> anyhow::Result<()> {
        if self.cached.len() >= self.n_ctx() {
            return Ok(());
        }
        let pos = self.cached.len();
        self.model.forward(&[BatchToken { token, pos, seq: 0 }], &mut self.kv, &mut self.scratch, LogitRows::Last)?;
        self.cached.push(token);
        Ok(())
    }
}
