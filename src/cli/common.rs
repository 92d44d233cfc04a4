//! Arguments shared by the commands that generate text.

use crate::sampling::SamplerParams;

/// Sampling options, as llama.cpp names them.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy and deterministic.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize repeating the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock; printed so a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// Validated sampler parameters.
    pub fn params(&self) -> anyhow::Result<SamplerParams> {
        let p = SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed.unwrap_or_else(clock_seed),
        };
        p.validate()?;
        Ok(p)
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Threads from `-t` (default: the physical cores).
pub fn threads(given: Option<usize>) -> anyhow::Result<usize> {
    match given {
        Some(0) => anyhow::bail!("-t must be at least 1"),
        Some(t) => Ok(t),
        None => Ok(super::run::physical_cores()),
    }
}

/// A model file opened for running: its path, the parsed file and the
/// context size (`--ctx`, default the training context capped at 4096).
pub struct Opened {
    pub path: std::path::PathBuf,
    pub file: crate::gguf::GgufFile,
    pub n_ctx: usize,
    pub kv_type: crate::model::KvType,
}

/// Resolve and open the model, pick the context, and check the memory it
/// needs (weights + KV cache for `n_seq` sequences) before any weight is
/// touched.
pub fn open_model(
    model: Option<&std::path::Path>,
    ctx: Option<usize>,
    kv_f32: bool,
    force: bool,
) -> anyhow::Result<Opened> {
    let path = super::run::resolve_model(model)?;
    let kv_type = if kv_f32 { crate::model::KvType::F32 } else { crate::model::KvType::F16 };
    let file = crate::gguf::GgufFile::open(&path)?;
    let hp = crate::model::HParams::from_gguf(&file)?;
    let n_ctx = match ctx {
        Some(0) => anyhow::bail!("--ctx must be at least 1"),
        Some(c) => c,
        None => hp.n_ctx_train.min(4096),
    };
    super::run::check_memory(&file, n_ctx, kv_type, force)?;
    Ok(Opened { path, file, n_ctx, kv_type })
}
