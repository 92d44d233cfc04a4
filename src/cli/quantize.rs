//! `qllama quantize`: requantize an F32/F16/BF16 GGUF file.

use crate::convert::{requant::requantize, OutType};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Input GGUF file (F32, F16 or BF16 weights).
    pub input: PathBuf,
    /// Output GGUF file.
    pub output: PathBuf,
    /// Weight type.
    #[arg(long = "type", value_enum)]
    pub out_type: OutType,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let s = requantize(&args.input, &args.output, args.out_type, args.force, true)?;
    eprintln!(
        "wrote {} ({}, {} tensors, {:.1} MiB, {:.2} bits/weight) in {:.1}s",
        args.output.display(),
        args.out_type.name(),
        s.tensors,
        s.bytes as f64 / (1u64 << 20) as f64,
        8.0 * s.bytes as f64 / s.params.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
