//! `qllama chat`: an interactive chat in the terminal, or scripted from a
//! pipe (one user message per line).

use super::common::SamplingArgs;
use crate::chat::{ChatSession, StopReason, TurnStats};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context as _};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the model shipped in models/).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Most tokens per answer (default: half the context).
    #[arg(short = 'n', long)]
    pub n_predict: Option<usize>,
    /// Threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Keep the KV cache in F32 instead of F16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Run even when the memory estimate exceeds the available memory.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let params = args.sampling.params()?;
    let threads = super::common::threads(args.threads)?;
    if args.n_predict == Some(0) {
        bail!("-n must be at least 1");
    }
    let t0 = Instant::now();
    let super::common::Opened { path, file, n_ctx, kv_type } =
        super::common::open_model(args.model.as_deref(), args.ctx, args.kv_f32, args.force)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start threads")?;
    pool.install(|| {
        let model = Model::from_file(file)?;
        let tok = Tokenizer::from_gguf(&model.file)?;
        let mut chat = ChatSession::new(&model, &tok, n_ctx, kv_type, params, args.system.clone())?;
        if let Some(n) = args.n_predict {
            chat.max_answer = n;
        }
        eprintln!(
            "loaded {} in {:.2}s (context {n_ctx}, {threads} threads); /reset forgets the conversation, /exit quits, Ctrl-C stops an answer",
            path.display(),
            t0.elapsed().as_secs_f64()
        );
        if let Some(note) = model.load_note() {
            eprintln!("{note}");
        }
        chat_loop(&mut chat)
    })
}

fn chat_loop(chat: &mut ChatSession) -> anyhow::Result<()> {
    // Ctrl-C while answering stops the answer; at the prompt it quits.
    let generating = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (generating, stop) = (generating.clone(), stop.clone());
        let _ = ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                stop.store(true, Ordering::SeqCst);
            } else {
                eprintln!();
                std::process::exit(130);
            }
        });
    }
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading the chat input")?;
        let msg = line.trim();
        match msg {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("[conversation reset]");
                continue;
            }
            _ => {}
        }
        stop.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout().lock();
        let result = chat.respond(msg, &stop, |piece| {
            out.write_all(piece.as_bytes())?;
            out.flush()?;
            Ok(())
        });
        generating.store(false, Ordering::SeqCst);
        let (_, stats) = result?;
        writeln!(out)?;
        out.flush()?;
        report(&stats, chat.cached_tokens().len(), chat.n_ctx());
    }
    Ok(())
}

fn report(s: &TurnStats, cached: usize, n_ctx: usize) {
    let rate = |n: usize, secs: f64| n as f64 / secs.max(1e-9);
    if s.turns_dropped > 0 {
        eprintln!("[dropped the {} oldest exchange(s) to fit the context]", s.turns_dropped);
    }
    match s.stop {
        StopReason::Interrupted => eprintln!("[stopped]"),
        StopReason::ContextFull => eprintln!("[the context is full: the next message drops the oldest turns]"),
        StopReason::MaxTokens => eprintln!("[answer reached the token limit]"),
        StopReason::EndOfText => {}
    }
    eprintln!(
        "[prompt: {} new tokens evaluated, {} reused from the cache, {:.1} t/s | answer: {} tokens, {:.1} t/s | context {cached}/{n_ctx}]",
        s.prompt_evaluated,
        s.prompt_reused,
        rate(s.prompt_evaluated, s.prompt_secs),
        s.generated,
        rate(s.generated, s.gen_secs),
    );
}
