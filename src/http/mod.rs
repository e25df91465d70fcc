//! The one HTTP port: webhooks, health, metrics and the web chat page. Handlers verify,
//! store and answer; they never wait on a responder or a send.

mod chat;
mod health;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::channels::Registry;
use crate::store::SharedStore;
use crate::telemetry::Metrics;

/// What the handlers share: each part's handle, nothing more.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub channels: Registry,
    pub inbox_wake: Arc<Notify>,
    pub metrics: Metrics,
    /// Fires at shutdown, so long-lived streams end and the server can drain.
    pub shutdown: CancellationToken,
}

pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

pub fn router(state: AppState, limits: HttpLimits) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/favicon.ico",
            get(|| async { http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/webhooks/{channel_id}",
            get(webhooks::handshake).post(webhooks::receive),
        )
        .route("/chat", get(chat::default_page))
        .route("/chat/{channel_id}", get(chat::page))
        .route("/chat/{channel_id}/events", get(chat::events))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}
