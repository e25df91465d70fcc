//! `GET|POST /webhooks/{channel_id}`: find the channel, verify, parse, append to the inbox,
//! answer. A forged request is a 401 before any parsing; a payload we cannot understand is
//! logged, counted and answered 200, so the platform does not retry it for days.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::channels::{VerifyError, WebhookRequest};

fn request(headers: HeaderMap, raw_query: Option<String>, body: Bytes) -> WebhookRequest {
    let query: BTreeMap<String, String> = raw_query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    WebhookRequest {
        headers,
        query,
        raw_query,
        body,
    }
}

pub async fn receive(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(adapter) = state.channels.get(&channel_id).cloned() else {
        state.metrics.webhook("unknown", "unknown_channel");
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    };
    let channel = adapter.id().clone();
    let request = request(headers, query, body);
    if let Err(e) = adapter.verify(&request) {
        state.metrics.webhook(channel.as_str(), "unauthorized");
        tracing::warn!(%channel, reason = %e, "webhook refused");
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let events = match adapter.parse(&request) {
        Ok(events) => events,
        Err(e) => {
            state.metrics.webhook(channel.as_str(), "unparsed");
            tracing::warn!(%channel, size = request.body.len(), error = %e, "webhook payload not understood; acknowledged and dropped");
            return (StatusCode::OK, "ignored").into_response();
        }
    };
    if events.is_empty() {
        state.metrics.webhook(channel.as_str(), "ignored");
        return (StatusCode::OK, "ok").into_response();
    }
    match state.store.ingest(&events).await {
        Ok(outcome) => {
            if outcome.accepted > 0 {
                state.inbox_wake.notify_one();
            }
            let label = if outcome.accepted == 0 && outcome.duplicates > 0 {
                "duplicate"
            } else {
                "accepted"
            };
            state.metrics.webhook(channel.as_str(), label);
            tracing::debug!(%channel, accepted = outcome.accepted, duplicates = outcome.duplicates, "webhook stored");
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => {
            // Nothing was stored: a 503 asks the platform to deliver it again later.
            state.metrics.webhook(channel.as_str(), "store_error");
            tracing::error!(%channel, error = %e, "cannot store a webhook");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
        }
    }
}

pub async fn handshake(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(adapter) = state.channels.get(&channel_id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    };
    let request = request(headers, query, Bytes::new());
    match adapter.handshake(&request) {
        Ok(reply) => (StatusCode::OK, reply.0).into_response(),
        Err(VerifyError::NoHandshake) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "this channel takes POST only",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(channel = %adapter.id(), reason = %e, "handshake refused");
            (StatusCode::FORBIDDEN, "forbidden").into_response()
        }
    }
}
