//! `qllama bench`: prompt processing and generation speed, printed as
//! `llama-bench` prints them so the two can be compared line by line.

use super::run::{physical_cores, resolve_model};
use crate::eval::bench::bench;
use crate::model::Model;
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
    let rows = bench(&model, args.n_prompt, args.n_gen, args.reps, pp_threads, tg_threads)?;

    let size: u64 = model.file.tensors().iter().map(|t| t.size).sum();
    let params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
    let isa = qllama_kernels::simd::isa().name();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if args.json {
        let tests: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"test": r.test, "threads": r.threads, "avg_ts": r.mean, "stddev_ts": r.sd}))
            .collect();
        let v = serde_json::json!({
            "model": path.display().to_string(), "size_bytes": size, "params": params,
            "simd": isa, "repetitions": args.reps, "load_seconds": load_s, "tests": tests,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("| model | size | params | simd | threads | test | t/s |");
        println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        for r in rows {
            println!(
                "| {name} | {:.2} MiB | {:.2} M | {isa} | {} | {} | {:.2} ± {:.2} |",
                size as f64 / (1024.0 * 1024.0),
                params as f64 / 1e6,
                r.threads,
                r.test,
                r.mean,
                r.sd
            );
        }
    }
    Ok(())
}
