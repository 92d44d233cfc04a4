//! `qllama serve`: an OpenAI-compatible HTTP server with parallel streams
//! (continuous batching over KV cache slots), prompt reuse, and a chat page.
//!
//! One scheduler thread owns the model and the KV cache ([`scheduler`]);
//! HTTP handlers on tokio/axum ([`http`]) check and tokenize requests, send
//! them over a bounded channel, and relay the tokens that come back.

pub mod api;
pub mod http;
pub mod scheduler;
pub mod stop;

use crate::chat::ChatTemplate;
use crate::model::{KvType, Model};
use crate::tokenizer::Tokenizer;
use anyhow::Context as _;
use scheduler::{Scheduler, SchedulerConfig, Stats};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub n_parallel: usize,
    /// Context positions per slot (the total divided by the slots).
    pub n_ctx_slot: usize,
    pub n_ctx: usize,
    pub prompt_chunk: usize,
    pub queue: usize,
    pub api_key: Option<String>,
    pub threads: usize,
    pub threads_batch: usize,
    pub kv_type: KvType,
    /// How long running streams get to finish after Ctrl-C or SIGTERM.
    pub grace: Duration,
}

/// Serve `model` until Ctrl-C or SIGTERM.
pub fn serve(model: Model, cfg: ServeConfig) -> anyhow::Result<()> {
    let path = model.file.path.clone();
    let tok = Arc::new(Tokenizer::from_gguf(&model.file)?);
    let source = model.file.get_str("tokenizer.chat_template")?;
    let template = ChatTemplate::new(source, tok.piece(tok.bos_id()), tok.piece(tok.eos_id()))
        .with_context(|| format!("{}", path.display()))?;
    let stats = Arc::new(Stats::default());
    let sched_cfg = SchedulerConfig {
        n_parallel: cfg.n_parallel,
        n_ctx_slot: cfg.n_ctx_slot,
        prompt_chunk: cfg.prompt_chunk,
        kv_type: cfg.kv_type,
        threads: cfg.threads,
        threads_batch: cfg.threads_batch,
    };
    let scheduler = Scheduler::new(model, tok.clone(), &sched_cfg, stats.clone())?;
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(cfg.queue.max(1));
    std::thread::Builder::new()
        .name("qllama-scheduler".into())
        .spawn(move || scheduler.run(jobs_rx))
        .context("cannot start the scheduler thread")?;

    let file_name = path.file_name().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let model_id = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let state = Arc::new(http::AppState {
        tok,
        template,
        jobs: jobs_tx,
        model_id,
        model_file: file_name,
        n_ctx_slot: cfg.n_ctx_slot,
        n_ctx: cfg.n_ctx,
        n_parallel: cfg.n_parallel,
        api_key: cfg.api_key.clone(),
        stats,
        started: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        next_id: AtomicU64::new(0),
    });
    let app = http::router(state);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        // Tests read this line to learn the port when started with --port 0.
        eprintln!("listening on http://{local}");
        let stopping = Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            eprintln!("shutting down: no new requests; letting running streams finish");
            notify.notify_one();
        });
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            r = &mut server => r??,
            _ = stopping.notified() => {
                match tokio::time::timeout(cfg.grace, server).await {
                    Ok(r) => r??,
                    Err(_) => eprintln!("streams still running after {:?}; closing them", cfg.grace),
                }
            }
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
