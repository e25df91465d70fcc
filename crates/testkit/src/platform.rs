//! A fake platform API over real HTTP: records every request it receives and answers from a
//! script (then with a default success), so tests can assert on every byte the gateway sent
//! and inject faults (429, 500, platform error codes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

pub fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        retry_after: None,
    }
}

#[derive(Default)]
struct FakeState {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Answer>>,
    sent: AtomicUsize,
    base: Mutex<String>,
    /// Telegram updates served by getUpdates.
    updates: Mutex<Vec<serde_json::Value>>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub url: String,
    state: Arc<FakeState>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = url.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { url, state }
    }

    /// Adds Telegram updates for getUpdates to serve.
    pub fn push_updates(&self, updates: Vec<serde_json::Value>) {
        self.state.updates.lock().unwrap().extend(updates);
    }

    /// Queues answers for the next message sends.
    pub fn script(&self, answers: Vec<Answer>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The JSON bodies of message sends (read receipts left out).
    pub fn sends(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with("/messages"))
            .map(|r| r.json())
            .filter(|b| b.get("status").is_none())
            .collect()
    }

    /// The form bodies of Twilio message creations.
    pub fn forms(&self) -> Vec<Vec<(String, String)>> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with("/Messages.json"))
            .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap_or_default())
            .collect()
    }

    /// The JSON bodies sent to a BlueBubbles server's message routes, with their paths.
    pub fn bluebubbles_sends(&self) -> Vec<(String, serde_json::Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.starts_with("/api/v1/message/"))
            .map(|r| (r.path.clone(), r.json()))
            .collect()
    }

    /// Telegram Bot API calls: the method and its JSON body.
    pub fn telegram_calls(&self) -> Vec<(String, serde_json::Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/bot"))
            .map(|r| {
                let method = r.path.rsplit('/').next().unwrap_or_default().to_string();
                (method, r.json())
            })
            .collect()
    }

    /// The read-and-typing receipts.
    pub fn receipts(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with("/messages"))
            .map(|r| r.json())
            .filter(|b| b.get("status").is_some())
            .collect()
    }
}

async fn handle(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    state.requests.lock().unwrap().push(recorded);
    let path = parts.uri.path().to_string();
    let base = state.base.lock().unwrap().clone();
    if parts.method == Method::GET
        && (path.starts_with("/download/")
            || path.ends_with("/download")
            || path.starts_with("/file/"))
    {
        return ([("content-type", "image/jpeg")], "FAKE-JPEG-BYTES").into_response();
    }
    if parts.method == Method::GET {
        let id = path.rsplit('/').next().unwrap_or_default().to_string();
        if id == "missing" {
            return (StatusCode::NOT_FOUND, "{}").into_response();
        }
        let body = serde_json::json!({
            "messaging_product": "whatsapp",
            "url": format!("{base}/download/{id}"),
            "mime_type": "image/jpeg",
            "sha256": "fa4e",
            "file_size": "15",
            "id": id,
        });
        return axum::Json(body).into_response();
    }
    if path.ends_with("/Indicators/Typing.json") || path.starts_with("/api/v1/chat/") {
        return axum::Json(serde_json::json!({ "success": true })).into_response();
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if json.get("status").is_some() {
        return axum::Json(serde_json::json!({ "success": true })).into_response();
    }
    let telegram = path.starts_with("/bot");
    if telegram && path.ends_with("/getUpdates") {
        // Like Telegram: every update from the offset on, until confirmed by a later offset.
        let offset = json.get("offset").and_then(|o| o.as_i64()).unwrap_or(0);
        let pending: Vec<serde_json::Value> = state
            .updates
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
            .cloned()
            .collect();
        if pending.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        return axum::Json(serde_json::json!({ "ok": true, "result": pending })).into_response();
    }
    if telegram && path.ends_with("/setWebhook") {
        return axum::Json(
            serde_json::json!({ "ok": true, "result": true, "description": "Webhook was set" }),
        )
        .into_response();
    }
    // Scripted answers are for sends; typing, callback answers and file lookups always work.
    let side_call = ["/sendChatAction", "/answerCallbackQuery", "/getFile"]
        .iter()
        .any(|m| path.ends_with(m));
    let scripted = if side_call {
        None
    } else {
        state.script.lock().unwrap().pop_front()
    };
    if telegram && scripted.is_none() {
        let n = state.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let result = if path.ends_with("/getFile") {
            serde_json::json!({ "file_id": "f", "file_unique_id": "u", "file_size": 15, "file_path": "photos/file_1.jpg" })
        } else if path.ends_with("/answerCallbackQuery") || path.ends_with("/sendChatAction") {
            serde_json::json!(true)
        } else {
            serde_json::json!({ "message_id": 7000 + n, "date": 0, "chat": { "id": json.get("chat_id").cloned().unwrap_or_default(), "type": "private" } })
        };
        return axum::Json(serde_json::json!({ "ok": true, "result": result })).into_response();
    }
    if let Some(answer) = scripted {
        let mut response = (
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
            [("content-type", "application/json")],
            answer.body,
        )
            .into_response();
        if let Some(after) = answer.retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.to_string().parse().unwrap());
        }
        return response;
    }
    let n = state.sent.fetch_add(1, Ordering::SeqCst) + 1;
    let to = json
        .get("to")
        .or_else(|| json.get("recipient"))
        .cloned()
        .unwrap_or_default();
    axum::Json(serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to }],
        "messages": [{ "id": format!("wamid.OUT-{n}") }],
        "sid": format!("SMOUT{n:030}"),
        "status": "queued",
        "data": { "guid": format!("BBOUT-{n}") },
    }))
    .into_response()
}
