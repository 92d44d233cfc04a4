//! Speed: prompt processing (one batched pass over a prompt) and generation
//! (one token at a time), in tokens/s, as llama-bench measures them.

use crate::model::{BatchToken, KvCache, KvType, LogitRows, Model, Scratch, MAX_BATCH};
use std::time::Instant;

/// One test's result: mean ± sample standard deviation of tokens/s.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// `pp512`, `tg128`, as llama-bench names them.
    pub test: String,
    pub threads: usize,
    pub mean: f64,
    pub sd: f64,
}

/// Mean and sample standard deviation of tokens/s over the repetitions.
pub fn stats(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = if samples.len() > 1 { samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Deterministic, vocabulary-wide token ids (the content does not change the
/// cost of a forward pass).
fn tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n_vocab as u64) as u32
        })
        .collect()
}

/// Run the pp and tg tests (after a warm-up: the whole prompt, one
/// generated token) with their own thread pools. A test with 0 tokens is
/// skipped.
pub fn bench(
    model: &Model,
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
    pp_threads: usize,
    tg_threads: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let n_ctx = (n_prompt + n_gen).max(1);
    let mut kv = model.new_kv_cache(n_ctx, 1, KvType::F16)?;
    let mut s = model.new_scratch(MAX_BATCH.min(n_prompt.max(1)), n_ctx);
    let pp_pool = rayon::ThreadPoolBuilder::new().num_threads(pp_threads).build()?;
    let tg_pool = rayon::ThreadPoolBuilder::new().num_threads(tg_threads).build()?;

    let prompt = tokens(n_prompt, model.hp.n_vocab);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut pp = |kv: &mut KvCache, s: &mut Scratch| -> anyhow::Result<f64> {
        kv.clear(0);
        let t = Instant::now();
        for (c, chunk) in prompt.chunks(s.max_batch()).enumerate() {
            batch.clear();
            let start = c * s.max_batch();
            batch.extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken { token, pos: start + i, seq: 0 }));
            let last = start + chunk.len() == prompt.len();
            model.forward(&batch, kv, s, if last { LogitRows::Last } else { LogitRows::None })?;
        }
        Ok(n_prompt as f64 / t.elapsed().as_secs_f64())
    };
    let gen = tokens(n_gen, model.hp.n_vocab);
    // The first `n` tokens of `gen`, one at a time.
    let tg = |kv: &mut KvCache, s: &mut Scratch, n: usize| -> anyhow::Result<f64> {
        kv.clear(0);
        let t = Instant::now();
        for (pos, &token) in gen[..n].iter().enumerate() {
            model.forward(&[BatchToken { token, pos, seq: 0 }], kv, s, LogitRows::Last)?;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };

    let mut rows = Vec::new();
    if n_prompt > 0 {
        pp_pool.install(|| pp(&mut kv, &mut s))?;
        let samples = (0..reps).map(|_| pp_pool.install(|| pp(&mut kv, &mut s))).collect::<anyhow::Result<Vec<_>>>()?;
        let (mean, sd) = stats(&samples);
        rows.push(BenchRow { test: format!("pp{n_prompt}"), threads: pp_threads, mean, sd });
    }
    if n_gen > 0 {
        // One token warms up all the weights (each token reads every one),
        // as llama-bench's generation warm-up does.
        tg_pool.install(|| tg(&mut kv, &mut s, 1))?;
        let samples =
            (0..reps).map(|_| tg_pool.install(|| tg(&mut kv, &mut s, n_gen))).collect::<anyhow::Result<Vec<_>>>()?;
        let (mean, sd) = stats(&samples);
        rows.push(BenchRow { test: format!("tg{n_gen}"), threads: tg_threads, mean, sd });
    }
    Ok(rows)
}
