//! Hugging Face checkpoint → GGUF conversion, and requantization of F32/F16/BF16
//! GGUF files. The output matches llama.cpp's `convert_hf_to_gguf.py` for
//! Llama (metadata keys and order, tensor names and order, the Q/K row
//! permutation, norms in F32) followed by `llama-quantize` for the legacy
//! quantized types.
//!
//! Everything is validated before the first byte is written; tensors are then
//! streamed a chunk of rows at a time (convert to f32, permute, quantize rows
//! across rayon threads, write), so the model is never in memory.

pub mod config;
pub mod names;
pub mod policy;
pub mod requant;
pub mod safetensors;
pub mod tokenizer_meta;

use crate::gguf::{GgufValue, GgufWriter, TensorPlan};
use anyhow::{bail, Context, Result};
use config::{HParams, RopeScaling};
use names::Role;
use qllama_kernels::{quantize_rows_par, GgmlDType};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// `general.quantization_version` written by current llama.cpp.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Bytes of f32 converted per step: bounds memory for any tensor size while
/// giving every thread plenty of rows.
const CHUNK_F32_BYTES: usize = 64 << 20;

/// The output types `convert` and `quantize` offer: plain types, and
/// llama.cpp's K-quant mixes (named as `llama-quantize` names them), where
/// [`policy::tensor_type`] picks each tensor's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[allow(non_camel_case_types)] // llama.cpp's names: Q4_K_M reads better than Q4KM
pub enum OutType {
    #[value(name = "f32")]
    F32,
    #[value(name = "f16")]
    F16,
    #[value(name = "bf16")]
    BF16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q6_k")]
    Q6_K,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q5_k_m")]
    Q5_K_M,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q5_k_s")]
    Q5_K_S,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q4_k_m")]
    Q4_K_M,
    #[value(name = "q4_k_s")]
    Q4_K_S,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q3_k_m")]
    Q3_K_M,
    #[value(name = "q2_k")]
    Q2_K,
}

impl OutType {
    /// From most to fewest bits per weight (as `llama-quantize` lists their
    /// sizes for Llama 2 7B; Q5_0 and Q5_K_S tie).
    pub const ALL: [OutType; 15] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q8_0,
        Self::Q6_K,
        Self::Q5_1,
        Self::Q5_K_M,
        Self::Q5_0,
        Self::Q5_K_S,
        Self::Q4_1,
        Self::Q4_K_M,
        Self::Q4_K_S,
        Self::Q4_0,
        Self::Q3_K_M,
        Self::Q2_K,
    ];

    /// The type of the bulk of the weights (llama.cpp's
    /// `llama_ftype_get_default_type`).
    pub fn dtype(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::BF16 => GgmlDType::BF16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q6_K => GgmlDType::Q6K,
            Self::Q5_K_M | Self::Q5_K_S => GgmlDType::Q5K,
            Self::Q4_K_M | Self::Q4_K_S => GgmlDType::Q4K,
            Self::Q3_K_M => GgmlDType::Q3K,
            Self::Q2_K => GgmlDType::Q2K,
        }
    }

    /// llama.cpp's `llama_ftype` (`general.file_type`).
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
            Self::Q2_K => 10,
            Self::Q3_K_M => 12,
            Self::Q4_K_S => 14,
            Self::Q4_K_M => 15,
            Self::Q5_K_S => 16,
            Self::Q5_K_M => 17,
            Self::Q6_K => 18,
            Self::BF16 => 32,
        }
    }

    /// The name `--type` takes (`q4_0`, `q4_k_m`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q6_K => "q6_k",
            Self::Q5_1 => "q5_1",
            Self::Q5_K_M => "q5_k_m",
            Self::Q5_0 => "q5_0",
            Self::Q5_K_S => "q5_k_s",
            Self::Q4_1 => "q4_1",
            Self::Q4_K_M => "q4_k_m",
            Self::Q4_K_S => "q4_k_s",
            Self::Q4_0 => "q4_0",
            Self::Q3_K_M => "q3_k_m",
            Self::Q2_K => "q2_k",
        }
    }
}

pub struct ConvertOptions {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub out_type: OutType,
    pub force: bool,
    /// Show a progress bar on stderr (hidden anyway when it is not a terminal).
    pub progress: bool,
}

/// What was written.
#[derive(Debug)]
pub struct Summary {
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
}

/// One output tensor: where its rows come from and what it becomes.
struct Job {
    src: safetensors::SrcTensor,
    role: Role,
    rows: usize,
    cols: usize,
}

/// Convert a Hugging Face Llama checkpoint folder to a GGUF file.
pub fn convert(opts: &ConvertOptions) -> Result<Summary> {
    let dir = &opts.dir;
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!("{}: missing (is this a Hugging Face checkpoint folder?)", config_path.display());
    }
    let hp = HParams::from_file(&config_path)?;
    let mut ck = safetensors::Checkpoint::open(dir)?;

    let mut inputs: Vec<PathBuf> = vec![config_path.clone()];
    inputs.extend(ck.paths().map(Path::to_path_buf));
    inputs.extend(tokenizer_meta::input_files(dir));
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        inputs.push(index);
    }
    check_output(&opts.out, &inputs, opts.force)?;

    let model = policy::ModelInfo {
        n_layer: hp.n_layers,
        n_head: hp.n_heads,
        n_head_kv: hp.n_kv_heads,
        tied_output: ck.get("lm_head.weight").is_none(),
    };

    // Map and check every tensor before writing anything.
    let mut writer = GgufWriter::new();
    let mut jobs = Vec::new();
    for (name, src) in &ck.tensors {
        if names::is_ignored(name) {
            continue;
        }
        let shard = ck.shard_path(src).display();
        let m = names::map_name(name, &hp).with_context(|| {
            format!("{shard}: unexpected tensor {name} (not part of a {}-layer Llama)", hp.n_layers)
        })?;
        if src.shape != m.shape {
            bail!("{shard}: tensor {name} has shape {:?}, expected {:?} from config.json", src.shape, m.shape);
        }
        let cols = *m.shape.last().expect("shapes are non-empty");
        let rows = m.shape.iter().product::<usize>() / cols;
        let dtype = if m.role == Role::Norm || !policy::allows_quantization(&m.gguf_name, m.shape.len()) {
            // The converter writes norms and 1-D tensors as F32.
            GgmlDType::F32
        } else {
            policy::tensor_type(opts.out_type, &model, &m.gguf_name, cols)
        };
        let dims = m.shape.iter().rev().map(|&d| d as u64).collect();
        writer.add_tensor(TensorPlan { name: m.gguf_name, dims, dtype });
        jobs.push(Job { src: src.clone(), role: m.role, rows, cols });
    }
    for name in names::required_names(&hp) {
        if ck.get(&name).is_none() {
            bail!("{}: tensor {name} is missing from every shard", dir.display());
        }
    }

    let params: u64 = jobs.iter().map(|j| (j.rows * j.cols) as u64).sum();
    for (k, v) in general_metadata(dir, &hp, opts.out_type, params)? {
        writer.set(&k, v);
    }
    for (k, v) in tokenizer_meta::tokenizer_metadata(dir, hp.vocab_size, &hp.token_ids)? {
        writer.set(&k, v);
    }

    let total: u64 = writer.tensors().iter().map(plan_bytes).sum();
    let bar = progress_bar(opts.progress, total);
    ck.advise_sequential();
    writer.write(&opts.out, opts.force, |i, plan, sink| {
        let job = &jobs[i];
        if i > 0 {
            ck.release(&jobs[i - 1].src);
        }
        bar.set_message(format!("{}/{} {}", i + 1, jobs.len(), plan.name));
        let bytes = ck.bytes(&job.src);
        let row_in = job.cols * job.src.dtype.size();
        stream_rows(plan.dtype, job.rows, job.cols, sink, &bar, |r, dst| {
            let src_row = match job.role {
                Role::Rope { n_head } => names::permuted_src_row(r, job.rows, n_head),
                _ => r,
            };
            job.src.dtype.to_f32(&bytes[src_row * row_in..(src_row + 1) * row_in], dst);
        })?;
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(Summary { tensors: jobs.len(), params, bytes: std::fs::metadata(&opts.out).map(|m| m.len()).unwrap_or(total) })
}

/// Bytes of a planned tensor's data (plans are validated before writing).
fn plan_bytes(p: &TensorPlan) -> u64 {
    p.byte_size().unwrap_or(0)
}

/// Write a `rows × cols` tensor as `dtype`, a chunk of rows at a time:
/// `fill(r, dst)` decodes row `r` into f32; rows are filled and quantized in
/// parallel.
fn stream_rows(
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    sink: &mut dyn std::io::Write,
    bar: &indicatif::ProgressBar,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> std::io::Result<()> {
    let row_bytes = dtype
        .row_bytes(cols)
        .ok_or_else(|| std::io::Error::other(format!("row of {cols} is not whole {} blocks", dtype.name())))?;
    let chunk_rows = (CHUNK_F32_BYTES / 4 / cols).clamp(1, rows.max(1));
    let mut f32_buf = vec![0f32; chunk_rows * cols];
    // The kernels cast the output to blocks, which need 4-byte alignment at
    // most: over-allocate and start at an aligned offset (no unsafe needed).
    let mut out_alloc = vec![0u8; chunk_rows * row_bytes + 3];
    let off = out_alloc.as_ptr().align_offset(4);
    let out_buf = &mut out_alloc[off..off + chunk_rows * row_bytes];
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk_rows.min(rows - r0);
        let (src, dst) = (&mut f32_buf[..n * cols], &mut out_buf[..n * row_bytes]);
        src.par_chunks_mut(cols).enumerate().for_each(|(k, row)| fill(r0 + k, row));
        quantize_rows_par(dtype, src, cols, dst);
        sink.write_all(dst)?;
        bar.inc(dst.len() as u64);
        r0 += n;
    }
    Ok(())
}

fn progress_bar(show: bool, total_bytes: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}) tensor {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Refuse an output path that is one of the inputs, or that exists (unless
/// `force`), before any work is done.
pub fn check_output(out: &Path, inputs: &[PathBuf], force: bool) -> Result<()> {
    if out.is_dir() {
        bail!("{}: output path is a folder", out.display());
    }
    let canon_out = canonical_output(out);
    for input in inputs {
        if let (Some(o), Ok(i)) = (&canon_out, input.canonicalize()) {
            if *o == i {
                bail!("{}: output path is an input file", out.display());
            }
        }
    }
    if out.exists() && !force {
        bail!("{}: already exists (use --force to overwrite)", out.display());
    }
    Ok(())
}

/// The canonical path `out` would have (its folder canonicalized; the file
/// itself need not exist).
fn canonical_output(out: &Path) -> Option<PathBuf> {
    if let Ok(p) = out.canonicalize() {
        return Some(p);
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(parent.canonicalize().ok()?.join(out.file_name()?))
}

/// `general.*` and `llama.*` keys, in the order llama.cpp writes them.
fn general_metadata(dir: &Path, hp: &HParams, out: OutType, params: u64) -> Result<Vec<(String, GgufValue)>> {
    let mut md: Vec<(String, GgufValue)> = Vec::new();
    let mut put = |k: &str, v: GgufValue| md.push((k.to_string(), v));
    let u32v = |n: usize| GgufValue::U32(n as u32);
    put("general.architecture", GgufValue::String("llama".into()));
    put("general.type", GgufValue::String("model".into()));
    for (k, v) in sampling_metadata(dir)? {
        put(&k, v);
    }
    put("general.name", GgufValue::String(model_name(dir)));
    put("general.size_label", GgufValue::String(size_label(params)));
    put("llama.block_count", u32v(hp.n_layers));
    put("llama.context_length", u32v(hp.context_length));
    put("llama.embedding_length", u32v(hp.hidden_size));
    put("llama.feed_forward_length", u32v(hp.intermediate_size));
    put("llama.attention.head_count", u32v(hp.n_heads));
    put("llama.attention.head_count_kv", u32v(hp.n_kv_heads));
    if let RopeScaling::Linear { factor } = hp.rope_scaling {
        put("llama.rope.scaling.type", GgufValue::String("linear".into()));
        put("llama.rope.scaling.factor", GgufValue::F32(factor));
    }
    put("llama.rope.freq_base", GgufValue::F32(hp.rope_theta));
    put("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(hp.rms_norm_eps));
    put("llama.attention.key_length", u32v(hp.head_dim));
    put("llama.attention.value_length", u32v(hp.head_dim));
    put("general.file_type", GgufValue::U32(out.file_type()));
    put("llama.vocab_size", u32v(hp.vocab_size));
    put("llama.rope.dimension_count", u32v(hp.head_dim));
    put("general.quantization_version", GgufValue::U32(QUANTIZATION_VERSION));
    Ok(md)
}

/// `general.sampling.*` from `generation_config.json`, as llama.cpp copies them.
fn sampling_metadata(dir: &Path) -> Result<Vec<(String, GgufValue)>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let mut md = Vec::new();
    let int = |x: &serde_json::Value| x.as_i64().and_then(|i| i32::try_from(i).ok()).map(GgufValue::I32);
    let float = |x: &serde_json::Value| x.as_f64().map(|f| GgufValue::F32(f as f32));
    type Conv<'a> = &'a dyn Fn(&serde_json::Value) -> Option<GgufValue>;
    let keys: [(&str, &str, Conv); 6] = [
        ("top_k", "top_k", &int),
        ("top_p", "top_p", &float),
        ("min_p", "min_p", &float),
        ("temperature", "temp", &float),
        ("penalty_last_n", "penalty_last_n", &int),
        ("repetition_penalty", "penalty_repeat", &float),
    ];
    for (json_key, gguf_key, conv) in keys {
        if let Some(val) = v.get(json_key).and_then(conv) {
            md.push((format!("general.sampling.{gguf_key}"), val));
        }
    }
    Ok(md)
}

/// A readable model name from the folder name (`tiny-llama2` → `Tiny Llama2`).
fn model_name(dir: &Path) -> String {
    let base = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let base = base.unwrap_or_else(|| "model".into());
    base.split(['-', '_', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// gguf-py's parameter-count label: `19M`, `6.7B`, `500K`.
pub fn size_label(params: u64) -> String {
    let p = params as f64;
    let (scaled, suffix) = if p > 1e12 {
        (p * 1e-12, "T")
    } else if p > 1e9 {
        (p * 1e-9, "B")
    } else if p > 1e6 {
        (p * 1e-6, "M")
    } else {
        (p * 1e-3, "K")
    };
    let digits = format!("{}", scaled.round() as u64).trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_match_gguf_py() {
        assert_eq!(size_label(19_400_960), "19M");
        assert_eq!(size_label(6_738_415_616), "6.7B");
        assert_eq!(size_label(500_000), "500K");
    }

    #[test]
    fn type_names_are_cli_names() {
        use clap::ValueEnum;
        for t in OutType::ALL {
            assert_eq!(t.to_possible_value().unwrap().get_name(), t.name());
        }
        assert_eq!(OutType::value_variants().len(), OutType::ALL.len());
    }
}
