//! Command-line interface: one file per subcommand, each a thin layer over
//! the library. Human-facing messages go to stderr; generated text to stdout.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod chat;
pub mod common;
pub mod convert;
pub mod inspect;
pub mod perplexity;
pub mod quantize;
pub mod report;
pub mod run;
pub mod serve;
pub mod synth;
pub mod tokenize;

#[derive(Parser)]
#[command(name = "qllama", version, about = "Quantized Llama 2 on the CPU: convert, run, chat, measure")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Convert a Hugging Face Llama checkpoint to GGUF.
    Convert(convert::Args),
    /// Requantize an F32/F16/BF16 GGUF file to another type.
    Quantize(quantize::Args),
    /// Print a GGUF file's metadata, tensors and memory estimate.
    Inspect(inspect::Args),
    /// Print the tokens of a text.
    Tokenize(tokenize::Args),
    /// Generate a completion of a prompt.
    Run(run::Args),
    /// Chat interactively (or from piped input).
    Chat(chat::Args),
    /// Convert to every type and report accuracy against size and speed.
    Report(report::Args),
    /// Prompt-processing and generation speed, as llama-bench prints it.
    Bench(bench::Args),
    /// Perplexity of a text (and KL divergence against saved logits), as llama-perplexity.
    Perplexity(perplexity::Args),
    /// Write a random-weight GGUF at a Llama 2 shape (for speed tests).
    Synth(synth::Args),
    /// Serve the OpenAI API (chat and completions) and a chat page over HTTP.
    Serve(serve::Args),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
    }
}
