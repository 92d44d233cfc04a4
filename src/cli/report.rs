//! `qllama report`: accuracy against size and speed for every type.

use super::run::physical_cores;
use crate::convert::OutType;
use crate::eval::report::{run_report, write_report, ReportOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face checkpoint folder.
    pub hf_dir: PathBuf,
    /// Text to measure perplexity on.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Folder for the converted files, report.md and report.svg.
    #[arg(short, long, default_value = "report")]
    pub output: PathBuf,
    /// Types to include (default: all).
    #[arg(long = "type", value_enum, value_delimiter = ',')]
    pub types: Vec<OutType>,
    /// Perplexity context.
    #[arg(short = 'c', long = "ctx", default_value_t = 256)]
    pub ctx: usize,
    /// Evaluate only the first N chunks (default: all).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    /// Prompt tokens for the speed test.
    #[arg(short = 'p', long, default_value_t = 128)]
    pub n_prompt: usize,
    /// Generated tokens for the speed test.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub n_gen: usize,
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ReportOptions {
        hf_dir: args.hf_dir,
        text: args.file,
        out_dir: args.output,
        types: if args.types.is_empty() { OutType::ALL.to_vec() } else { args.types },
        n_ctx: args.ctx,
        chunks: args.chunks,
        bench_prompt: args.n_prompt,
        bench_gen: args.n_gen,
        bench_reps: args.reps.max(1),
        threads: args.threads.unwrap_or_else(physical_cores).max(1),
    };
    let command =
        std::env::args().map(|a| if a.contains(' ') { format!("'{a}'") } else { a }).collect::<Vec<_>>().join(" ");
    let command = command.replacen(&std::env::args().next().unwrap_or_default(), "qllama", 1);
    let rows = run_report(&opts)?;
    let (md, svg) = write_report(&rows, &opts, &command)?;
    print!("{}", std::fs::read_to_string(&md)?);
    eprintln!("wrote {} and {}", md.display(), svg.display());
    Ok(())
}
