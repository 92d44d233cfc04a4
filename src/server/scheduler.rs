//! The scheduler: one thread owns the model, a KV cache with one sequence
//! slot per parallel stream, and the scratch buffers. Each step builds one
//! batch (the next token of every decoding slot plus a chunk of each prompt
//! still being evaluated), runs one forward pass for all of it, and samples
//! each slot's next token (continuous batching).

use super::api::{FinishReason, Usage};
use super::stop::StopMatcher;
use crate::model::{BatchToken, KvCache, LogitRows, Model, Scratch};
use crate::sampling::{Sampler, SamplerParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{self, error::TryRecvError};

/// What a request asks the scheduler for; the prompt is already tokenized
/// and known to fit a slot.
pub struct Job {
    pub prompt: Vec<u32>,
    pub sampler: SamplerParams,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Chat answers drop the leading space of their first piece; completions
    /// continue the prompt's text as it is.
    pub chat: bool,
    /// Where the answer goes; when the receiver is dropped (the client went
    /// away) the job is cancelled and its slot freed.
    pub events: mpsc::UnboundedSender<Event>,
}

#[derive(Debug)]
pub enum Event {
    Text(String),
    Done { finish: FinishReason, usage: Usage },
    Error(String),
}

/// Counters the HTTP side reads for /health.
#[derive(Default)]
pub struct Stats {
    pub slots_busy: AtomicUsize,
    pub requests_cancelled: AtomicUsize,
    pub requests_done: AtomicUsize,
}

/// Where a running job is.
enum Phase {
    /// `prompt[..next]` is in the cache.
    Prefill { next: usize },
    /// `token` was sampled and is evaluated in the next step.
    Decode { token: u32 },
}

struct Running {
    job: Job,
    phase: Phase,
    reused: usize,
    sampler: Sampler,
    /// How often each generated token occurred (presence/frequency penalties).
    counts: HashMap<u32, u32>,
    generated: usize,
    dec: StreamDecoder,
    stop: StopMatcher,
}

struct Slot {
    /// Exactly the tokens whose keys and values this slot's cache holds.
    cached: Vec<u32>,
    running: Option<Running>,
    /// Step at which the slot was last given a job (free slots are reused
    /// least recently used first, keeping recent conversations cached).
    last_used: u64,
}

pub struct Scheduler {
    model: Model,
    tok: Arc<Tokenizer>,
    kv: KvCache,
    scratch: Scratch,
    slots: Vec<Slot>,
    /// Most prompt tokens evaluated in one step (over all slots).
    prompt_chunk: usize,
    /// Threads for decode-only steps and for steps with prompt tokens.
    pool_gen: rayon::ThreadPool,
    pool_batch: rayon::ThreadPool,
    stats: Arc<Stats>,
    step: u64,
    /// End-of-generation tokens (masked for `ignore_eos`).
    eog: Vec<u32>,
}

pub struct SchedulerConfig {
    pub n_parallel: usize,
    /// Context positions per slot.
    pub n_ctx_slot: usize,
    pub prompt_chunk: usize,
    pub kv_type: crate::model::KvType,
    pub threads: usize,
    pub threads_batch: usize,
}

/// Longest common prefix of two token lists.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Scheduler {
    pub fn new(model: Model, tok: Arc<Tokenizer>, cfg: &SchedulerConfig, stats: Arc<Stats>) -> anyhow::Result<Self> {
        let kv = model.new_kv_cache(cfg.n_ctx_slot, cfg.n_parallel, cfg.kv_type)?;
        let scratch = model.new_scratch(cfg.n_parallel + cfg.prompt_chunk, cfg.n_ctx_slot);
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build();
        Ok(Self {
            model,
            kv,
            scratch,
            slots: (0..cfg.n_parallel).map(|_| Slot { cached: Vec::new(), running: None, last_used: 0 }).collect(),
            prompt_chunk: cfg.prompt_chunk.max(1),
            pool_gen: pool(cfg.threads)?,
            pool_batch: pool(cfg.threads_batch)?,
            stats,
            step: 0,
            eog: (0..tok.vocab_size() as u32).filter(|&id| tok.is_eog(id)).collect(),
            tok,
        })
    }

    /// Serve jobs until every sender is gone.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            self.drop_cancelled();
            // Admit waiting jobs while slots are free; block when idle.
            while self.slots.iter().any(|s| s.running.is_none()) {
                let busy = self.slots.iter().any(|s| s.running.is_some());
                let job = if busy {
                    match jobs.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => break,
                    }
                } else {
                    match jobs.blocking_recv() {
                        Some(j) => j,
                        None => return,
                    }
                };
                self.admit(job);
            }
            if self.slots.iter().any(|s| s.running.is_some()) {
                self.step();
            } else if jobs.is_closed() && jobs.is_empty() {
                return;
            }
        }
    }

    fn set_busy(&self) {
        let n = self.slots.iter().filter(|s| s.running.is_some()).count();
        self.stats.slots_busy.store(n, Ordering::Relaxed);
    }

    /// Free the slots whose clients went away.
    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot.running.as_ref().is_some_and(|r| r.job.events.is_closed()) {
                slot.running = None;
                self.stats.requests_cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.set_busy();
    }

    /// Give `job` the free slot whose cache shares the longest prefix with
    /// its prompt (the least recently used one when none shares any), and
    /// keep that prefix.
    fn admit(&mut self, job: Job) {
        if job.events.is_closed() {
            self.stats.requests_cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (seq, lcp) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running.is_none())
            .map(|(i, s)| (i, common_prefix(&s.cached, &job.prompt), s.last_used))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(i, l, _)| (i, l))
            .expect("admit is called with a free slot");
        // The prompt's last token is always evaluated so that its logits exist.
        let reused = lcp.min(job.prompt.len() - 1);
        self.kv.truncate(seq, reused);
        let mut sampler = match Sampler::new(job.sampler.clone()) {
            Ok(s) => s,
            Err(e) => {
                let _ = job.events.send(Event::Error(format!("{e:#}")));
                return;
            }
        };
        job.prompt.iter().for_each(|&t| sampler.accept(t));
        self.step += 1;
        let slot = &mut self.slots[seq];
        slot.cached.truncate(reused);
        slot.last_used = self.step;
        let dec = if job.chat { StreamDecoder::new() } else { StreamDecoder::continuing() };
        let stop = StopMatcher::new(job.stop.clone());
        slot.running = Some(Running {
            job,
            phase: Phase::Prefill { next: reused },
            reused,
            sampler,
            counts: HashMap::new(),
            generated: 0,
            dec,
            stop,
        });
        self.set_busy();
    }

    /// One batch, one forward pass, one sampled token per slot with logits.
    fn step(&mut self) {
        let mut batch = Vec::new();
        // (slot, batch row) of each row that gets logits.
        let mut wants: Vec<(usize, usize)> = Vec::new();
        let mut chunked: Vec<(usize, usize)> = Vec::new(); // (slot, tokens added)
        for (seq, slot) in self.slots.iter().enumerate() {
            if let Some(Running { phase: Phase::Decode { token }, .. }) = slot.running {
                wants.push((seq, batch.len()));
                batch.push(BatchToken { token, pos: slot.cached.len(), seq });
            }
        }
        let n_decode = batch.len();
        let mut budget = self.prompt_chunk;
        for (seq, slot) in self.slots.iter().enumerate() {
            let Some(r) = &slot.running else { continue };
            let Phase::Prefill { next } = r.phase else { continue };
            if budget == 0 {
                break;
            }
            let end = (next + budget).min(r.job.prompt.len());
            let start_pos = slot.cached.len();
            for (i, &token) in r.job.prompt[next..end].iter().enumerate() {
                batch.push(BatchToken { token, pos: start_pos + i, seq });
            }
            if end == r.job.prompt.len() {
                wants.push((seq, batch.len() - 1));
            }
            chunked.push((seq, end - next));
            budget -= end - next;
        }
        let rows: Vec<usize> = wants.iter().map(|w| w.1).collect();
        let (model, kv, scratch) = (&self.model, &mut self.kv, &mut self.scratch);
        let pool = if batch.len() > n_decode { &self.pool_batch } else { &self.pool_gen };
        let result = pool.install(|| model.forward(&batch, kv, scratch, LogitRows::Rows(&rows)));
        if let Err(e) = result {
            // Should not happen (batches are checked above); fail the jobs
            // in this batch rather than the server.
            for &seq in batch.iter().map(|b| &b.seq).collect::<std::collections::BTreeSet<_>>() {
                let slot = &mut self.slots[seq];
                if let Some(r) = slot.running.take() {
                    let _ = r.job.events.send(Event::Error(format!("evaluation failed: {e}")));
                }
                slot.cached.clear();
                self.kv.clear(seq);
            }
            self.set_busy();
            return;
        }
        // The cache now holds the batch's tokens.
        for t in &batch {
            self.slots[t.seq].cached.push(t.token);
        }
        for (seq, n) in chunked {
            if let Some(Running { phase: Phase::Prefill { next }, .. }) = &mut self.slots[seq].running {
                *next += n;
            }
        }
        for (i, &(seq, _)) in wants.iter().enumerate() {
            self.sample_slot(seq, i);
        }
        self.set_busy();
    }

    /// Sample slot `seq`'s next token from logit row `row`, send its text,
    /// and finish the job when it is done.
    fn sample_slot(&mut self, seq: usize, row: usize) {
        let n_ctx = self.kv.n_ctx();
        let tok = &*self.tok;
        let slot = &mut self.slots[seq];
        let Some(r) = slot.running.as_mut() else { return };
        let logits = self.scratch.logits_mut(row);
        if r.job.presence_penalty != 0.0 || r.job.frequency_penalty != 0.0 {
            for (&t, &c) in &r.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= c as f32 * r.job.frequency_penalty + r.job.presence_penalty;
                }
            }
        }
        if r.job.ignore_eos {
            for &id in &self.eog {
                logits[id as usize] = f32::NEG_INFINITY;
            }
        }
        let next = r.sampler.sample(logits);
        let mut finish = None;
        let mut text = String::new();
        if tok.is_eog(next) {
            finish = Some(FinishReason::Stop);
        } else {
            r.sampler.accept(next);
            *r.counts.entry(next).or_default() += 1;
            r.generated += 1;
            let piece = r.dec.push(tok, next);
            let (out, hit) = r.stop.push(&piece);
            text = out;
            if hit {
                finish = Some(FinishReason::Stop);
            } else if r.generated >= r.job.max_tokens || slot.cached.len() >= n_ctx {
                // Out of tokens, or no room left to evaluate this one.
                finish = Some(FinishReason::Length);
            } else {
                r.phase = Phase::Decode { token: next };
            }
        }
        if finish.is_some() && !r.stop.stopped() {
            let tail = r.dec.flush();
            let (out, _) = r.stop.push(&tail);
            text.push_str(&out);
            text.push_str(&r.stop.finish());
        }
        let mut ok = text.is_empty() || r.job.events.send(Event::Text(text)).is_ok();
        if let Some(finish) = finish {
            let prompt_tokens = r.job.prompt.len();
            let usage = Usage {
                prompt_tokens,
                completion_tokens: r.generated,
                total_tokens: prompt_tokens + r.generated,
                prompt_tokens_details: super::api::PromptTokensDetails { cached_tokens: r.reused },
            };
            ok &= r.job.events.send(Event::Done { finish, usage }).is_ok();
            slot.running = None;
            self.stats.requests_done.fetch_add(1, Ordering::Relaxed);
        }
        if !ok && slot.running.is_some() {
            // The client went away: free the slot now.
            slot.running = None;
            self.stats.requests_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_counts_matching_head() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }
}
