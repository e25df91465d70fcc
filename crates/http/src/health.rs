//! Liveness, readiness (the store answers) and the metrics page, behind its token when one
//! is configured.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use concierge_channels::signature::same_secret;
use concierge_domain::Secret;
use concierge_telemetry::Metrics;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// What the metrics page needs: the counters and, when set, the token a scraper must send.
#[derive(Clone)]
pub struct MetricsPage {
    pub metrics: Metrics,
    pub token: Option<Secret>,
}

impl MetricsPage {
    /// Whether the request carries the token (always, when none is configured), compared
    /// in constant time.
    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|sent| same_secret(sent.trim().as_bytes(), token.expose().as_bytes()))
    }
}

pub async fn metrics(State(page): State<MetricsPage>, headers: HeaderMap) -> Response {
    if !page.allows(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid metrics token is required",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        page.metrics.render(),
    )
        .into_response()
}
