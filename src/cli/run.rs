//! `qllama run`: complete a prompt, streaming the text to stdout and the
//! timings to stderr.

use crate::gguf::GgufFile;
use crate::model::{self, BatchToken, KvType, LogitRows, Model, MAX_BATCH};
use crate::sampling::{Sampler, SamplerParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The model used when `-m` is not given, relative to the repository.
pub const DEFAULT_MODEL: &str = "models/tiny-llama2-q8_0.gguf";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF model file (default: models/tiny-llama2-q8_0.gguf of the repository).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// The prompt.
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file (UTF-8).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Sampling temperature; 0 = greedy (deterministic).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold in (0, 1] (1 = off).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the top probability, in [0, 1] (0 = off).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock; printed so a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads (default: physical cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Keep the KV cache in F32 instead of F16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Run even when the memory estimate exceeds the available memory.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.n_predict == 0 {
        bail!("-n must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    let params = SamplerParams {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: args.repeat_last_n,
        seed,
    };
    params.validate()?;
    let prompt = read_prompt(&args)?;
    let threads = super::common::threads(args.threads)?;

    // Work out the memory before touching the weights.
    let load_start = Instant::now();
    let super::common::Opened { path: model_path, file, n_ctx, kv_type } =
        super::common::open_model(args.model.as_deref(), args.ctx, args.kv_f32, args.force)?;

    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start threads")?;
    pool.install(|| {
        let model = Model::from_file(file)?;
        let tok = Tokenizer::from_gguf(&model.file)?;
        let load_s = load_start.elapsed().as_secs_f64();
        eprintln!(
            "loaded {} in {:.2}s ({} layers, {} threads, context {n_ctx}, KV cache {:?})",
            model_path.display(),
            load_s,
            model.hp.n_layer,
            threads,
            kv_type
        );
        if let Some(note) = model.load_note() {
            eprintln!("{note}");
        }
        generate(&model, &tok, &prompt, n_ctx, kv_type, params, args.n_predict)
    })
}

/// Evaluate the prompt, then sample and print up to `n_predict` tokens.
fn generate(
    model: &Model,
    tok: &Tokenizer,
    prompt: &str,
    n_ctx: usize,
    kv_type: KvType,
    params: SamplerParams,
    n_predict: usize,
) -> anyhow::Result<()> {
    let ids = tok.encode(prompt, tok.add_bos())?;
    if ids.is_empty() {
        bail!("the prompt is empty (and the model adds no BOS token)");
    }
    if ids.len() > n_ctx {
        bail!("the prompt is {} tokens, longer than the context of {n_ctx} (use a larger --ctx)", ids.len());
    }
    let mut kv = model.new_kv_cache(n_ctx, 1, kv_type)?;
    let mut s = model.new_scratch(MAX_BATCH.min(ids.len()), n_ctx);
    if params.temperature > 0.0 {
        eprintln!("seed: {}", params.seed);
    }
    let mut sampler = Sampler::new(params)?;

    // The prompt, in batches; logits only for its last token.
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    for (c, chunk) in ids.chunks(s.max_batch()).enumerate() {
        batch.clear();
        let start = c * s.max_batch();
        batch.extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken { token, pos: start + i, seq: 0 }));
        let last = start + chunk.len() == ids.len();
        model.forward(&batch, &mut kv, &mut s, if last { LogitRows::Last } else { LogitRows::None })?;
    }
    let prompt_s = t0.elapsed().as_secs_f64();
    ids.iter().for_each(|&t| sampler.accept(t));

    let mut out = std::io::stdout().lock();
    let mut dec = StreamDecoder::continuing();
    let mut pos = ids.len();
    let mut n_gen = 0;
    let mut n_eval = 0;
    let t1 = Instant::now();
    let stop = loop {
        let next = sampler.sample(s.logits_mut(0));
        if tok.is_eog(next) {
            break "end of text";
        }
        sampler.accept(next);
        n_gen += 1;
        write!(out, "{}", dec.push(tok, next))?;
        out.flush()?;
        if n_gen == n_predict {
            break "";
        }
        if pos == n_ctx {
            break "context full";
        }
        model.forward(&[BatchToken { token: next, pos, seq: 0 }], &mut kv, &mut s, LogitRows::Last)?;
        pos += 1;
        n_eval += 1;
    };
    write!(out, "{}", dec.flush())?;
    writeln!(out)?;
    out.flush()?;
    let gen_s = t1.elapsed().as_secs_f64();

    match stop {
        "context full" => {
            eprintln!("stopped: reached the end of the context ({n_ctx} tokens); use a larger --ctx for more")
        }
        "end of text" => eprintln!("stopped: end of text"),
        _ => {}
    }
    eprintln!(
        "prompt: {} tokens in {:.3}s ({:.1} tokens/s)",
        ids.len(),
        prompt_s,
        ids.len() as f64 / prompt_s.max(1e-9)
    );
    eprintln!("generation: {n_gen} tokens in {:.3}s ({:.1} tokens/s)", gen_s, n_eval.max(1) as f64 / gen_s.max(1e-9));
    Ok(())
}

fn read_prompt(args: &Args) -> anyhow::Result<String> {
    match (&args.prompt, &args.file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read prompt file {}", f.display()))?;
            String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "prompt file {} is not valid UTF-8 (byte {})",
                    f.display(),
                    e.utf8_error().valid_up_to()
                )
            })
        }
        (None, None) => bail!("give a prompt with -p TEXT or -f FILE"),
    }
}

/// `-m` if given, else the repository's default model: next to the source
/// tree this binary was built from, or under the current directory.
pub fn resolve_model(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let candidates = [Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL), PathBuf::from(DEFAULT_MODEL)];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        anyhow::anyhow!("no model given (-m FILE.gguf) and the default model {} was not found", candidates[0].display())
    })
}

/// Print the memory estimate; refuse when it exceeds what the machine has
/// available, unless forced.
pub fn check_memory(file: &GgufFile, n_ctx: usize, kv_type: KvType, force: bool) -> anyhow::Result<()> {
    let est = model::estimate_memory(file, n_ctx, kv_type, MAX_BATCH)?;
    let avail = model::available_memory();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match avail {
        Some(a) => eprintln!("memory: needs {est}; {:.1} MiB available", mib(a)),
        None => eprintln!("memory: needs {est}"),
    }
    if let Some(a) = avail {
        if est.total() > a && !force {
            bail!(
                "{}: needs {:.1} MiB at context {n_ctx} but only {:.1} MiB is available (use a smaller --ctx, or --force to try anyway)",
                file.path.display(),
                mib(est.total()),
                mib(a)
            );
        }
    }
    Ok(())
}

/// Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo,
/// else the available parallelism.
pub fn physical_cores() -> usize {
    let fallback = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") else { return fallback() };
    let mut cores = std::collections::HashSet::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        if let (Some(p), Some(c)) = (field("physical id"), field("core id")) {
            cores.insert((p, c));
        }
    }
    if cores.is_empty() {
        fallback()
    } else {
        cores.len()
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
