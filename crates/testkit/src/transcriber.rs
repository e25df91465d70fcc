//! The fake transcription server of the tests, over real HTTP, speaking OpenAI's
//! `/v1/audio/transcriptions`: it records every request as sent (headers and the multipart
//! body), and answers from a script (words, an error status, a body that is not the API's),
//! then with its default words.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Said {
    Words(String),
    Status(u16),
    /// 200 with a body that is not the API's.
    Garbage,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Heard {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Heard {
    /// Whether the body carries `bytes` (the audio file, as uploaded).
    pub fn carries(&self, bytes: &[u8]) -> bool {
        !bytes.is_empty() && self.body.windows(bytes.len()).any(|w| w == bytes)
    }

    /// The value of the multipart text field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        let start = body.find(&format!("name=\"{name}\""))?;
        let rest = &body[start..];
        let value = &rest[rest.find("\r\n\r\n")? + 4..];
        Some(value[..value.find("\r\n--")?].to_string())
    }
}

#[derive(Default)]
struct Inner {
    heard: Vec<Heard>,
    script: VecDeque<Said>,
}

#[derive(Clone)]
pub struct FakeTranscriber {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeTranscriber {
    pub async fn start() -> Result<FakeTranscriber, crate::KitError> {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let url = crate::serve(app).await?;
        Ok(FakeTranscriber { url, inner })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn script(&self, answers: Vec<Said>) {
        self.lock().script.extend(answers);
    }

    pub fn heard(&self) -> Vec<Heard> {
        self.lock().heard.clone()
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let said = {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.heard.push(Heard {
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
        });
        inner.script.pop_front()
    };
    if !parts.uri.path().ends_with("/audio/transcriptions") {
        return (StatusCode::NOT_FOUND, "unknown path").into_response();
    }
    match said.unwrap_or_else(|| Said::Words("(the fake transcriber heard nothing more)".into())) {
        Said::Words(words) => axum::Json(json!({ "text": words })).into_response(),
        Said::Status(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json!({ "error": { "message": "scripted failure" } })),
        )
            .into_response(),
        Said::Garbage => (StatusCode::OK, "<html>not json</html>").into_response(),
    }
}
