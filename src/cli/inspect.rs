//! `qllama inspect`: a GGUF file's metadata, tensor table and size.

use crate::gguf::GgufFile;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file to describe.
    pub file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.file)?;
    print!("{}", report(&file));
    Ok(())
}

/// The whole report as text (kept separate from printing so it can be tested).
pub fn report(file: &GgufFile) -> String {
    let h = &file.header;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}: GGUF v{}, {} bytes", file.path.display(), h.version, file.bytes().len());
    let _ = writeln!(out, "alignment {}, data section at offset {}", h.alignment, h.data_offset);

    let _ = writeln!(out, "\nmetadata ({} keys):", h.metadata.len());
    let key_width = h.metadata.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &h.metadata {
        let _ = writeln!(out, "  {k:key_width$}  {}", v.display_short());
    }

    let _ = writeln!(out, "\ntensors ({}):", h.tensors.len());
    let name_width = h.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "  {:name_width$}  {:6}  {:>18}  {:>12}", "name", "type", "shape", "bytes");
    let (mut bytes, mut elements) = (0u64, 0u64);
    for t in &h.tensors {
        let shape = t.dims.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
        let _ = writeln!(out, "  {:name_width$}  {:6}  {shape:>18}  {:>12}", t.name, t.dtype.name(), t.size);
        bytes += t.size;
        elements += t.n_elements();
    }

    let bpw = if elements > 0 { bytes as f64 * 8.0 / elements as f64 } else { 0.0 };
    let _ = writeln!(
        out,
        "\ntotal: {elements} weights in {bytes} bytes ({:.2} MiB), {bpw:.3} bits per weight",
        bytes as f64 / (1u64 << 20) as f64
    );
    if let Some(estimate) = memory_estimate(file) {
        let _ = writeln!(out, "{estimate}");
    }
    out
}

/// The memory needed to run the model at its default context (the same
/// estimate `run` prints before loading); nothing for files we cannot run.
fn memory_estimate(file: &GgufFile) -> Option<String> {
    let hp = crate::model::HParams::from_gguf(file).ok()?;
    let n_ctx = hp.n_ctx_train.min(4096);
    let est = crate::model::estimate_memory(file, n_ctx, crate::model::KvType::F16, crate::model::MAX_BATCH).ok()?;
    Some(format!("memory to run at context {n_ctx}: {est}"))
}
