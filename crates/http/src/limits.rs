//! Refusals between a request's head and its handler: a body over the size limit (413), a
//! body that does not arrive in time (408), a request not answered in time (408), each
//! counted. The body is read here, whole, so handlers get it at once; no route is known.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use tokio::time::Instant;

use concierge_telemetry::Metrics;

/// The limits on a request once its head is in.
#[derive(Clone)]
pub struct Guard {
    pub body_limit: usize,
    /// The limit of a file's upload (a concierge's, a visitor's).
    pub upload_limit: usize,
    /// How long the body may take to arrive, from the end of the head.
    pub body_timeout: Duration,
    /// How long the whole request may take, body and handler included.
    pub request_timeout: Duration,
    pub metrics: Metrics,
}

/// Why a body could not be read.
enum Unread {
    TooLarge,
    /// The client went away or broke the framing mid-body.
    Broken,
}

/// The middleware: reads the body within its limits, then runs the handler within the time
/// left to the request.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let limit = if is_upload(&parts.method, parts.uri.path()) {
        guard.upload_limit
    } else {
        guard.body_limit
    };
    let body = if body.is_end_stream() {
        body
    } else {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return guard.refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        }
        let deadline = started + guard.body_timeout.min(guard.request_timeout);
        match tokio::time::timeout_at(deadline, read(body, limit)).await {
            Ok(Ok(bytes)) => Body::from(bytes),
            Ok(Err(Unread::TooLarge)) => {
                return guard.refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
            }
            Ok(Err(Unread::Broken)) => {
                tracing::debug!("a request body broke off");
                return closing(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
            Err(_) => return guard.refuse(StatusCode::REQUEST_TIMEOUT, "body_timeout"),
        }
    };
    let request = Request::from_parts(parts, body);
    match tokio::time::timeout_at(started + guard.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => guard.refuse(StatusCode::REQUEST_TIMEOUT, "request_timeout"),
    }
}

/// The routes that take a file: `POST /api/v1/conversations/{id}/media` and
/// `POST /chat/{channel}/media`.
fn is_upload(method: &http::Method, path: &str) -> bool {
    method == http::Method::POST
        && path.ends_with("/media")
        && (path.starts_with("/api/v1/conversations/") || path.starts_with("/chat/"))
}

impl Guard {
    fn refuse(&self, status: StatusCode, reason: &'static str) -> Response {
        self.metrics.http_refused(reason);
        tracing::debug!(reason, status = status.as_u16(), "request refused");
        let message = match reason {
            "body_too_large" => "the request body is too large",
            "body_timeout" => "the request body took too long to arrive",
            _ => "the request took too long",
        };
        closing(status, message)
    }
}

/// An answer after which the connection is closed: what is left of the body is not read.
fn closing(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn read(body: Body, limit: usize) -> Result<Bytes, Unread> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Unread::Broken)?;
        if buffer.len() + chunk.len() > limit {
            return Err(Unread::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}
