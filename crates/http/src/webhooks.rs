//! `GET|POST /webhooks/{channel_id}`: find the channel, verify, parse, append to the inbox
//! (with the raw request, its credentials removed, for replay), answer. A forged request is a 401 before any parsing; a payload we cannot understand is
//! logged, counted and answered 200, so the platform does not retry it for days.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::field::Empty;

use super::AppState;
use concierge_channels::{ChannelAdapter, VerifyError, WebhookRequest};
use concierge_domain::{DeliveryStatus, EventKind, InboundEvent, now_millis};
use concierge_engine::webhooks::OutEvent;
use serde_json::json;

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

/// Counts the request's outcome and writes it into the `webhook` span.
fn outcome(state: &AppState, channel: &str, outcome: &'static str) {
    state.metrics.webhook(channel, outcome);
    tracing::Span::current().record("outcome", outcome);
}

/// The `webhook` span: the channel, then what the request brought (`events`), the first inbox
/// entry it appended (`seq`, `conversation`: the same fields as the `turn` span it starts)
/// and how it ended. Never the body.
#[tracing::instrument(name = "webhook", skip_all, fields(channel = Empty, events = Empty, seq = Empty, conversation = Empty, outcome = Empty))]
pub async fn receive(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(adapter) = state.channels.get(&channel_id).cloned() else {
        outcome(&state, "unknown", "unknown_channel");
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    };
    let channel = adapter.id().clone();
    tracing::Span::current().record("channel", channel.as_str());
    let request = request(headers, query, body);
    if let Err(e) = adapter.verify(&request) {
        outcome(&state, channel.as_str(), "unauthorized");
        tracing::warn!(%channel, reason = %e, "webhook refused");
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let events = match adapter.parse(&request) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(%channel, size = request.body.len(), error = %e, "webhook payload not understood; kept and acknowledged");
            let raw = raw_of(adapter.as_ref(), &request);
            return keep_alone(&state, &channel, raw, "unparsed").await;
        }
    };
    let (mut events, stale) = without_stale(&state, channel.as_str(), events);
    tracing::Span::current().record("events", events.len());
    if events.is_empty() && stale > 0 {
        // Kept, to no conversation, as anything else not answered is.
        let raw = raw_of(adapter.as_ref(), &request);
        return keep_alone(&state, &channel, raw, "stale").await;
    }
    if events.is_empty() {
        // Nothing the gateway reads (an error report, an echo, an update kind it does not
        // use): kept all the same, so nothing a platform sends vanishes without a trace.
        tracing::debug!(%channel, "a webhook with nothing to store but itself");
        let raw = raw_of(adapter.as_ref(), &request);
        let answer = keep_alone(&state, &channel, raw, "ignored").await;
        // What the platform still waits for (a stray button tap's spinner), off the answer's
        // path.
        tokio::spawn(async move { adapter.unanswered(&request).await });
        return answer;
    }
    // A web chat visitor past the budget of its address: kept, not given to the agents.
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    state
        .visitors
        .mark(peer, &mut events, std::time::Instant::now());
    // Kept with the events, without credentials, for `concierge inbox export` and `replay`.
    let raw = raw_of(adapter.as_ref(), &request);
    match state.store.ingest_raw(&events, raw).await {
        Ok(stored) => {
            if stored.accepted > 0 {
                state.inbox_wake.notify_one();
            }
            stored.trace();
            receipts(&events);
            if stored.accepted > 0 {
                faults(&state, adapter.as_ref(), &events);
            }
            // Even for a status already stored: the confirmation may be what a crash cut.
            // Likewise the webhooks' events: told before the platform gets its 200, so a
            // crash in between has the platform send the status again.
            let confirmed = match confirm_sends(&state, &events).await {
                Ok(()) => tell_statuses(&state, &events).await,
                Err(e) => Err(e),
            };
            if let Err(e) = confirmed {
                outcome(&state, channel.as_str(), "store_error");
                tracing::error!(%channel, error = %e, "cannot confirm a send from its status");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
            }
            let label = if stored.accepted > 0 {
                "accepted"
            } else if stored.duplicates > 0 {
                "duplicate"
            } else {
                // Only signals the store keeps nothing of (typing).
                "ignored"
            };
            outcome(&state, channel.as_str(), label);
            tracing::debug!(%channel, accepted = stored.accepted, duplicates = stored.duplicates, "webhook stored");
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => {
            // Nothing was stored: a 503 asks the platform to deliver it again later.
            outcome(&state, channel.as_str(), "store_error");
            tracing::error!(%channel, error = %e, "cannot store a webhook");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
        }
    }
}

/// The request as the store keeps it: everything but its credentials.
fn raw_of(adapter: &dyn ChannelAdapter, request: &WebhookRequest) -> concierge_store::RawWebhook {
    let (query, headers) =
        concierge_store::credentials::kept_request(request.raw_query.as_deref(), &request.headers);
    concierge_store::RawWebhook {
        channel: adapter.id().clone(),
        kind: adapter.kind().name().to_string(),
        received_at: concierge_domain::now_millis(),
        query,
        headers,
        body: request.body.clone(),
    }
}

/// Keeps a webhook that brought no event, counts it under `label` and acknowledges it; a store
/// that cannot keep it asks the platform to send it again.
async fn keep_alone(
    state: &AppState,
    channel: &concierge_domain::ChannelId,
    raw: concierge_store::RawWebhook,
    label: &'static str,
) -> Response {
    match state.store.ingest_raw(&[], raw).await {
        Ok(_) => {
            outcome(state, channel.as_str(), label);
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => {
            outcome(state, channel.as_str(), "store_error");
            tracing::error!(%channel, error = %e, "cannot keep a webhook");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
        }
    }
}

/// The events without the customer's messages the platform dated before
/// `[server] max_event_age_secs`: a webhook replayed after its dedupe key expired must not be
/// answered again. Those left out are logged, never stored; a webhook of nothing else is
/// counted as `stale`.
fn without_stale(
    state: &AppState,
    channel: &str,
    events: Vec<InboundEvent>,
) -> (Vec<InboundEvent>, usize) {
    let Some(max_age) = state.max_event_age_ms else {
        return (events, 0);
    };
    let cutoff = now_millis().saturating_sub(max_age);
    let before = events.len();
    let kept: Vec<InboundEvent> = events
        .into_iter()
        .filter(|e| {
            let answerable = matches!(
                e.kind,
                EventKind::Message(_) | EventKind::Edit { .. } | EventKind::Started { .. }
            );
            !(answerable && e.at < cutoff)
        })
        .collect();
    let stale = before - kept.len();
    if stale > 0 {
        tracing::warn!(
            %channel,
            stale,
            max_age_secs = max_age / 1000,
            "messages older than the maximum event age acknowledged and dropped"
        );
    }
    (kept, stale)
}

/// A status that names our reply confirms a send whose answer was lost (a timeout, a closed
/// connection, a crash between the platform's answer and our record of it): the reply is
/// marked sent instead of being sent again, and counted as `reconciled`.
async fn confirm_sends(
    state: &AppState,
    events: &[InboundEvent],
) -> Result<(), concierge_store::StoreError> {
    for event in events {
        let EventKind::Status {
            target,
            ours: Some(ours),
            ..
        } = &event.kind
        else {
            continue;
        };
        if state
            .store
            .confirm_sent(&event.channel, *ours, target.clone(), now_millis())
            .await?
        {
            state.metrics.delivery(event.channel.as_str(), "reconciled");
            tracing::info!(channel = %event.channel, message_id = %ours, platform_id = %target,
                "a reply whose send went unanswered was confirmed by the platform's status; it will not be sent again");
        }
    }
    Ok(())
}

/// `message.delivered` (a delivered or read status) and `message.failed` for the webhooks
/// that take them, about the reply the status names.
async fn tell_statuses(
    state: &AppState,
    events: &[InboundEvent],
) -> Result<(), concierge_store::StoreError> {
    let webhooks = &state.webhooks;
    for event in events {
        let EventKind::Status { target, status, .. } = &event.kind else {
            continue;
        };
        let kind = match status {
            DeliveryStatus::Delivered | DeliveryStatus::Read => "message.delivered",
            DeliveryStatus::Failed { .. } => "message.failed",
            _ => continue,
        };
        if !webhooks.wants(kind) {
            continue;
        }
        let Some(message) = state
            .store
            .message_by_platform_id(&event.channel, target)
            .await?
        else {
            continue;
        };
        let mut told = OutEvent::message(kind, &message).with("status", json!(status.name()));
        told.id = format!("{kind}.{}.{}", message.id, status.name());
        if let DeliveryStatus::Failed { code, reason } = status {
            told = told.with("error", json!({ "code": code, "reason": reason }));
        }
        webhooks.emit(told).await?;
    }
    Ok(())
}

/// The faults of the channel the request reported, now kept: counted by code, and applied
/// (a rate limit slows the channel's sends).
fn faults(state: &AppState, adapter: &dyn ChannelAdapter, events: &[InboundEvent]) {
    for event in events {
        if let EventKind::ChannelError(fault) = &event.kind {
            state
                .metrics
                .channel_fault(event.channel.as_str(), fault.code.as_deref());
            adapter.fault(fault);
        }
    }
}

/// A `receipt` span for each delivery status the request brought, under the `webhook` one:
/// the channel, the platform's id of our message (the `platform_id` of its `deliver`
/// span) and the status, so a reply can be followed to the customer's phone.
fn receipts(events: &[InboundEvent]) {
    for event in events {
        if let EventKind::Status { target, status, .. } = &event.kind {
            let span = tracing::info_span!(
                "receipt",
                channel = %event.channel,
                platform_id = %target,
                status = status.name(),
            );
            span.in_scope(|| tracing::debug!("delivery status received"));
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
