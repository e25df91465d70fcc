//! A fake LLM provider over real HTTP, speaking OpenAI's `/chat/completions` and Anthropic's
//! `/v1/messages` wire formats: it records every request and answers from a script (tool
//! calls, text, error statuses, delays, raw bodies), so tests check what the gateway sent and
//! inject faults. Also a fake merchant backend that records the calls it gets.

use std::collections::VecDeque;
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

#[derive(Default)]
struct LlmState {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<Step>>,
    n: Mutex<u64>,
    echo: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    state: Arc<LlmState>,
}

impl FakeLlm {
    pub async fn start() -> FakeLlm {
        let state = Arc::new(LlmState::default());
        let app = axum::Router::new()
            .fallback(handle_llm)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm { url, state }
    }

    pub fn script(&self, steps: Vec<Step>) {
        self.state.script.lock().unwrap().extend(steps);
    }

    /// Once the script is spent, answers `re: <the last line the customer wrote>`.
    pub fn echo(&self) {
        self.state
            .echo
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<LlmCall> {
        self.state.calls.lock().unwrap().clone()
    }
}

async fn handle_llm(State(state): State<Arc<LlmState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = parts.uri.path().to_string();
    state.calls.lock().unwrap().push(LlmCall {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: json.clone(),
    });
    let anthropic = path.ends_with("/messages");
    let mut step = state.script.lock().unwrap().pop_front().unwrap_or_else(|| {
        if state.echo.load(std::sync::atomic::Ordering::SeqCst) {
            let last = json["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .and_then(|c| c.lines().last())
                .unwrap_or_default();
            text(&format!("re: {last}"))
        } else {
            text("(the fake LLM has no more script)")
        }
    });
    while let Step::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    let n = {
        let mut n = state.n.lock().unwrap();
        *n += 1;
        *n
    };
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

/// A merchant backend: `GET /orders/{id}` knows ML-10421 for +33612345678 only.
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeShop { url, state }
    }

    pub fn calls(&self) -> Vec<ShopCall> {
        self.state.calls.lock().unwrap().clone()
    }
}

async fn handle_shop(State(state): State<Arc<ShopState>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let call = ShopCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
    };
    state.calls.lock().unwrap().push(call.clone());
    let phone = call.header("x-concierge-phone");
    match call.path.as_str() {
        "/orders/ML-10421" if phone.as_deref() == Some("+33612345678") => axum::Json(json!({
            "id": "ML-10421", "status": "shipped", "carrier": "Colissimo", "tracking": "6A12345678901"
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
