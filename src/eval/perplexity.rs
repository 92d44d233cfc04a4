//! Perplexity as llama.cpp's `llama-perplexity` computes it: the text is
//! tokenized once (with BOS), split into chunks of `n_ctx` tokens, each chunk
//! evaluated from a fresh context with BOS as its first token, and only the
//! second half of each chunk scored, so every scored token has at least
//! `n_ctx / 2` tokens of context.

use super::kl::{hash_tokens, KlStats, KlSummary, LogitsFile, LogitsKey, LogitsWriter};
use crate::model::{BatchToken, KvCache, KvType, LogitRows, Model, Scratch};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct PerplexityOptions {
    pub n_ctx: usize,
    /// Tokens per forward batch (at most `n_ctx`).
    pub n_batch: usize,
    /// Evaluate at most this many chunks (0 = all).
    pub max_chunks: usize,
    pub kv_type: KvType,
}

/// Running totals, in llama.cpp's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerplexityResult {
    pub chunks: usize,
    pub scored: usize,
    /// Sum of negative log-likelihoods and of their squares.
    pub nll: f64,
    pub nll2: f64,
    /// Perplexity after each chunk.
    pub running: Vec<f64>,
}

impl PerplexityResult {
    pub fn ppl(&self) -> f64 {
        (self.nll / self.scored as f64).exp()
    }

    /// Standard error of the perplexity, as llama.cpp estimates it: the
    /// standard error of the mean NLL, carried through `exp`.
    pub fn ppl_err(&self) -> f64 {
        let n = self.scored as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var <= 0.0 || n < 2.0 {
            return 0.0;
        }
        (var / (n - 1.0)).sqrt() * self.ppl()
    }
}

/// Negative log-likelihood of `target` under `logits` (log-softmax in f64).
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    log_z - logits[target as usize] as f64
}

/// Evaluate the perplexity of `tokens` (already tokenized with BOS).
/// `on_chunk(i, n_chunks, &result, chunk_logits)` runs after each chunk with
/// the logits of its scored rows (for KL divergence and progress).
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    bos: u32,
    add_bos: bool,
    opts: &PerplexityOptions,
    mut on_chunk: impl FnMut(usize, usize, &PerplexityResult, ChunkLogits<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<PerplexityResult> {
    let n_ctx = opts.n_ctx;
    anyhow::ensure!(n_ctx >= 4, "the context must be at least 4 tokens");
    let mut n_chunks = tokens.len() / n_ctx;
    anyhow::ensure!(
        n_chunks > 0,
        "the text is {} tokens, shorter than one chunk of {n_ctx}; use a smaller -c",
        tokens.len()
    );
    if opts.max_chunks > 0 {
        n_chunks = n_chunks.min(opts.max_chunks);
    }
    let n_batch = opts.n_batch.clamp(1, n_ctx);
    let first = n_ctx / 2;
    let n_vocab = model.hp.n_vocab;

    let mut kv = KvCache::new(&model.hp, n_ctx, 1, opts.kv_type)?;
    let mut s = Scratch::new(&model.hp, n_batch, n_ctx);
    let mut chunk_logits = vec![0f32; (n_ctx - first) * n_vocab];
    let mut batch = Vec::with_capacity(n_batch);
    let mut res = PerplexityResult::default();

    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        kv.clear(0);
        for start in (0..n_ctx).step_by(n_batch) {
            let end = (start + n_batch).min(n_ctx);
            batch.clear();
            batch.extend((start..end).map(|pos| {
                let token = if pos == 0 && add_bos { bos } else { chunk[pos] };
                BatchToken { token, pos, seq: 0 }
            }));
            // Logits only for the rows that are scored (pos >= first - ... ).
            let want = if end > first { LogitRows::All } else { LogitRows::None };
            model.forward(&batch, &mut kv, &mut s, want)?;
            if end > first {
                for pos in start.max(first)..end {
                    let row = s.logits(pos - start);
                    chunk_logits[(pos - first) * n_vocab..(pos - first + 1) * n_vocab].copy_from_slice(row);
                }
            }
        }
        // Row `pos` predicts token `pos + 1`; the last row predicts nothing.
        for pos in first..n_ctx - 1 {
            let v = nll(&chunk_logits[(pos - first) * n_vocab..(pos - first + 1) * n_vocab], chunk[pos + 1]);
            res.nll += v;
            res.nll2 += v * v;
            res.scored += 1;
        }
        res.chunks += 1;
        res.running.push(res.ppl());
        let scored = ChunkLogits {
            logits: &chunk_logits[..(n_ctx - 1 - first) * n_vocab],
            targets: &chunk[first + 1..],
            n_vocab,
        };
        on_chunk(c, n_chunks, &res, scored)?;
    }
    Ok(res)
}

/// The scored rows of one chunk: `logits` row `i` predicts `targets[i]`.
#[derive(Clone, Copy)]
pub struct ChunkLogits<'a> {
    pub logits: &'a [f32],
    pub targets: &'a [u32],
    pub n_vocab: usize,
}

impl ChunkLogits<'_> {
    pub fn rows(&self) -> impl Iterator<Item = (&[f32], u32)> {
        self.logits.chunks_exact(self.n_vocab).zip(self.targets.iter().copied())
    }
}

/// One text evaluated: perplexity, and the comparison with a reference
/// model's logits when one was given.
pub struct TextEval {
    pub result: PerplexityResult,
    pub kl: Option<KlSummary>,
    pub secs: f64,
}

/// Evaluate `tokens` in chunks of `n_ctx` (at most `max_chunks`, 0 = all),
/// saving this model's logits to `save_logits` and/or comparing with those in
/// `kl_base`; shows a progress bar with ETA on stderr when `progress`.
pub fn evaluate_text(
    model: &Model,
    bos: u32,
    add_bos: bool,
    tokens: &[u32],
    opts: &PerplexityOptions,
    save_logits: Option<&Path>,
    kl_base: Option<&Path>,
    progress: bool,
) -> anyhow::Result<TextEval> {
    let n_ctx = opts.n_ctx;
    let mut n_chunks = tokens.len() / n_ctx;
    if opts.max_chunks > 0 {
        n_chunks = n_chunks.min(opts.max_chunks);
    }
    anyhow::ensure!(
        n_chunks > 0,
        "the text is {} tokens, shorter than one chunk of {n_ctx}; use a smaller context",
        tokens.len()
    );
    let key = LogitsKey {
        n_ctx: n_ctx as u32,
        n_chunks: n_chunks as u32,
        n_vocab: model.hp.n_vocab as u32,
        tokens_hash: hash_tokens(&tokens[..n_chunks * n_ctx]),
        n_records: (n_chunks * (n_ctx - 1 - n_ctx / 2)) as u64,
    };
    let mut writer = save_logits.map(|p| LogitsWriter::create(p, key)).transpose()?;
    let base = kl_base.map(|p| LogitsFile::open(p, &key)).transpose()?;
    let mut kl = KlStats::default();
    let bar = if progress { ProgressBar::new(n_chunks as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} chunks, {elapsed} elapsed, ETA {eta} {msg}")
            .expect("valid progress template"),
    );
    let mut record = 0usize;
    let t = Instant::now();
    let opts = PerplexityOptions { max_chunks: n_chunks, ..opts.clone() };
    let result = perplexity(model, tokens, bos, add_bos, &opts, |i, _, res, chunk| {
        for (logits, target) in chunk.rows() {
            if let Some(w) = writer.as_mut() {
                w.push(logits, target)?;
            }
            if let Some(b) = base.as_ref() {
                kl.push(b, record, logits, target)?;
            }
            record += 1;
        }
        bar.set_message(format!("PPL {:.4}", res.running[i]));
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(TextEval { result, kl: base.map(|_| kl.summary()), secs: t.elapsed().as_secs_f64() })
}
