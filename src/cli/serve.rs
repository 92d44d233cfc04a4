//! `qllama serve`: the OpenAI-compatible HTTP server and chat page.

use crate::model::Model;
use crate::server::{self, ServeConfig};
use anyhow::bail;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF model file (default: models/tiny-llama2-q8_0.gguf of the repository).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Total context in tokens, divided between the parallel slots as
    /// llama-server does (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Requests decoded together, each in its own KV cache slot.
    #[arg(long = "parallel", short = 'P', alias = "np", default_value_t = 1)]
    pub parallel: usize,
    /// Requests that may wait for a slot; past it the answer is 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Most prompt tokens evaluated per step, so running streams keep going
    /// while a new prompt is read.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch_size: usize,
    /// Require `Authorization: Bearer KEY` on /v1 requests.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Threads for generation (default: physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Threads for prompt evaluation (default: as -t).
    #[arg(long = "threads-batch", short = 'T', alias = "tb")]
    pub threads_batch: Option<usize>,
    /// Keep the KV cache in F32 instead of F16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Seconds running streams get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    /// Run even when the memory estimate exceeds the available memory.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = super::common::threads(args.threads)?;
    let threads_batch = match args.threads_batch {
        Some(0) => bail!("-tb must be at least 1"),
        Some(t) => t,
        None => threads,
    };
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(args.grace.is_finite() && args.grace >= 0.0) {
        bail!("--grace must be a number of seconds >= 0");
    }
    let t0 = Instant::now();
    let super::common::Opened { path, file, n_ctx, kv_type } =
        super::common::open_model(args.model.as_deref(), args.ctx, args.kv_f32, args.force)?;
    let n_ctx_slot = n_ctx / args.parallel;
    if n_ctx_slot < 2 {
        bail!(
            "--ctx {n_ctx} divided between {} slots leaves {n_ctx_slot} tokens each; use a larger --ctx",
            args.parallel
        );
    }
    let model = Model::from_file(file)?;
    eprintln!(
        "loaded {} in {:.2}s: {} slot{} of {n_ctx_slot} tokens (--ctx {n_ctx}), {threads} threads ({threads_batch} for prompts)",
        path.display(),
        t0.elapsed().as_secs_f64(),
        args.parallel,
        if args.parallel == 1 { "" } else { "s" }
    );
    if let Some(note) = model.load_note() {
        eprintln!("{note}");
    }
    server::serve(
        model,
        ServeConfig {
            host: args.host,
            port: args.port,
            n_parallel: args.parallel,
            n_ctx_slot,
            n_ctx,
            prompt_chunk: args.batch_size,
            queue: args.queue,
            api_key: args.api_key,
            threads,
            threads_batch,
            kv_type,
            grace: Duration::from_secs_f64(args.grace),
        },
    )
}
