//! The webhook outbox over the API, for systems with the `events` scope: which deliveries
//! failed (or are pending, or were delivered), and a failed one sent again.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api::{Problem, Rejection, problem};
use super::service::{Scope, Serviced};
use concierge_domain::{Millis, now_millis};
use concierge_store::{DeliveryState, WebhookDelivery};

/// The `events` scope: hearing what happens in conversations.
pub struct EventsScope;

impl Scope for EventsScope {
    const NAME: Option<&'static str> = Some("events");
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// `failed` (the default), `pending` or `delivered`.
    status: Option<String>,
    /// At most this many, newest first (100 by default, 1,000 at most).
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    id: i64,
    webhook: String,
    /// The `webhook-id` every attempt carried.
    event_id: String,
    event_type: String,
    status: String,
    attempts: u32,
    #[schema(value_type = i64)]
    created_at: Millis,
    #[schema(value_type = i64)]
    next_attempt_at: Millis,
    last_error: Option<String>,
    last_status: Option<u16>,
    #[schema(value_type = Option<i64>)]
    done_at: Option<Millis>,
    /// The event as it is POSTed.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

fn view(d: WebhookDelivery) -> DeliveryView {
    DeliveryView {
        id: d.id,
        webhook: d.webhook,
        event_id: d.event_id,
        event_type: d.event_type,
        status: d.state.name().to_string(),
        attempts: d.attempts,
        created_at: d.created_at,
        next_attempt_at: d.next_at,
        last_error: d.last_error,
        last_status: d.last_status,
        done_at: d.done_at,
        payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
    }
}

/// The webhook deliveries in a state, newest first (service scope `events`).
#[utoipa::path(get, path = "/webhooks/deliveries", tag = "service", params(DeliveriesQuery),
    responses(
        (status = 200, description = "The deliveries", body = Vec<DeliveryView>),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `events` scope", body = Problem),
        (status = 422, description = "Not a status", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn deliveries(
    State(state): State<AppState>,
    _caller: Serviced<EventsScope>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Response, Rejection> {
    let Some(status) = DeliveryState::parse(query.status.as_deref().unwrap_or("failed")) else {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`status` is `failed`, `pending` or `delivered`",
        ));
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let found = state.store.webhook_deliveries(status, limit).await?;
    Ok(Json(found.into_iter().map(view).collect::<Vec<_>>()).into_response())
}

/// Sends a failed delivery again, now, with its attempts started over (service scope
/// `events`).
#[utoipa::path(post, path = "/webhooks/deliveries/{id}/retry", tag = "service",
    params(("id" = i64, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued again"),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `events` scope", body = Problem),
        (status = 404, description = "No failed delivery with this id", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn retry(
    State(state): State<AppState>,
    _caller: Serviced<EventsScope>,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    let missing = || problem(StatusCode::NOT_FOUND, "no failed delivery with this id");
    let Ok(id) = id.parse::<i64>() else {
        return Ok(missing());
    };
    if !state.store.retry_webhook(id, now_millis()).await? {
        return Ok(missing());
    }
    state.webhooks.wake();
    Ok(StatusCode::ACCEPTED.into_response())
}
