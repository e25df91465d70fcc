//! The one HTTP port: webhooks, health, metrics, the web chat page, the concierge API and
//! its console. Handlers verify, store and answer; they never wait on a responder or a send.

mod api;
mod chat;
mod console;
mod health;
mod limits;
pub mod server;
pub mod visitors;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channels::Registry;
use crate::handoff::Desk;
use crate::store::SharedStore;
use crate::telemetry::Metrics;

/// What the handlers share: each part's handle, nothing more.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub channels: Registry,
    pub inbox_wake: Arc<Notify>,
    /// Rung when a concierge's reply is queued.
    pub outbox_wake: Arc<Notify>,
    pub desk: Arc<Desk>,
    pub metrics: Metrics,
    /// Fires at shutdown, so long-lived streams end and the server can drain.
    pub shutdown: CancellationToken,
    /// The web chat's budgets of new visitors per client address.
    pub visitors: Arc<visitors::VisitorBudgets>,
}

pub struct HttpLimits {
    pub body_limit_bytes: usize,
    /// How long a body may take to arrive once the request's head is in.
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(api::openapi))
        .route("/me", get(api::me))
        .route("/me/status", post(api::set_status))
        .route("/teams", get(api::teams))
        .route("/concierges", get(api::concierges))
        .route("/queue", get(api::queue))
        .route("/audit", get(api::audit))
        .route("/events", get(api::events))
        .route("/conversations/{id}", get(api::conversation))
        .route("/conversations/{id}/claim", post(api::claim))
        .route("/conversations/{id}/release", post(api::release))
        .route("/conversations/{id}/resolve", post(api::resolve))
        .route("/conversations/{id}/transfer", post(api::transfer))
        .route("/conversations/{id}/messages", post(api::reply))
        .route("/conversations/{id}/notes", post(api::note))
}

pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let guard = limits::Guard {
        body_limit: limits.body_limit_bytes,
        body_timeout: limits.body_read_timeout,
        request_timeout: limits.request_timeout,
        metrics: state.metrics.clone(),
    };
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
        .route("/console", get(console::page))
        .nest("/api/v1", api_routes())
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        // Outermost: the body limits and both timeouts (413, 408), counted.
        .layer(axum::middleware::from_fn_with_state(guard, limits::guard))
        .with_state(state)
}
