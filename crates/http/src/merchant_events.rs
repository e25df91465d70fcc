//! What the merchant's systems report about a conversation (`POST
//! /conversations/{id}/events`, service scope `events`): a payment that succeeded or failed,
//! an order shipped, any type of theirs. The event enters the conversation's inbox like a
//! customer's message (the same ordered lane, the same dedupe, one answer), for the agents
//! to tell the customer; while a person holds the thread, the consoles get it and the bot
//! stays silent. Posted twice (the same `id`), it is answered once.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::api::{Problem, Rejection, problem};
use super::body::ApiJson;
use super::service::{Scope, Serviced};
use concierge_domain::commerce::{MAX_EVENT_BYTES, event_name_ok};
use concierge_domain::{
    Content, ConversationId, EventId, EventKind, InboundEvent, InboundMessage, PlatformMessageId,
    now_millis,
};

/// The `events` scope: telling conversations what happened in the merchant's systems.
pub struct EventsScope;

impl Scope for EventsScope {
    const NAME: Option<&'static str> = Some("events");
}

/// The longest event id kept.
const MAX_ID: usize = 128;

#[derive(Deserialize, ToSchema)]
pub struct EventBody {
    /// The sender's id of this event (a payment provider's event id): a second post with the
    /// same id changes nothing.
    id: String,
    /// `payment.succeeded`, `payment.failed`, `order.shipped`, `order.delivered`, or a type
    /// of the merchant's own: letters, digits and `._-`, at most 64.
    #[serde(rename = "type")]
    kind: String,
    /// What the agents should know (an order number, an amount, a tracking link): at most
    /// 8 KiB of JSON, data for them, never sent to the customer as it is.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    conversation: String,
    event: String,
    /// An earlier post of the same `id` was taken: this one changed nothing.
    duplicate: bool,
}

/// Tells a conversation what happened in the merchant's systems (service scope `events`):
/// it is answered by the agents in the conversation's order, once per event `id`.
#[utoipa::path(post, path = "/conversations/{id}/events", tag = "service",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = EventBody, responses(
        (status = 202, description = "Taken into the conversation's lane (or already, under its id)", body = EventAccepted),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `events` scope", body = Problem),
        (status = 404, description = "No such conversation", body = Problem),
        (status = 422, description = "The event is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn post_event(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<EventsScope>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EventBody>,
) -> Result<Response, Rejection> {
    let id_ok = !body.id.is_empty()
        && body.id.len() <= MAX_ID
        && body.id.chars().all(|c| c.is_ascii_graphic());
    if !id_ok {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`id` is 1 to {MAX_ID} printable ASCII characters"),
        ));
    }
    if !event_name_ok(&body.kind) {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`type` is 1 to 64 letters, digits and `._-` (`payment.succeeded`)",
        ));
    }
    if !(body.data.is_object() || body.data.is_null()) {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`data` is a JSON object",
        ));
    }
    if body.data.to_string().len() > MAX_EVENT_BYTES {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`data` is at most {MAX_EVENT_BYTES} bytes of JSON"),
        ));
    }
    let unknown = || problem(StatusCode::NOT_FOUND, "no such conversation");
    let Ok(conversation) = ConversationId::parse(id) else {
        return Ok(unknown());
    };
    let Some(stored) = state.store.conversation(&conversation).await? else {
        return Ok(unknown());
    };
    // Keyed by the service: two systems' ids never meet.
    let key = format!("{}:{}", caller.service, body.id);
    let (Ok(event_id), Ok(platform_id)) = (
        EventId::parse(format!("merchant-event:{key}")),
        PlatformMessageId::parse(format!("merchant-event:{key}")),
    ) else {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`id` cannot be an event id",
        ));
    };
    let event = InboundEvent {
        channel: stored.channel,
        event_id,
        contact: stored.contact,
        aliases: Vec::new(),
        at: now_millis(),
        kind: EventKind::Message(InboundMessage {
            platform_id,
            content: Content::Event {
                name: body.kind.clone(),
                id: body.id.clone(),
                service: caller.service.clone(),
                data: body.data,
            },
            reply_to: None,
            display_name: None,
            over_budget: None,
        }),
    };
    let outcome = state.store.ingest(&[event]).await?;
    if !outcome.appended.is_empty() {
        state.inbox_wake.notify_one();
    }
    state.metrics.merchant_event(outcome.accepted == 0);
    tracing::info!(
        service = %caller.service,
        event = %body.kind,
        conversation = %conversation,
        duplicate = outcome.accepted == 0,
        "merchant event taken"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(EventAccepted {
            conversation: conversation.to_string(),
            event: body.id,
            duplicate: outcome.accepted == 0,
        }),
    )
        .into_response())
}
