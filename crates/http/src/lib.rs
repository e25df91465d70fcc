//! The public HTTP port: webhooks, health, the web chat page, the concierge API and its
//! console, and `/metrics` when it is not served on a port of its own. Handlers verify,
//! store and answer; they never wait on a responder or a send.

mod api;
mod assets;
mod body;
mod channel_health;
mod chat;
mod consent;
mod console;
mod csp;
mod health;
mod limits;
mod media;
mod merchant_events;
mod notifications;
mod openapi;
mod outgoing;
pub mod server;
mod service;
pub mod streams;
pub mod visitors;
mod webhooks;
pub mod welcome;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use concierge_channels::Registry;
use concierge_engine::handoff::Desk;
use concierge_store::SharedStore;
use concierge_telemetry::Metrics;

pub use self::health::MetricsPage;

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
    /// A customer's message the platform dates earlier than this is not answered (a webhook
    /// replayed after its dedupe key expired); `None`: no limit.
    pub max_event_age_ms: Option<i64>,
    /// The live streams open on this instance, and their caps.
    pub streams: Arc<streams::Streams>,
    pub stream_caps: StreamCaps,
    /// The web chat's budgets of new visitors per client address.
    pub visitors: Arc<visitors::VisitorBudgets>,
    /// Where customers' media is kept (`None`: media is not fetched).
    pub media: Option<concierge_media::MediaStore>,
    /// Checks and queues notifications (the template catalogue with it).
    pub notifier: concierge_engine::notify::Notifier,
    /// Queues events for `[[webhooks]]`.
    pub webhooks: concierge_engine::webhooks::Webhooks,
}

/// The most live streams of one key on an instance; a new one past it closes the oldest.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    /// Of one web chat visitor key.
    pub per_key: usize,
    /// Of one concierge on `/api/v1/events`.
    pub per_concierge: usize,
}

#[derive(Clone, Copy)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    /// The body limit of an upload of a file (`[media] max_bytes`).
    pub upload_limit_bytes: usize,
    /// How long a body may take to arrive once the request's head is in.
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
}

fn guard(limits: &HttpLimits, metrics: &Metrics) -> limits::Guard {
    limits::Guard {
        body_limit: limits.body_limit_bytes,
        upload_limit: limits.upload_limit_bytes.max(limits.body_limit_bytes),
        body_timeout: limits.body_read_timeout,
        request_timeout: limits.request_timeout,
        metrics: metrics.clone(),
    }
}

/// `/metrics` alone, for a listener of its own (`[server] metrics_bind`).
pub fn metrics_router(page: MetricsPage, limits: HttpLimits) -> Router {
    let guard = guard(&limits, &page.metrics);
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(page)
        .layer(axum::middleware::from_fn_with_state(guard, limits::guard))
}

/// The public port's routes; `/metrics` among them only when `metrics` is given (a token is
/// set and no port of its own is).
pub fn router(state: AppState, limits: HttpLimits, metrics: Option<MetricsPage>) -> Router {
    let guard = guard(&limits, &state.metrics);
    let metrics = match metrics {
        Some(page) => Router::new()
            .route("/metrics", get(health::metrics))
            .with_state(page),
        None => Router::new(),
    };
    Router::new()
        // A newcomer's first address: 307, temporary (never cached as a permanent answer
        // would be, so `/` may serve something else later) and keeping the method (a HEAD
        // stays a HEAD).
        .route("/", get(|| async { Redirect::temporary("/chat") }))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(metrics)
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
        .route(
            "/chat/{channel_id}/media",
            axum::routing::post(chat::upload),
        )
        .route("/chat/{channel_id}/media/{id}", get(chat::media))
        .route("/media/out/{channel_id}/{id}", get(media::linked))
        .route("/console", get(console::page))
        .route("/assets/{name}", get(assets::asset))
        .nest("/api/v1", openapi::table().into())
        .layer(DefaultBodyLimit::max(
            limits.upload_limit_bytes.max(limits.body_limit_bytes),
        ))
        // Outermost: the body limits and both timeouts (413, 408), counted.
        .layer(axum::middleware::from_fn_with_state(guard, limits::guard))
        .with_state(state)
}
