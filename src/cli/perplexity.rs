//! `qllama perplexity`: llama.cpp's perplexity (and KL divergence against a
//! reference model's saved logits), for direct comparison with
//! `llama-perplexity`.

use super::run::{physical_cores, resolve_model};
use crate::eval::perplexity::{evaluate_text, PerplexityOptions};
use crate::model::{KvType, Model};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the model shipped in models/).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Text file to evaluate.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Tokens per forward batch (default: the chunk size, at most 512).
    #[arg(short = 'b', long = "batch")]
    pub batch: Option<usize>,
    /// Evaluate only the first N chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Keep the KV cache in F32.
    #[arg(long)]
    pub kv_f32: bool,
    /// Save this (full-precision) model's logits for later --kl-base runs.
    #[arg(long, conflicts_with = "kl_base")]
    pub save_logits: Option<PathBuf>,
    /// Compare with logits saved by --save-logits: KL divergence, top-1
    /// agreement, and the change in perplexity.
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = match args.threads {
        Some(0) => bail!("-t must be at least 1"),
        Some(t) => t,
        None => physical_cores(),
    };
    if args.ctx < 4 {
        bail!("-c must be at least 4");
    }
    let path = resolve_model(args.model.as_deref())?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("{} is not valid UTF-8 (byte {})", args.file.display(), e.utf8_error().valid_up_to())
    })?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| evaluate(&args, &path, &text))
}

fn evaluate(args: &Args, path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let model = Model::open(path)?;
    let tok = Tokenizer::from_gguf(&model.file)?;
    let t0 = Instant::now();
    let tokens = tok.encode(text, tok.add_bos())?;
    eprintln!("tokenized {} in {:.2}s: {} tokens", args.file.display(), t0.elapsed().as_secs_f64(), tokens.len());
    let mut n_chunks = tokens.len() / args.ctx;
    if let Some(c) = args.chunks {
        n_chunks = n_chunks.min(c);
    }
    if n_chunks == 0 {
        bail!(
            "{} is {} tokens, shorter than one chunk of {}; use a smaller -c",
            args.file.display(),
            tokens.len(),
            args.ctx
        );
    }
    let opts = PerplexityOptions {
        n_ctx: args.ctx,
        n_batch: args.batch.unwrap_or(args.ctx).min(512),
        max_chunks: n_chunks,
        kv_type: if args.kv_f32 { KvType::F32 } else { KvType::F16 },
    };
    let ev = evaluate_text(
        &model,
        tok.bos_id(),
        tok.add_bos(),
        &tokens,
        &opts,
        args.save_logits.as_deref(),
        args.kl_base.as_deref(),
        true,
    )?;
    let (res, secs) = (&ev.result, ev.secs);
    if let Some(p) = &args.save_logits {
        eprintln!("saved logits to {}", p.display());
    }
    let line: String = res.running.iter().enumerate().map(|(i, p)| format!("[{}]{:.4},", i + 1, p)).collect();
    eprintln!("{line}");
    eprintln!(
        "{} chunks of {} tokens, {} scored, {:.2}s ({:.1} tokens/s)",
        res.chunks,
        args.ctx,
        res.scored,
        secs,
        (res.chunks * args.ctx) as f64 / secs.max(1e-9)
    );
    let summary = ev.kl;
    if args.json {
        let mut v = serde_json::json!({
            "model": path.display().to_string(),
            "text": args.file.display().to_string(),
            "ctx": args.ctx,
            "chunks": res.chunks,
            "scored_tokens": res.scored,
            "ppl": res.ppl(),
            "ppl_err": res.ppl_err(),
            "seconds": secs,
        });
        if let Some(s) = summary {
            v["kl"] = serde_json::json!({
                "mean": s.mean_kl, "mean_err": s.mean_kl_err, "p99": s.p99_kl, "max": s.max_kl,
                "top1": s.top1, "top1_err": s.top1_err,
                "ppl_base": s.ppl_base, "ppl_ratio": s.ppl_ratio, "ppl_ratio_err": s.ppl_ratio_err,
                "delta_ppl": s.delta_ppl, "delta_ppl_err": s.delta_ppl_err,
            });
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("Final estimate: PPL = {:.4} +/- {:.5}", res.ppl(), res.ppl_err());
        if let Some(s) = summary {
            println!("Mean PPL(Q)/PPL(base): {:.6} ± {:.6}", s.ppl_ratio, s.ppl_ratio_err);
            println!("PPL(Q)-PPL(base):      {:.4} ± {:.4}", s.delta_ppl, s.delta_ppl_err);
            println!("Mean KLD:              {:.6} ± {:.6}", s.mean_kl, s.mean_kl_err);
            println!("99.0% KLD:             {:.6}", s.p99_kl);
            println!("Maximum KLD:           {:.6}", s.max_kl);
            println!("Same top p:            {:.3} ± {:.3} %", 100.0 * s.top1, 100.0 * s.top1_err);
        }
    }
    Ok(())
}
