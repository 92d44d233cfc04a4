//! The Llama 2 decoder: hyperparameters, weights, KV cache, forward pass.
//!
//! A [`Model`] owns the memory-mapped [`GgufFile`]; weights stay in the map
//! and are borrowed as [`QMatrix`] views for each matmul. The caller owns the
//! mutable state: a [`KvCache`] (one or more sequence slots) and a
//! [`Scratch`] (activation buffers sized once for the largest batch).

mod forward;
mod hparams;
mod kv_cache;
mod repack;
mod weights;

pub use hparams::{HParams, ARCH};
pub use kv_cache::{kv_cache_bytes, KvCache, KvElem, KvType};
pub use weights::{LayerWeights, WeightRef, Weights};

use crate::gguf::{GgufError, GgufFile};
use qllama_kernels::{MatmulScratch, QMatrix};
use std::path::Path;

pub struct Model {
    pub file: GgufFile,
    pub hp: HParams,
    pub weights: Weights,
    /// Matrices repacked at load into the interleaved layout, if any.
    repacked: Option<memmap2::MmapMut>,
    /// Whether they were not, for lack of memory.
    short_of_memory: bool,
    /// Rotation frequency of each rotated pair, rope scaling included.
    rope_freqs: Vec<f64>,
}

/// One token of a batch: evaluated at position `pos` of sequence slot `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    pub token: u32,
    pub pos: usize,
    pub seq: usize,
}

/// Which batch rows get logits (the output head is the largest matmul, so
/// generation asks for the last row only).
#[derive(Clone, Copy, Debug)]
pub enum LogitRows<'a> {
    None,
    Last,
    All,
    /// These batch rows, in this order.
    Rows(&'a [usize]),
}

/// Why a batch could not be evaluated. Nothing is changed when one is
/// returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("empty batch")]
    EmptyBatch,
    #[error("batch of {got} tokens is larger than the scratch buffers' {max}")]
    BatchTooLarge { got: usize, max: usize },
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    BadToken { token: u32, n_vocab: usize },
    #[error("sequence slot {seq} does not exist (the cache has {n_seq})")]
    BadSeq { seq: usize, n_seq: usize },
    #[error("position {pos} of sequence {seq} is past the end of the context ({n_ctx} tokens)")]
    ContextFull { seq: usize, pos: usize, n_ctx: usize },
    #[error("position {pos} of sequence {seq} does not follow the cached positions (expected at most {expected})")]
    PositionGap { seq: usize, pos: usize, expected: usize },
    #[error("logits asked for row {row} of a batch of {n}")]
    BadRow { row: usize, n: usize },
    #[error("the KV cache or scratch buffers were made for another model or context size")]
    Mismatch,
}

impl Model {
    /// Open and check a GGUF model file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        Self::from_file(GgufFile::open(path)?)
    }

    pub fn from_file(file: GgufFile) -> Result<Self, GgufError> {
        let hp = HParams::from_gguf(&file)?;
        let mut weights = Weights::open(&file, &hp)?;
        let repack::Repacked { map: repacked, short_of_memory } = repack::repack(&file, &mut weights)
            .map_err(|e| file.error(format!("cannot allocate memory to repack the weights: {e}")))?;
        let rope_freqs = (0..hp.rope_dim / 2)
            .map(|i| {
                let exponent = -2.0 * i as f64 / hp.rope_dim as f64;
                (hp.rope_freq_base as f64).powf(exponent) / hp.rope_scale as f64
            })
            .collect();
        Ok(Self { file, hp, weights, repacked, short_of_memory, rope_freqs })
    }

    /// The context size used when none is asked for: the training context,
    /// capped at 4096.
    pub fn default_ctx(&self) -> usize {
        self.hp.n_ctx_train.min(4096)
    }

    /// A view of a weight matrix: its repacked copy, or the memory map.
    pub fn matrix(&self, w: &WeightRef) -> QMatrix<'_> {
        // Checked when the weights were opened and repacked; neither changes.
        match (&w.packed, &self.repacked) {
            (Some(r), Some(map)) => QMatrix::interleaved(w.dtype, w.rows, w.cols, &map[r.clone()]),
            _ => QMatrix::new(w.dtype, w.rows, w.cols, &self.file.bytes()[w.range.clone()]),
        }
        .expect("weight views are validated at load")
    }

    /// Whether some matrices were repacked at load (see `repack.rs`).
    pub fn is_repacked(&self) -> bool {
        self.repacked.is_some()
    }

    /// What a user should know about the load: the weights were left in the
    /// file's map, read by slower kernels, for lack of memory.
    pub fn load_note(&self) -> Option<String> {
        self.short_of_memory.then(|| {
            format!(
                "note: too little free memory to repack the weights of {} for the fast kernels; prompts run slower",
                self.file.path.display()
            )
        })
    }

    /// Dequantize the embedding row of `token` into `out` (`n_embd` values).
    pub fn embed(&self, token: u32, out: &mut [f32]) {
        let w = &self.weights.token_embd;
        let m = QMatrix::new(w.dtype, w.rows, w.cols, &self.file.bytes()[w.range.clone()])
            .expect("weight views are validated at load");
        m.dtype.dequantize_row(m.row(token as usize), out);
    }

    /// A KV cache for this model.
    pub fn new_kv_cache(&self, n_ctx: usize, n_seq: usize, kv_type: KvType) -> anyhow::Result<KvCache> {
        KvCache::new(&self.hp, n_ctx, n_seq, kv_type)
    }

    /// Scratch buffers for batches of up to `max_batch` tokens over a cache
    /// of `n_ctx` positions.
    pub fn new_scratch(&self, max_batch: usize, n_ctx: usize) -> Scratch {
        Scratch::new(&self.hp, max_batch, n_ctx)
    }
}

/// Attention runs as this many independent work items at most, each with
/// its own score buffer of `n_ctx` floats.
pub(crate) const ATT_WORKERS: usize = 64;

/// Activation buffers, allocated once for the largest batch.
pub struct Scratch {
    pub(crate) max_batch: usize,
    pub(crate) n_ctx: usize,
    pub(crate) x: Vec<f32>,
    pub(crate) xb: Vec<f32>,
    pub(crate) xb2: Vec<f32>,
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) att_out: Vec<f32>,
    pub(crate) scores: Vec<f32>,
    pub(crate) hb: Vec<f32>,
    pub(crate) hb2: Vec<f32>,
    /// (cos, sin) of each rotated pair for each batch row.
    pub(crate) rope: Vec<f32>,
    /// Final-normed rows that get logits, then the logits.
    pub(crate) out_rows: Vec<f32>,
    pub(crate) logits: Vec<f32>,
    pub(crate) n_logit_rows: usize,
    pub(crate) n_vocab: usize,
    pub(crate) mm: MatmulScratch,
}

impl Scratch {
    pub fn new(hp: &HParams, max_batch: usize, n_ctx: usize) -> Self {
        let max_batch = max_batch.max(1);
        let z = |n: usize| vec![0.0f32; n];
        let (e, kv, ff) = (hp.n_embd, hp.kv_dim(), hp.n_ff);
        Self {
            max_batch,
            n_ctx,
            x: z(max_batch * e),
            xb: z(max_batch * e),
            xb2: z(max_batch * e),
            q: z(max_batch * e),
            k: z(max_batch * kv),
            v: z(max_batch * kv),
            att_out: z(max_batch * e),
            scores: z(ATT_WORKERS * qllama_kernels::simd::attn::TILE * n_ctx),
            hb: z(max_batch * ff),
            hb2: z(max_batch * ff),
            rope: z(max_batch * hp.rope_dim),
            // Grown on first use to the rows actually asked for.
            out_rows: Vec::new(),
            logits: Vec::new(),
            n_logit_rows: 0,
            n_vocab: hp.n_vocab,
            mm: MatmulScratch::default(),
        }
    }

    /// Bytes these buffers take for a model (logits for `logit_rows` rows).
    pub fn bytes_for(hp: &HParams, max_batch: usize, n_ctx: usize, logit_rows: usize) -> u64 {
        let (e, kv, ff) = (hp.n_embd as u64, hp.kv_dim() as u64, hp.n_ff as u64);
        let b = max_batch as u64;
        let floats = b * (5 * e + 2 * kv + 2 * ff + hp.rope_dim as u64)
            + (ATT_WORKERS * qllama_kernels::simd::attn::TILE * n_ctx) as u64
            + logit_rows as u64 * (e + hp.n_vocab as u64);
        // Plus the quantized activations (at most one byte per value + scales).
        floats * 4 + b * ff.max(e) * 2
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Rows that got logits in the last forward call.
    pub fn n_logit_rows(&self) -> usize {
        self.n_logit_rows
    }

    /// Logits of the `i`-th requested row of the last forward call.
    pub fn logits(&self, i: usize) -> &[f32] {
        assert!(i < self.n_logit_rows, "logit row {i} of {}", self.n_logit_rows);
        &self.logits[i * self.n_vocab..(i + 1) * self.n_vocab]
    }

    /// Mutable logits (samplers apply penalties in place).
    pub fn logits_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.n_logit_rows, "logit row {i} of {}", self.n_logit_rows);
        &mut self.logits[i * self.n_vocab..(i + 1) * self.n_vocab]
    }
}

/// What running a model at a context size needs, worked out from the header
/// alone (nothing is read from the tensor data).
#[derive(Clone, Copy, Debug)]
pub struct MemoryEstimate {
    /// Mapped tensor data (resident once touched).
    pub weights: u64,
    pub kv_cache: u64,
    pub scratch: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "{:.1} MiB (weights {:.1} MiB + KV cache {:.1} MiB + buffers {:.1} MiB)",
            mib(self.total()),
            mib(self.weights),
            mib(self.kv_cache),
            mib(self.scratch)
        )
    }
}

/// Largest batch `run` evaluates at once (prompt chunks).
pub const MAX_BATCH: usize = 512;

/// Memory needed to run `file` with a cache of `n_ctx` positions for one
/// sequence and batches of up to `max_batch` tokens.
pub fn estimate_memory(
    file: &GgufFile,
    n_ctx: usize,
    kv_type: KvType,
    max_batch: usize,
) -> Result<MemoryEstimate, GgufError> {
    let hp = HParams::from_gguf(file)?;
    let weights = file.tensors().iter().map(|t| t.size).sum();
    let kv_cache = kv_cache_bytes(&hp, n_ctx, 1, kv_type)
        .ok_or_else(|| file.error(format!("KV cache size for context {n_ctx} overflows")))?;
    let scratch = Scratch::bytes_for(&hp, max_batch.min(n_ctx.max(1)), n_ctx, 1);
    Ok(MemoryEstimate { weights, kv_cache, scratch })
}

/// `MemAvailable` from /proc/meminfo, in bytes (None where unknown).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
