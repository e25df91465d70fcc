//! Notifications over the API, for systems with the `notify` scope: `POST /notifications`
//! sends a customer a catalogue template (or a text where the channel allows one), once per
//! `Idempotency-Key`; `GET /notifications/{id}` says how far it got. `POST
//! /notifications/batch` sends one template to up to 10,000 customers, paced; its progress is
//! `GET /notifications/batch/{id}`, and `POST …/stop` stops it.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::api::{Problem, Rejection, idempotency_key, problem};
use super::body::ApiJson;
use super::service::{Scope, Serviced};
use concierge_domain::{DeliveryStatus, Millis, now_millis};
use concierge_engine::notify::{
    BatchBody, NotifyError, NotifyRequest, Params, TemplateBody, TemplateUse, To,
};
use concierge_store::Batch;
use concierge_store::Purpose;

/// The `notify` scope: writing to customers first.
pub struct NotifyScope;

impl Scope for NotifyScope {
    const NAME: Option<&'static str> = Some("notify");
}

#[derive(Deserialize, ToSchema)]
pub struct NotificationBody {
    /// The channel id to send on.
    channel: String,
    #[schema(value_type = Object)]
    to: To,
    #[serde(default)]
    template: Option<TemplateBody>,
    /// A text instead of a template: on channels without templates, or inside an open
    /// 24-hour window.
    #[serde(default)]
    text: Option<String>,
    /// For a text: `utility` (the default) or `marketing`.
    #[serde(default)]
    purpose: Option<String>,
    /// Anything the agents should know when the customer answers (an order, a delivery):
    /// kept with the message, never sent.
    #[serde(default)]
    #[schema(value_type = Object)]
    context: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    notification: String,
    conversation: String,
    /// The outbound message it queued.
    message: String,
    /// An earlier request with the same Idempotency-Key queued it.
    replayed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    notification: String,
    conversation: String,
    message: String,
    channel: String,
    contact: String,
    service: String,
    purpose: String,
    template: Option<String>,
    #[schema(value_type = i64)]
    created_at: Millis,
    /// `pending`, `sent`, `delivered`, `read` or `failed`.
    status: String,
    /// Why it failed, when it did.
    reason: Option<String>,
}

/// A refusal with its stable code (`opted_out`, `no_consent`, `unknown_template`,
/// `invalid`, `unknown_channel`) and what it means.
#[derive(Serialize, ToSchema)]
pub struct NotifyProblem {
    error: String,
    message: String,
}

fn refused(e: &NotifyError) -> Response {
    let status = match e {
        NotifyError::UnknownChannel(_) => StatusCode::NOT_FOUND,
        NotifyError::Invalid(_) | NotifyError::UnknownTemplate { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        NotifyError::OptedOut | NotifyError::NoConsent => StatusCode::CONFLICT,
        NotifyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        Json(NotifyProblem {
            error: e.code().to_string(),
            message: e.to_string(),
        }),
    )
        .into_response()
}

/// The engine's request for a body, or why the body cannot be one.
pub(crate) fn request_of(
    service: &str,
    key: Option<String>,
    body: NotificationBody,
) -> Result<NotifyRequest, NotifyError> {
    let to = body.to.recipient();
    let purpose = match body.purpose.as_deref() {
        None => None,
        Some(name) => Some(Purpose::parse(name).ok_or_else(|| {
            NotifyError::Invalid("`purpose` is `utility` or `marketing`".to_string())
        })?),
    };
    let template = body.template.map(|t| TemplateUse {
        params: t.params.as_ref().map(Params::by_name).unwrap_or_default(),
        name: t.name,
        language: t.language,
    });
    Ok(NotifyRequest {
        service: service.to_string(),
        key,
        channel: body.channel,
        to,
        template,
        text: body.text,
        purpose,
        context: body.context,
    })
}

/// Sends a customer a notification (service scope `notify`): queued in the outbox like any
/// reply, once per Idempotency-Key; refused, with nothing sent, when anything is wrong.
#[utoipa::path(post, path = "/notifications", tag = "service",
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key again queues nothing more and answers the first notification")),
    request_body = NotificationBody, responses(
        (status = 202, description = "Queued (or queued before, under its key)", body = Accepted),
        (status = 400, description = "A malformed Idempotency-Key", body = Problem),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `notify` scope", body = Problem),
        (status = 404, description = "No such channel (`unknown_channel`)", body = NotifyProblem),
        (status = 409, description = "The customer opted out (`opted_out`), or a marketing template without their consent (`no_consent`)", body = NotifyProblem),
        (status = 422, description = "An unknown template (`unknown_template`), a missing or bad parameter, a phone number not in E.164, a text outside the window (`invalid`)", body = NotifyProblem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn notify(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<NotifyScope>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NotificationBody>,
) -> Result<Response, Rejection> {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(answer) => return Ok(*answer),
    };
    let request = match request_of(&caller.service, key, body) {
        Ok(request) => request,
        Err(e) => return Ok(refused(&e)),
    };
    match state.notifier.notify(request, None).await {
        Ok(queued) => {
            if !queued.replayed {
                state.outbox_wake.notify_one();
            }
            let n = queued.notification;
            Ok((
                StatusCode::ACCEPTED,
                Json(Accepted {
                    notification: n.id,
                    conversation: n.conversation.to_string(),
                    message: n.message.to_string(),
                    replayed: queued.replayed,
                }),
            )
                .into_response())
        }
        Err(NotifyError::Store(e)) => Err(e.into()),
        Err(e) => Ok(refused(&e)),
    }
}

/// A notification and how far its message got (service scope `notify`).
#[utoipa::path(get, path = "/notifications/{id}", tag = "service",
    params(("id" = String, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "The notification", body = NotificationView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `notify` scope", body = Problem),
        (status = 404, description = "No such notification", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn notification(
    State(state): State<AppState>,
    _caller: Serviced<NotifyScope>,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    let missing = || problem(StatusCode::NOT_FOUND, "no such notification");
    if id.len() > 64 {
        return Ok(missing());
    }
    let Some(n) = state.notifier.get(&id).await? else {
        return Ok(missing());
    };
    let message = state.store.message(n.message).await?;
    let (status, reason) = match message.map(|m| m.status) {
        Some(DeliveryStatus::Failed { reason, .. }) => ("failed".to_string(), Some(reason)),
        Some(status) => (status.name().to_string(), None),
        None => ("pending".to_string(), None),
    };
    Ok(Json(NotificationView {
        notification: n.id,
        conversation: n.conversation.to_string(),
        message: n.message.to_string(),
        channel: n.channel.to_string(),
        contact: n.contact.to_string(),
        service: n.service,
        purpose: n.purpose.name().to_string(),
        template: n.template,
        created_at: n.created_at,
        status,
        reason,
    })
    .into_response())
}

/// A batch and how far it got.
#[derive(Serialize, ToSchema)]
pub struct BatchView {
    batch: String,
    /// `running`, `stopped` or `done`.
    state: String,
    channel: String,
    template: Option<String>,
    total: u32,
    /// Recipients worked so far (queued or skipped), in order.
    processed: u32,
    queued: u32,
    skipped: u32,
    /// Skipped recipients by reason (`opted_out`, `no_consent`, `invalid`…).
    #[schema(value_type = Object)]
    skipped_by_reason: std::collections::BTreeMap<String, u32>,
    #[schema(value_type = i64)]
    created_at: Millis,
    #[schema(value_type = i64)]
    updated_at: Millis,
    /// A new batch, or (`true`) the one an earlier request with the same key made.
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<bool>,
}

fn batch_view(b: Batch, replayed: Option<bool>) -> BatchView {
    BatchView {
        batch: b.id,
        state: b.state.name().to_string(),
        channel: b.channel.to_string(),
        template: b.template,
        total: b.total,
        processed: b.next,
        queued: b.queued,
        skipped: b.skipped,
        skipped_by_reason: b.reasons,
        created_at: b.created_at,
        updated_at: b.updated_at,
        replayed,
    }
}

/// Sends one template to up to 10,000 customers (service scope `notify`): kept at once,
/// then queued at `[notifications] batch_per_second`, each recipient checked as a single
/// notification is (those refused are skipped, by reason). The same Idempotency-Key again
/// answers the first batch.
#[utoipa::path(post, path = "/notifications/batch", tag = "service",
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key again starts nothing and answers the first batch")),
    request_body = BatchBody, responses(
        (status = 202, description = "Accepted: the batch and its progress", body = BatchView),
        (status = 400, description = "A malformed Idempotency-Key", body = Problem),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `notify` scope", body = Problem),
        (status = 404, description = "No such channel (`unknown_channel`)", body = NotifyProblem),
        (status = 422, description = "An unknown template, or no recipients or more than 10,000 (`invalid`)", body = NotifyProblem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn batch(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<NotifyScope>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Response, Rejection> {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(answer) => return Ok(*answer),
    };
    match state
        .notifier
        .start_batch(state.store.as_ref(), &caller.service, key, body)
        .await
    {
        Ok((batch, replayed)) => Ok((
            StatusCode::ACCEPTED,
            Json(batch_view(batch, Some(replayed))),
        )
            .into_response()),
        Err(NotifyError::Store(e)) => Err(e.into()),
        Err(e) => Ok(refused(&e)),
    }
}

/// A batch's progress (service scope `notify`; only the service that started it sees it).
#[utoipa::path(get, path = "/notifications/batch/{id}", tag = "service",
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `notify` scope", body = Problem),
        (status = 404, description = "No such batch of this service", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn batch_progress(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<NotifyScope>,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    match own_batch(&state, &caller.service, &id).await? {
        Some(batch) => Ok(Json(batch_view(batch, None)).into_response()),
        None => Ok(problem(StatusCode::NOT_FOUND, "no such batch")),
    }
}

/// Stops a batch: the recipients not reached yet get nothing (service scope `notify`).
#[utoipa::path(post, path = "/notifications/batch/{id}/stop", tag = "service",
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, stopped (or already done)", body = BatchView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not a service's token with the `notify` scope", body = Problem),
        (status = 404, description = "No such batch of this service", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn stop_batch(
    State(state): State<AppState>,
    Serviced(caller, _): Serviced<NotifyScope>,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    if own_batch(&state, &caller.service, &id).await?.is_none() {
        return Ok(problem(StatusCode::NOT_FOUND, "no such batch"));
    }
    match state.store.stop_batch(&id, now_millis()).await? {
        Some(batch) => Ok(Json(batch_view(batch, None)).into_response()),
        None => Ok(problem(StatusCode::NOT_FOUND, "no such batch")),
    }
}

async fn own_batch(
    state: &AppState,
    service: &str,
    id: &str,
) -> Result<Option<Batch>, concierge_store::StoreError> {
    if id.len() > 64 {
        return Ok(None);
    }
    Ok(state
        .store
        .batch(id)
        .await?
        .filter(|b| b.service == service))
}
