//! The consent ledger over the API, for systems with the `consent` scope: `POST
//! /contacts/{id}/consent` records a customer's decision (from a checkout, a web form, a
//! call), `GET` reads a contact's history on a channel. A keyword in the chat (STOP, START)
//! records itself (see the orchestrator's consent step).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api::{Problem, Rejection, problem};
use super::body::ApiJson;
use super::service::{ConsentScope, Serviced};
use concierge_domain::{ChannelId, ContactId, Millis, now_millis};
use concierge_store::{ConsentRecord, NewConsent, Purpose, consent::latest};

#[derive(Deserialize, ToSchema)]
pub struct ConsentBody {
    /// The channel the customer is reached on (a channel id of the deployment).
    channel: String,
    /// `utility` or `marketing`.
    purpose: String,
    granted: bool,
    /// Where it was given or withdrawn: `checkout`, `web_form`, `call`, `api`…
    source: String,
    /// What the customer ticked, signed or said.
    #[serde(default)]
    proof: Option<String>,
    /// Recorded once per key: a retry adds nothing.
    #[serde(default)]
    key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    seq: i64,
    purpose: String,
    granted: bool,
    source: String,
    proof: Option<String>,
    #[schema(value_type = i64)]
    at: Millis,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentState {
    /// The latest decision on marketing; `null` when none was recorded.
    marketing: Option<bool>,
    /// The latest decision on utility messages; `null` when none was recorded.
    utility: Option<bool>,
    /// Every decision, oldest first.
    history: Vec<ConsentView>,
}

#[derive(Deserialize, IntoParams)]
pub struct ConsentQuery {
    /// The channel whose ledger to read (required).
    channel: Option<String>,
}

pub(super) fn state_of(records: &[ConsentRecord]) -> ConsentState {
    ConsentState {
        marketing: latest(records, Purpose::Marketing).map(|r| r.consent.granted),
        utility: latest(records, Purpose::Utility).map(|r| r.consent.granted),
        history: records
            .iter()
            .map(|r| ConsentView {
                seq: r.seq,
                purpose: r.consent.purpose.name().to_string(),
                granted: r.consent.granted,
                source: r.consent.source.clone(),
                proof: r.consent.proof.clone(),
                at: r.consent.at,
            })
            .collect(),
    }
}

/// The channel and contact a request names, or the answer refusing them.
fn addressed(
    state: &AppState,
    channel: &str,
    contact: &str,
) -> Result<(ChannelId, ContactId), Box<Response>> {
    let channel = state
        .channels
        .get(channel)
        .map(|a| concierge_channels::ChannelAdapter::id(a.as_ref()).clone())
        .ok_or_else(|| {
            Box::new(problem(
                StatusCode::NOT_FOUND,
                format!("no channel `{channel}`"),
            ))
        })?;
    let contact = ContactId::parse(contact).map_err(|_| {
        Box::new(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a contact id",
        ))
    })?;
    Ok((channel, contact))
}

/// Records a customer's consent decision (service scope `consent`).
#[utoipa::path(post, path = "/contacts/{id}/consent", tag = "service",
    params(("id" = String, Path, description = "The contact's id on the channel (a WhatsApp number's digits, a Telegram chat id…)")),
    request_body = ConsentBody, responses(
        (status = 201, description = "Recorded (or already, under its key); the contact's consent now", body = ConsentState),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `consent` scope", body = Problem),
        (status = 404, description = "No such channel", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn record(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<ConsentScope>,
    Path(contact): Path<String>,
    ApiJson(body): ApiJson<ConsentBody>,
) -> Result<Response, Rejection> {
    let (channel, contact) = match addressed(&state, &body.channel, &contact) {
        Ok(addressed) => addressed,
        Err(answer) => return Ok(*answer),
    };
    let Some(purpose) = Purpose::parse(&body.purpose) else {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`purpose` is `utility` or `marketing`",
        ));
    };
    let source = body.source.trim();
    if source.is_empty() || source.chars().count() > 64 {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`source` is 1 to 64 characters",
        ));
    }
    if body
        .proof
        .as_ref()
        .is_some_and(|p| p.chars().count() > 2000)
        || body
            .key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 255)
    {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`proof` is at most 2,000 characters, `key` 1 to 255 bytes",
        ));
    }
    let consent = NewConsent {
        channel: channel.clone(),
        contact: contact.clone(),
        purpose,
        granted: body.granted,
        source: source.to_string(),
        proof: body.proof.clone(),
        at: now_millis(),
        // Keys are per service: two systems' keys never meet.
        key: body
            .key
            .as_ref()
            .map(|k| format!("api:{}:{k}", caller.service)),
    };
    state.store.record_consent(&consent).await?;
    // Before the answer: a caller that retries after a crash tells it again (the same id
    // when it gave a key).
    state
        .webhooks
        .emit(concierge_engine::webhooks::OutEvent::consent(&consent))
        .await?;
    let records = state.store.consents(&channel, &contact).await?;
    Ok((StatusCode::CREATED, Json(state_of(&records))).into_response())
}

/// A contact's consent on a channel, with its history (service scope `consent`).
#[utoipa::path(get, path = "/contacts/{id}/consent", tag = "service",
    params(("id" = String, Path, description = "The contact's id on the channel"), ConsentQuery),
    responses(
        (status = 200, description = "The contact's consent and every decision", body = ConsentState),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `consent` scope", body = Problem),
        (status = 404, description = "No such channel", body = Problem),
        (status = 422, description = "No `channel`, or not a contact id", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn history(
    State(state): State<AppState>,
    _caller: Serviced<ConsentScope>,
    Path(contact): Path<String>,
    Query(query): Query<ConsentQuery>,
) -> Result<Response, Rejection> {
    let Some(channel) = query.channel.as_deref() else {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`channel` is required",
        ));
    };
    let (channel, contact) = match addressed(&state, channel, &contact) {
        Ok(addressed) => addressed,
        Err(answer) => return Ok(*answer),
    };
    let records = state.store.consents(&channel, &contact).await?;
    Ok(Json(state_of(&records)).into_response())
}
