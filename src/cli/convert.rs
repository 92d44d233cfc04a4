//! `qllama convert`: a Hugging Face Llama checkpoint folder → one GGUF file.

use crate::convert::{convert, ConvertOptions, OutType};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face checkpoint folder (config.json, safetensors, tokenizer).
    pub hf_dir: PathBuf,
    /// Output GGUF file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weight type.
    #[arg(long = "type", value_enum, default_value = "f16")]
    pub out_type: OutType,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let opts = ConvertOptions {
        dir: args.hf_dir,
        out: args.output,
        out_type: args.out_type,
        force: args.force,
        progress: true,
    };
    let s = convert(&opts)?;
    eprintln!(
        "wrote {} ({}, {} tensors, {} parameters, {:.1} MiB, {:.2} bits/weight) in {:.1}s",
        opts.out.display(),
        opts.out_type.name(),
        s.tensors,
        s.params,
        s.bytes as f64 / (1u64 << 20) as f64,
        8.0 * s.bytes as f64 / s.params.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
