//! `qllama bench`: prompt processing and generation speed, printed as
//! `llama-bench` prints them so the two can be compared line by line.

use super::run::{physical_cores, resolve_model};
use crate::model::{BatchToken, KvType, LogitRows, Model, MAX_BATCH};
use anyhow::bail;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the model shipped in models/).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Prompt tokens for the prompt-processing test (0 = skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens for the generation test (0 = skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Generation threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Prompt-processing threads (default: as -t).
    #[arg(long = "tb")]
    pub threads_batch: Option<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Mean and sample standard deviation of tokens/s over the repetitions.
fn stats(samples: &[f64]) -> (f64, f64) {
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

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let tg_threads = match args.threads {
        Some(0) => bail!("-t must be at least 1"),
        Some(t) => t,
        None => physical_cores(),
    };
    let pp_threads = args.threads_batch.unwrap_or(tg_threads).max(1);
    let path = resolve_model(args.model.as_deref())?;
    let t0 = Instant::now();
    let model = Model::open(&path)?;
    let load_s = t0.elapsed().as_secs_f64();
    let n_ctx = (args.n_prompt + args.n_gen).max(1);
    let mut kv = model.new_kv_cache(n_ctx, 1, KvType::F16)?;
    let mut s = model.new_scratch(MAX_BATCH.min(args.n_prompt.max(1)), n_ctx);
    let pp_pool = rayon::ThreadPoolBuilder::new().num_threads(pp_threads).build()?;
    let tg_pool = rayon::ThreadPoolBuilder::new().num_threads(tg_threads).build()?;

    let prompt = tokens(args.n_prompt, model.hp.n_vocab);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut pp = |kv: &mut crate::model::KvCache, s: &mut crate::model::Scratch| -> anyhow::Result<f64> {
        kv.clear(0);
        let t = Instant::now();
        for (c, chunk) in prompt.chunks(s.max_batch()).enumerate() {
            batch.clear();
            let start = c * s.max_batch();
            batch.extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken { token, pos: start + i, seq: 0 }));
            let last = start + chunk.len() == prompt.len();
            model.forward(&batch, kv, s, if last { LogitRows::Last } else { LogitRows::None })?;
        }
        Ok(args.n_prompt as f64 / t.elapsed().as_secs_f64())
    };
    let gen = tokens(args.n_gen, model.hp.n_vocab);
    let tg = |kv: &mut crate::model::KvCache, s: &mut crate::model::Scratch| -> anyhow::Result<f64> {
        kv.clear(0);
        let t = Instant::now();
        for (pos, &token) in gen.iter().enumerate() {
            model.forward(&[BatchToken { token, pos, seq: 0 }], kv, s, LogitRows::Last)?;
        }
        Ok(args.n_gen as f64 / t.elapsed().as_secs_f64())
    };

    let mut rows = Vec::new();
    if args.n_prompt > 0 {
        pp_pool.install(|| pp(&mut kv, &mut s))?; // warm-up
        let samples = (0..args.reps).map(|_| pp_pool.install(|| pp(&mut kv, &mut s))).collect::<anyhow::Result<Vec<_>>>()?;
        rows.push((format!("pp{}", args.n_prompt), pp_threads, stats(&samples)));
    }
    if args.n_gen > 0 {
        tg_pool.install(|| tg(&mut kv, &mut s))?;
        let samples = (0..args.reps).map(|_| tg_pool.install(|| tg(&mut kv, &mut s))).collect::<anyhow::Result<Vec<_>>>()?;
        rows.push((format!("tg{}", args.n_gen), tg_threads, stats(&samples)));
    }

    let size: u64 = model.file.tensors().iter().map(|t| t.size).sum();
    let params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
    let isa = qllama_kernels::simd::isa().name();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if args.json {
        let tests: Vec<_> = rows
            .iter()
            .map(|(test, threads, (mean, sd))| serde_json::json!({"test": test, "threads": threads, "avg_ts": mean, "stddev_ts": sd}))
            .collect();
        let v = serde_json::json!({
            "model": path.display().to_string(), "size_bytes": size, "params": params,
            "simd": isa, "repetitions": args.reps, "load_seconds": load_s, "tests": tests,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("| model | size | params | simd | threads | test | t/s |");
        println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        for (test, threads, (mean, sd)) in rows {
            println!(
                "| {name} | {:.2} MiB | {:.2} M | {isa} | {threads} | {test} | {mean:.2} ± {sd:.2} |",
                size as f64 / (1024.0 * 1024.0),
                params as f64 / 1e6,
            );
        }
    }
    Ok(())
}
