//! The one fake LLM provider, over real HTTP, speaking OpenAI's `/chat/completions` and
//! Anthropic's `/v1/messages` wire formats: it records every request (unless told not to, as
//! under load) and answers from a script (tool calls, text, error statuses, delays, raw
//! bodies), then from its fallback (a fixed sentence, an echo, or any function of the
//! request), after a fixed or a random latency; so tests check what the gateway sent and
//! inject faults, and the bench and the chaos run play a provider with it. Also a fake
//! merchant backend that records the calls it gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer of the fake LLM.
#[derive(Clone, Debug)]
pub enum Step {
    Text(String),
    /// One or more tool calls: (name, arguments).
    Tools(Vec<(String, Value)>),
    Status(u16),
    /// An error status with this JSON body.
    StatusBody(u16, Value),
    /// Waits, then answers the inner step (a timeout when longer than the gateway waits).
    Delay(Duration, Box<Step>),
    /// A raw body with status 200 (a malformed answer).
    Raw(Value),
}

pub fn text(t: &str) -> Step {
    Step::Text(t.to_string())
}

pub fn tool(name: &str, args: Value) -> Step {
    Step::Tools(vec![(name.to_string(), args)])
}

#[derive(Clone, Debug)]
pub struct LlmCall {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl LlmCall {
    /// The system prompt, whichever format.
    pub fn system(&self) -> String {
        if let Some(system) = self.body.get("system") {
            return match system {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
        self.body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "system"))
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    }

    /// The names of the tools offered.
    pub fn tool_names(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t["function"]["name"]
                            .as_str()
                            .or_else(|| t["name"].as_str())
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the fake answers once its script is spent: a text computed from the request.
pub type Fallback = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// How long the fake waits before it answers a call.
#[derive(Clone, Copy, Debug, Default)]
pub enum Latency {
    #[default]
    None,
    Fixed(Duration),
    /// A uniformly random wait from zero to this (kills and faults land mid-turn).
    UpTo(Duration),
}

/// How a fake LLM behaves beyond its script.
#[derive(Clone)]
pub struct Options {
    pub latency: Latency,
    /// Keep every request for [`FakeLlm::calls`] (off under load: only counted).
    pub record: bool,
    /// The answer once the script is spent.
    pub fallback: Fallback,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Latency::None,
            record: true,
            fallback: Arc::new(|_| "(the fake LLM has no more script)".to_string()),
        }
    }
}

struct LlmState {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<Step>>,
    count: AtomicU64,
    options: Mutex<Options>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    state: Arc<LlmState>,
}

impl FakeLlm {
    /// A fake that records every call and says it has no more script once it is spent.
    pub async fn start() -> FakeLlm {
        FakeLlm::with(Options::default())
            .await
            .expect("a fake LLM on a loopback port")
    }

    pub async fn with(options: Options) -> Result<FakeLlm, crate::KitError> {
        let state = Arc::new(LlmState {
            calls: Mutex::default(),
            script: Mutex::default(),
            count: AtomicU64::new(0),
            options: Mutex::new(options),
        });
        let app = axum::Router::new()
            .fallback(handle_llm)
            .with_state(state.clone());
        let url = crate::serve(app).await?;
        Ok(FakeLlm { url, state })
    }

    pub fn script(&self, steps: Vec<Step>) {
        lock(&self.state.script).extend(steps);
    }

    /// Once the script is spent, answers `re: <the last line the customer wrote>`.
    pub fn echo(&self) {
        lock(&self.state.options).fallback = Arc::new(|request| {
            let last = last_user_text(request);
            format!("re: {}", last.lines().last().unwrap_or_default())
        });
    }

    /// Every call received, when recording.
    pub fn calls(&self) -> Vec<LlmCall> {
        lock(&self.state.calls).clone()
    }

    /// How many calls were answered, recorded or not.
    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text of the last user message of a chat request, whichever format (a string, or
/// parts whose texts are joined by new lines).
pub fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default()
}

/// A message's text: its string, or its text parts joined by new lines.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn handle_llm(State(state): State<Arc<LlmState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = parts.uri.path().to_string();
    let (latency, record, fallback) = {
        let options = lock(&state.options);
        (options.latency, options.record, options.fallback.clone())
    };
    if record {
        lock(&state.calls).push(LlmCall {
            path: path.clone(),
            headers: parts.headers.clone(),
            body: json.clone(),
        });
    }
    let n = state.count.fetch_add(1, Ordering::Relaxed) + 1;
    let wait = match latency {
        Latency::None => Duration::ZERO,
        Latency::Fixed(wait) => wait,
        Latency::UpTo(max) => {
            let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rand::Rng::random_range(&mut rand::rng(), 0..=max))
        }
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let anthropic = path.ends_with("/messages");
    let scripted = lock(&state.script).pop_front();
    let mut step = scripted.unwrap_or_else(|| Step::Text(fallback(&json)));
    while let Step::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    let model = json["model"].as_str().unwrap_or("fake").to_string();
    match step {
        Step::Status(status) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            json!({ "error": { "message": "scripted failure", "type": "server_error" } })
                .to_string(),
        )
            .into_response(),
        Step::StatusBody(status, body) => (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(body),
        )
            .into_response(),
        Step::Raw(body) => axum::Json(body).into_response(),
        Step::Text(t) if anthropic => axum::Json(json!({
            "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": model,
            "content": [{ "type": "text", "text": t }],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": { "input_tokens": 100, "output_tokens": 20 }
        }))
        .into_response(),
        Step::Text(t) => axum::Json(json!({
            "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 0, "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": t }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120 }
        }))
        .into_response(),
        Step::Tools(calls) if anthropic => {
            let content: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| json!({ "type": "tool_use", "id": format!("toolu_{n}_{i}"), "name": name, "input": args }))
                .collect();
            axum::Json(json!({
                "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": "tool_use", "stop_sequence": null,
                "usage": { "input_tokens": 100, "output_tokens": 20 }
            }))
            .into_response()
        }
        Step::Tools(calls) => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| json!({ "id": format!("call_{n}_{i}"), "type": "function", "function": { "name": name, "arguments": args.to_string() } }))
                .collect();
            axum::Json(json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 0, "model": model,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": null, "tool_calls": tool_calls }, "finish_reason": "tool_calls" }],
                "usage": { "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120 }
            }))
            .into_response()
        }
        Step::Delay(..) => unreachable!(),
    }
}

/// What the fake merchant backend received.
#[derive(Clone, Debug)]
pub struct ShopCall {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    /// The JSON body, when the call had one.
    pub body: Value,
}

impl ShopCall {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[derive(Default)]
struct ShopState {
    calls: Mutex<Vec<ShopCall>>,
}

/// A merchant backend: `GET /orders/{id}` knows ML-10421 for +33612345678 only; `GET
/// /products` finds two fig candles (one sold out); `POST /checkout` takes a cart and answers
/// an order with a payment link.
#[derive(Clone)]
pub struct FakeShop {
    pub url: String,
    state: Arc<ShopState>,
}

impl FakeShop {
    pub async fn start() -> FakeShop {
        let state = Arc::new(ShopState::default());
        let app = axum::Router::new()
            .fallback(handle_shop)
            .with_state(state.clone());
        let url = crate::serve(app)
            .await
            .expect("a fake shop on a loopback port");
        FakeShop { url, state }
    }

    pub fn calls(&self) -> Vec<ShopCall> {
        lock(&self.state.calls).clone()
    }
}

async fn handle_shop(State(state): State<Arc<ShopState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let call = ShopCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
        body,
    };
    lock(&state.calls).push(call.clone());
    let phone = call.header("x-concierge-phone");
    match call.path.as_str() {
        "/orders/ML-10421" if phone.as_deref() == Some("+33612345678") => axum::Json(json!({
            "id": "ML-10421", "status": "shipped", "carrier": "Colissimo", "tracking": "6A12345678901"
        }))
        .into_response(),
        "/products" => axum::Json(json!({
            "currency": "EUR",
            "products": [
                { "sku": "BOU-FIGUIER-300", "name": "Figuier 300 g", "price": "€38.00", "available": true,
                  "image_url": "https://cdn.maison.example/figuier.jpg" },
                { "sku": "BOU-FIGUE-NOIRE", "name": "Figue noire 180 g", "price": "€28.00", "available": false },
            ]
        }))
        .into_response(),
        "/checkout" if call.method == "POST" => axum::Json(json!({
            "order": "ML-20001",
            "total": "€76.00",
            "items": call.body["items"],
            "payment_url": "https://pay.maison.example/p/ML-20001",
            "payment_label": "Pay €76.00",
            "payment_text": "Order ML-20001: €76.00, delivery included.",
        }))
        .into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            axum::Json(json!({})).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "No order with that number for this customer." })),
        )
            .into_response(),
    }
}
