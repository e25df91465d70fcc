//! The platform and the LLM as the benchmark plays them: a fake Graph API that counts the
//! replies it accepts and when, and a fake OpenAI-compatible LLM that answers after a set
//! latency. Both speak the real wire formats, served over real HTTP in the bench's process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::BenchError;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `router` on a free loopback port; its base URL.
pub async fn serve(router: axum::Router) -> Result<String, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Io("bind a fake server".into(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Io("read a fake server's address".into(), e))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}

/// What the fake Graph API received.
#[derive(Default)]
pub struct Graph {
    /// When each reply arrived, by recipient, in arrival order.
    replies: Mutex<HashMap<String, Vec<Instant>>>,
    count: AtomicU64,
    /// Read receipts and typing indicators.
    indicators: AtomicU64,
    /// Bodies that were neither a message nor an indicator.
    unknown: AtomicU64,
}

impl Graph {
    pub fn replies(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn indicators(&self) -> u64 {
        self.indicators.load(Ordering::Relaxed)
    }

    pub fn unknown(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }

    /// The arrival times of the replies to `recipient`, in order.
    pub fn replies_to(&self, recipient: &str) -> Vec<Instant> {
        lock(&self.replies)
            .get(recipient)
            .cloned()
            .unwrap_or_default()
    }

    /// Starts the fake Graph API; its base URL (without the version segment).
    pub async fn start() -> Result<(Arc<Graph>, String), BenchError> {
        let graph = Arc::new(Graph::default());
        let url = serve(
            axum::Router::new()
                .fallback(graph_handler)
                .with_state(graph.clone()),
        )
        .await?;
        Ok((graph, url))
    }
}

/// `POST /v23.0/{phone-number-id}/messages`: a message is answered with its new id, a read
/// receipt or typing indicator with `success`.
async fn graph_handler(State(graph): State<Arc<Graph>>, request: Request) -> Response {
    let at = Instant::now();
    let body = axum::body::to_bytes(request.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    if json.get("status").is_some() {
        graph.indicators.fetch_add(1, Ordering::Relaxed);
        return axum::Json(json!({ "success": true })).into_response();
    }
    let Some(to) = json["to"].as_str() else {
        graph.unknown.fetch_add(1, Ordering::Relaxed);
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": { "message": "no recipient", "code": 100 } })),
        )
            .into_response();
    };
    lock(&graph.replies)
        .entry(to.to_string())
        .or_default()
        .push(at);
    let n = graph.count.fetch_add(1, Ordering::Relaxed) + 1;
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to }],
        "messages": [{ "id": format!("wamid.BENCH-{n}") }],
    }))
    .into_response()
}

/// A fake OpenAI-compatible LLM: `POST /v1/chat/completions` answers `echo: <the last user
/// message>` after `latency`, with token usage, as a real provider would.
pub struct Llm {
    latency: Duration,
    calls: AtomicU64,
}

impl Llm {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub async fn start(latency: Duration) -> Result<(Arc<Llm>, String), BenchError> {
        let llm = Arc::new(Llm {
            latency,
            calls: AtomicU64::new(0),
        });
        let url = serve(
            axum::Router::new()
                .fallback(llm_handler)
                .with_state(llm.clone()),
        )
        .await?;
        Ok((llm, url))
    }
}

/// The text of the last user message of an OpenAI chat request (string or parts).
pub fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

async fn llm_handler(State(llm): State<Arc<Llm>>, request: Request) -> Response {
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let last_user = last_user_text(&json);
    let n = llm.calls.fetch_add(1, Ordering::Relaxed) + 1;
    if !llm.latency.is_zero() {
        tokio::time::sleep(llm.latency).await;
    }
    axum::Json(json!({
        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 0,
        "model": json["model"].as_str().unwrap_or("bench"),
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("echo: {last_user}") },
                      "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132 }
    }))
    .into_response()
}

/// The plain baseline: an axum server whose one route reads the body and answers 200, run
/// in its own process (`concierge bench-plain`) like the gateway.
pub fn plain_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/webhooks/{channel}",
            axum::routing::post(|_body: axum::body::Bytes| async { "ok" }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
}
