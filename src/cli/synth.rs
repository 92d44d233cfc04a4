//! `qllama synth`: a random-weight GGUF at the published Llama 2 shapes, so
//! that speed can be measured at real size without downloading a model.
//!
//! Weights are roughly normal (std 0.02, as trained Llama weights are), norms
//! are 1, and each tensor gets the type `convert --type T` would give it
//! (llama.cpp's policy), so the file matches a real one byte count for byte
//! count. The tokenizer metadata is copied from a small GGUF file so the
//! result loads, tokenizes and runs like any other model. Tensors are
//! generated and quantized one at a time, a chunk of rows at a time, across
//! threads: memory stays small whatever the shape.

use crate::convert::{policy, size_label, OutType, QUANTIZATION_VERSION};
use crate::gguf::{GgufFile, GgufValue, GgufWriter, TensorPlan};
use anyhow::{bail, Context};
use qllama_kernels::{quantize_rows_par, GgmlDType};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// 288 wide, 6 layers (the llama2.c "stories15M" shape, Llama 2 vocabulary).
    Tiny,
    #[value(name = "7b")]
    B7,
    #[value(name = "13b")]
    B13,
    #[value(name = "70b")]
    B70,
}

/// The hyperparameters a shape fixes.
struct Dims {
    name: &'static str,
    n_embd: usize,
    n_ff: usize,
    n_layer: usize,
    n_head: usize,
    n_head_kv: usize,
    n_ctx: usize,
}

impl Shape {
    /// Llama 2's published configurations (the 70B uses grouped-query
    /// attention with 8 KV heads).
    fn dims(self) -> Dims {
        let d = |name, n_embd, n_ff, n_layer, n_head, n_head_kv, n_ctx| Dims {
            name,
            n_embd,
            n_ff,
            n_layer,
            n_head,
            n_head_kv,
            n_ctx,
        };
        match self {
            Shape::Tiny => d("synth-tiny", 288, 768, 6, 6, 6, 256),
            Shape::B7 => d("synth-7b", 4096, 11008, 32, 32, 32, 4096),
            Shape::B13 => d("synth-13b", 5120, 13824, 40, 40, 40, 4096),
            Shape::B70 => d("synth-70b", 8192, 28672, 80, 64, 8, 4096),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Model shape.
    #[arg(long, value_enum)]
    pub shape: Shape,
    /// Weight type (as `convert --type`).
    #[arg(long = "type", value_enum, default_value = "q4_0")]
    pub out_type: OutType,
    /// Output GGUF file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// GGUF file whose `tokenizer.*` metadata is copied (a Llama 2 vocabulary
    /// of 32000 tokens).
    #[arg(long, default_value = "models/tiny-llama2-q8_0.gguf")]
    pub vocab_from: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Rows of f32 generated and quantized per step (about 64 MiB of f32).
const CHUNK_VALUES: usize = 16 << 20;

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let d = args.shape.dims();
    let vocab_path = find_vocab(&args.vocab_from)?;
    let vocab = GgufFile::open(&vocab_path)?;
    let tokenizer: Vec<(String, GgufValue)> =
        vocab.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect();
    let n_vocab = match vocab.get("tokenizer.ggml.tokens") {
        Some(GgufValue::Array(_, items)) => items.len(),
        _ => bail!("{}: no tokenizer.ggml.tokens array to copy", vocab_path.display()),
    };

    // Tensors in llama.cpp's order: (name, rows, cols, is a norm).
    let mut tensors: Vec<(String, usize, usize, bool)> = vec![("token_embd.weight".into(), n_vocab, d.n_embd, false)];
    let head_dim = d.n_embd / d.n_head;
    let kv_dim = head_dim * d.n_head_kv;
    for l in 0..d.n_layer {
        let t = |s: &str, rows, cols, norm| (format!("blk.{l}.{s}.weight"), rows, cols, norm);
        tensors.extend([
            t("attn_norm", 1, d.n_embd, true),
            t("attn_q", d.n_embd, d.n_embd, false),
            t("attn_k", kv_dim, d.n_embd, false),
            t("attn_v", kv_dim, d.n_embd, false),
            t("attn_output", d.n_embd, d.n_embd, false),
            t("ffn_norm", 1, d.n_embd, true),
            t("ffn_gate", d.n_ff, d.n_embd, false),
            t("ffn_up", d.n_ff, d.n_embd, false),
            t("ffn_down", d.n_embd, d.n_ff, false),
        ]);
    }
    tensors.push(("output_norm.weight".into(), 1, d.n_embd, true));
    tensors.push(("output.weight".into(), n_vocab, d.n_embd, false));

    let info = policy::ModelInfo { n_layer: d.n_layer, n_head: d.n_head, n_head_kv: d.n_head_kv, tied_output: false };
    let mut writer = GgufWriter::new();
    let u32v = |n: usize| GgufValue::U32(n as u32);
    let params: u64 = tensors.iter().map(|t| (t.1 * t.2) as u64).sum();
    let meta = [
        ("general.architecture", GgufValue::String("llama".into())),
        ("general.type", GgufValue::String("model".into())),
        ("general.name", GgufValue::String(d.name.into())),
        ("general.size_label", GgufValue::String(size_label(params))),
        ("llama.block_count", u32v(d.n_layer)),
        ("llama.context_length", u32v(d.n_ctx)),
        ("llama.embedding_length", u32v(d.n_embd)),
        ("llama.feed_forward_length", u32v(d.n_ff)),
        ("llama.attention.head_count", u32v(d.n_head)),
        ("llama.attention.head_count_kv", u32v(d.n_head_kv)),
        ("llama.rope.freq_base", GgufValue::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5)),
        ("llama.attention.key_length", u32v(head_dim)),
        ("llama.attention.value_length", u32v(head_dim)),
        ("general.file_type", GgufValue::U32(args.out_type.file_type())),
        ("llama.vocab_size", u32v(n_vocab)),
        ("llama.rope.dimension_count", u32v(head_dim)),
        ("general.quantization_version", GgufValue::U32(QUANTIZATION_VERSION)),
    ];
    for (k, v) in meta.into_iter() {
        writer.set(k, v);
    }
    for (k, v) in tokenizer {
        writer.set(&k, v);
    }
    for (name, rows, cols, norm) in &tensors {
        let dtype = if *norm { GgmlDType::F32 } else { policy::tensor_type(args.out_type, &info, name, *cols) };
        let dims = if *norm { vec![*cols as u64] } else { vec![*cols as u64, *rows as u64] };
        writer.add_tensor(TensorPlan { name: name.clone(), dims, dtype });
    }

    writer.write(&args.output, args.force, |i, plan, sink| {
        let (_, rows, cols, norm) = &tensors[i];
        let seed = args.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        write_random(plan.dtype, *rows, *cols, if *norm { (1.0, 0.0) } else { (0.0, 0.02) }, seed, sink)
    })?;
    let bytes = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({} {}, {} tensors, {} parameters, {:.1} MiB) in {:.1}s",
        args.output.display(),
        d.name,
        args.out_type.name(),
        tensors.len(),
        params,
        bytes as f64 / (1u64 << 20) as f64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The vocabulary file as given, or else under this source tree (so the
/// default works from any directory in a checkout).
fn find_vocab(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() || path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if in_tree.is_file() {
        return Ok(in_tree);
    }
    Err(anyhow::anyhow!("{}: not found (pass a GGUF file with a Llama 2 tokenizer as --vocab-from)", path.display()))
        .context("reading the tokenizer to copy")
}

/// Write `rows × cols` values of `mean + std · N(0,1)` (approximately) as
/// `dtype`: each row has its own generator, so the bytes do not depend on
/// how rows are split across threads.
fn write_random(
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    (mean, std): (f32, f32),
    seed: u64,
    sink: &mut dyn Write,
) -> std::io::Result<()> {
    let row_bytes = dtype.row_bytes(cols).ok_or_else(|| std::io::Error::other("row is not whole blocks"))?;
    let chunk_rows = (CHUNK_VALUES / cols).clamp(1, rows);
    let mut values = vec![0f32; chunk_rows * cols];
    // Blocks need 4-byte alignment at most: over-allocate and start at an
    // aligned offset (no unsafe needed).
    let mut out_alloc = vec![0u8; chunk_rows * row_bytes + 3];
    let off = out_alloc.as_ptr().align_offset(4);
    let out = &mut out_alloc[off..off + chunk_rows * row_bytes];
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk_rows.min(rows - r0);
        let src = &mut values[..n * cols];
        src.par_chunks_mut(cols).enumerate().for_each(|(k, row)| {
            let mut state = splitmix(seed ^ splitmix((r0 + k) as u64));
            for v in row.iter_mut() {
                *v = mean + std * approx_normal(&mut state);
            }
        });
        let dst = &mut out[..n * row_bytes];
        quantize_rows_par(dtype, src, cols, dst);
        sink.write_all(dst)?;
        r0 += n;
    }
    Ok(())
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal, approximately: the sum of four uniform 16-bit values
/// from one xorshift step (Irwin–Hall), centred and scaled to unit variance.
/// Far cheaper than Box–Muller, and the shape is close enough for weights
/// whose only job is to cost what real ones cost.
#[inline]
fn approx_normal(state: &mut u64) -> f32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    let sum = (x & 0xffff) + (x >> 16 & 0xffff) + (x >> 32 & 0xffff) + (x >> 48);
    // Four U(0, 65536): mean 2·65536, variance 4·65536²/12.
    const SD: f32 = 65536.0 * 0.577_350_26; // sqrt(4/12) = 1/sqrt(3)
    (sum as f32 - 131_072.0) / SD
}
