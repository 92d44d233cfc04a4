//! The HTTP side: routes, request checking, and turning the scheduler's
//! events into OpenAI responses (JSON or server-sent events).

use super::api::{
    parse_body, ApiError, ChatRequest, CommonParams, CompletionRequest, Content, FinishReason, Prompt, Stop, Usage,
};
use super::scheduler::{Event, Job, Stats};
use crate::chat::{ChatTemplate, Message, Role};
use crate::sampling::SamplerParams;
use crate::tokenizer::Tokenizer;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// Largest request body accepted (a long conversation is tens of KiB).
pub const BODY_LIMIT: usize = 2 << 20;

/// Most stop strings a request may give.
const MAX_STOPS: usize = 16;

pub struct AppState {
    pub tok: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub jobs: mpsc::Sender<Job>,
    /// The name clients use (the file's stem), and the file name.
    pub model_id: String,
    pub model_file: String,
    pub n_ctx_slot: usize,
    pub n_ctx: usize,
    pub n_parallel: usize,
    pub api_key: Option<String>,
    pub stats: Arc<Stats>,
    pub started: u64,
    pub next_id: AtomicU64,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/", get(page))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// With `--api-key`, /v1 routes need `Authorization: Bearer KEY`; the key is
/// compared in constant time.
async fn require_key(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer KEY)")
                .into_response();
        }
    }
    next.run(req).await
}

async fn health(State(st): State<Shared>) -> Json<Value> {
    let busy = st.stats.slots_busy.load(Ordering::Relaxed);
    Json(json!({
        "status": "ok",
        "slots_idle": st.n_parallel.saturating_sub(busy),
        "slots_processing": busy,
        "queued": st.jobs.max_capacity() - st.jobs.capacity(),
        "requests_done": st.stats.requests_done.load(Ordering::Relaxed),
        "requests_cancelled": st.stats.requests_cancelled.load(Ordering::Relaxed),
    }))
}

async fn models(State(st): State<Shared>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.model_id,
            "object": "model",
            "created": st.started,
            "owned_by": "qllama",
            "meta": {"file": st.model_file, "n_ctx": st.n_ctx, "n_ctx_slot": st.n_ctx_slot, "parallel": st.n_parallel},
        }],
    }))
}

/// The JSON object of a request body.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What kind of answer a request gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// A checked request, ready for the scheduler.
struct Prepared {
    job: Job,
    events: mpsc::UnboundedReceiver<Event>,
    stream: bool,
    include_usage: bool,
}

impl AppState {
    /// Check the fields both endpoints share and build the job for `prompt`.
    fn prepare(&self, p: &CommonParams, prompt: Vec<u32>, kind: Kind) -> Result<Prepared, ApiError> {
        if let Some(m) = p.model.as_deref() {
            if !m.is_empty() && m != self.model_id && m != self.model_file {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("model '{m}' does not exist; this server serves '{}'", self.model_id),
                ));
            }
        }
        if p.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported"));
        }
        let max_tokens = match p.max_completion_tokens.or(p.max_tokens) {
            Some(n) if n < 1 => return Err(ApiError::bad_request(format!("max_tokens must be at least 1, got {n}"))),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let defaults = SamplerParams::default();
        let sampler = SamplerParams {
            temperature: p.temperature.unwrap_or(defaults.temperature),
            top_p: p.top_p.unwrap_or(defaults.top_p),
            top_k: p.top_k.unwrap_or(defaults.top_k),
            min_p: p.min_p.unwrap_or(defaults.min_p),
            repeat_penalty: p.repeat_penalty.unwrap_or(defaults.repeat_penalty),
            seed: p.seed.map_or_else(clock_seed, |s| s as u64),
            ..defaults
        };
        sampler.validate().map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let penalty = |name: &str, v: Option<f32>| match v.unwrap_or(0.0) {
            x if (-2.0..=2.0).contains(&x) => Ok(x),
            x => Err(ApiError::bad_request(format!("{name} must be between -2 and 2, got {x}"))),
        };
        let presence_penalty = penalty("presence_penalty", p.presence_penalty)?;
        let frequency_penalty = penalty("frequency_penalty", p.frequency_penalty)?;
        let stop = match p.stop.clone() {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > MAX_STOPS {
            return Err(ApiError::bad_request(format!("at most {MAX_STOPS} stop strings, got {}", stop.len())));
        }
        if prompt.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty"));
        }
        if prompt.len() >= self.n_ctx_slot {
            return Err(ApiError::bad_request(format!(
                "the prompt is {} tokens but a slot's context holds {} (--ctx {} / --parallel {}): at most {} prompt tokens fit, leaving room for an answer",
                prompt.len(),
                self.n_ctx_slot,
                self.n_ctx,
                self.n_parallel,
                self.n_ctx_slot - 1
            )));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.tok.vocab_size()) {
            return Err(ApiError::bad_request(format!("token id {bad} is outside the vocabulary")));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            sampler,
            presence_penalty,
            frequency_penalty,
            max_tokens,
            stop,
            ignore_eos: p.ignore_eos.unwrap_or(false),
            chat: kind == Kind::Chat,
            events: tx,
        };
        Ok(Prepared {
            job,
            events: rx,
            stream: p.stream.unwrap_or(false),
            include_usage: p.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }

    fn chat_prompt(&self, req: &ChatRequest) -> Result<Vec<u32>, ApiError> {
        let mut messages = Vec::with_capacity(req.messages.len());
        for m in &req.messages {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => return Err(ApiError::bad_request(format!("unsupported message role '{other}'"))),
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.as_deref()).collect()
                }
            };
            messages.push(Message::new(role, content));
        }
        if messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty"));
        }
        let text = self.template.render(&messages, true).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let mut ids = self.tok.encode_special(&text, false).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if self.tok.add_bos() && ids.first() != Some(&self.tok.bos_id()) {
            ids.insert(0, self.tok.bos_id());
        }
        Ok(ids)
    }

    fn completion_prompt(&self, req: &CompletionRequest) -> Result<Vec<u32>, ApiError> {
        let text = match &req.prompt {
            Prompt::Tokens(ids) => return Ok(ids.clone()),
            Prompt::Text(t) => t,
            Prompt::Texts(v) if v.len() == 1 => &v[0],
            Prompt::Texts(v) => {
                return Err(ApiError::bad_request(format!("prompt must be one string, got a list of {}", v.len())))
            }
        };
        self.tok.encode(text, self.tok.add_bos()).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// Queue a job; 503 when the queue is full.
    fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.jobs.try_send(job).map_err(|e| {
            let msg = match e {
                mpsc::error::TrySendError::Full(_) => "the server is busy: the request queue is full, retry later",
                mpsc::error::TrySendError::Closed(_) => "the server is shutting down",
            };
            ApiError { retry_after: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg) }
        })
    }

    fn new_id(&self, kind: Kind) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
        format!("{prefix}-{:x}{n:x}", self.started)
    }
}

async fn chat_completions(State(st): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Prepared, ApiError> {
        let v = json_body(body)?;
        let common: CommonParams = parse_body(&v)?;
        let req: ChatRequest = parse_body(&v)?;
        let prompt = st.chat_prompt(&req)?;
        st.prepare(&common, prompt, Kind::Chat)
    };
    respond(st.clone(), run(), Kind::Chat).await
}

async fn completions(State(st): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Prepared, ApiError> {
        let v = json_body(body)?;
        let common: CommonParams = parse_body(&v)?;
        let req: CompletionRequest = parse_body(&v)?;
        let prompt = st.completion_prompt(&req)?;
        st.prepare(&common, prompt, Kind::Completion)
    };
    respond(st.clone(), run(), Kind::Completion).await
}

/// The pieces every response chunk shares.
#[derive(Clone)]
struct Head {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Head {
    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A streamed chunk with `text` (and the role, first) or the finish reason.
    fn chunk(&self, text: Option<&str>, first: bool, finish: Option<FinishReason>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
        };
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model, "choices": [choice]})
    }

    fn usage_chunk(&self, usage: &Usage) -> Value {
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model, "choices": [], "usage": usage})
    }

    fn whole(&self, text: String, finish: FinishReason, usage: &Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            }),
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish}),
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created, "model": self.model, "choices": [choice], "usage": usage})
    }
}

fn sse_json(v: &Value) -> sse::Event {
    sse::Event::default().data(v.to_string())
}

async fn respond(st: Shared, prepared: Result<Prepared, ApiError>, kind: Kind) -> Response {
    let Prepared { job, mut events, stream, include_usage } = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = st.submit(job) {
        return e.into_response();
    }
    let head = Head { id: st.new_id(kind), created: unix_now(), model: st.model_id.clone(), kind };
    if !stream {
        let mut text = String::new();
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Text(t) => text.push_str(&t),
                Event::Done { finish, usage } => return Json(head.whole(text, finish, &usage)).into_response(),
                Event::Error(e) => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the request was dropped").into_response();
    }
    // Streaming: the receiver lives in the response body, so a client that
    // disconnects drops it and the scheduler frees the slot.
    let first = if kind == Kind::Chat { Some(sse_json(&head.chunk(Some(""), true, None))) } else { None };
    let h = head.clone();
    let body = stream::unfold(Some(events), move |rx| {
        let h = h.clone();
        async move {
            let mut rx = rx?;
            let out = match rx.recv().await {
                Some(Event::Text(t)) => return Some((vec![sse_json(&h.chunk(Some(&t), false, None))], Some(rx))),
                Some(Event::Done { finish, usage }) => {
                    let mut v = vec![sse_json(&h.chunk(None, false, Some(finish)))];
                    if include_usage {
                        v.push(sse_json(&h.usage_chunk(&usage)));
                    }
                    v
                }
                Some(Event::Error(e)) => vec![sse_json(&ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).body())],
                None => {
                    vec![sse_json(&ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the request was dropped").body())]
                }
            };
            let mut out = out;
            out.push(sse::Event::default().data("[DONE]"));
            Some((out, None))
        }
    })
    .flat_map(stream::iter);
    let all = stream::iter(first).chain(body).map(Ok::<_, Infallible>);
    Sse::new(all).keep_alive(KeepAlive::default()).into_response()
}
