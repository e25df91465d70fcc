//! The concierge API under `/api/v1`: bearer tokens (kept hashed), team scoping on every
//! route, the queue, a thread with its brief, the actions, and the live event stream.
//! The contract is served as OpenAPI at `/api/v1/openapi.json`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::domain::{
    Author, ConversationId, DeliveryStatus, Direction, Message, Millis, ThreadState, now_millis,
};
use crate::handoff::access::hash_token;
use crate::handoff::actions::ActionError;
use crate::handoff::{Brief, Caller, Desk, priority_rank};
use crate::store::{Conversation, Handoff, QueueEntry, StoreError};

const OPENAPI: &str = include_str!("assets/openapi.json");
/// How many messages a thread view returns: the latest ones.
const HISTORY: usize = 200;
/// The longest `Idempotency-Key` a reply may carry, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How often a connected console refreshes its concierge's presence.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often an open event stream checks that its token and its concierge still stand: one
/// indexed read of the token's hash.
const REVALIDATE: Duration = Duration::from_secs(1);

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

impl IntoResponse for ActionError {
    fn into_response(self) -> Response {
        let status = match &self {
            ActionError::NotFound => StatusCode::NOT_FOUND,
            ActionError::Forbidden(_) => StatusCode::FORBIDDEN,
            ActionError::Conflict(_) => StatusCode::CONFLICT,
            ActionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ActionError::Store(e) => {
                tracing::warn!(error = %e, "the store failed an API request");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; try again",
                );
            }
        };
        error(status, self.to_string())
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Rejection(ActionError::Store(e).into_response())
    }
}

/// A refused request, already answered.
pub struct Rejection(Response);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0
    }
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The authenticated caller of a request.
pub struct Authed(pub Caller);

impl FromRequestParts<AppState> for Authed {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Rejection> {
        let Some(token) = bearer(&parts.headers) else {
            return Err(Rejection(unauthorized(
                "an `Authorization: Bearer <token>` header is required",
            )));
        };
        // Looked up by its hash: the token itself is never stored nor compared.
        let owner = state.desk.store.token_owner(&hash_token(token)).await?;
        let caller = owner.and_then(|name| state.desk.caller(&name).cloned());
        match caller {
            Some(caller) => Ok(Authed(caller)),
            None => Err(Rejection(unauthorized("this token is not valid"))),
        }
    }
}

fn conversation_id(raw: String) -> Result<ConversationId, ActionError> {
    ConversationId::parse(raw).map_err(|_| ActionError::NotFound)
}

#[derive(Serialize)]
struct ContactView {
    id: String,
    name: Option<String>,
    phone: Option<String>,
}

#[derive(Serialize)]
struct HandoffView {
    id: String,
    reason: String,
    priority: String,
    team: Option<String>,
    requested_by: String,
    created_at: Millis,
}

#[derive(Serialize)]
struct SlaView {
    due_at: Option<Millis>,
    /// `ok` (running), `breached`, or `met` (a concierge answered in time).
    state: &'static str,
}

#[derive(Serialize)]
struct LastMessage {
    text: String,
    at: Millis,
}

#[derive(Serialize)]
struct ItemView {
    conversation: String,
    channel: String,
    channel_kind: String,
    contact: ContactView,
    state: &'static str,
    owner: Option<String>,
    offered_to: Option<String>,
    handoff: Option<HandoffView>,
    waiting_since: Millis,
    sla: SlaView,
    last_message: Option<LastMessage>,
}

fn item_view(
    state: &AppState,
    conversation: &Conversation,
    name: Option<String>,
    handoff: Option<&Handoff>,
    last: Option<&Message>,
    now: Millis,
) -> ItemView {
    let kind = state
        .channels
        .adapter(&conversation.channel)
        .map(|a| a.kind());
    let sla_state = match handoff {
        Some(h) if h.breached_at.is_some() => "breached",
        Some(h) if h.first_response_at.is_some() => "met",
        Some(h) if h.sla_due_at.is_some_and(|d| d <= now) => "breached",
        _ => "ok",
    };
    ItemView {
        conversation: conversation.id.to_string(),
        channel: conversation.channel.to_string(),
        channel_kind: kind.map(|k| k.name().to_string()).unwrap_or_default(),
        contact: ContactView {
            id: conversation.contact.to_string(),
            name,
            phone: kind.and_then(|k| k.verified_phone(&conversation.contact, &[])),
        },
        state: conversation.thread.name(),
        owner: match &conversation.thread {
            ThreadState::Human { concierge } => Some(concierge.clone()),
            _ => None,
        },
        offered_to: handoff
            .filter(|h| h.offer_until.is_some_and(|u| u > now))
            .and_then(|h| h.offered_to.clone()),
        handoff: handoff.map(|h| HandoffView {
            id: h.id.clone(),
            reason: h.reason.clone(),
            priority: h.priority.clone().unwrap_or_else(|| "normal".to_string()),
            team: h.team.clone(),
            requested_by: h.requested_by.clone(),
            created_at: h.created_at,
        }),
        waiting_since: handoff.map_or(conversation.last_message_at, |h| h.created_at),
        sla: SlaView {
            due_at: handoff.and_then(|h| h.sla_due_at),
            state: sla_state,
        },
        last_message: last.map(|m| LastMessage {
            text: crate::domain::clip_text(&m.content.describe(), 200),
            at: m.created_at,
        }),
    }
}

fn entry_view(state: &AppState, entry: &QueueEntry, now: Millis) -> ItemView {
    item_view(
        state,
        &entry.conversation,
        entry.contact_name.clone(),
        entry.handoff.as_ref(),
        entry.last_inbound.as_ref(),
        now,
    )
}

pub async fn me(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    let presence = state.desk.store.presence().await?;
    let status = presence
        .iter()
        .find(|p| p.concierge == caller.name)
        .map_or("away", |p| {
            if p.status == "online" {
                "online"
            } else {
                "away"
            }
        });
    Ok(Json(json!({
        "name": caller.name,
        "role": if caller.admin { "admin" } else { "concierge" },
        "teams": if caller.admin && caller.teams.is_empty() {
            state.desk.teams.iter().map(|t| t.name.clone()).collect()
        } else {
            caller.teams.clone()
        },
        "status": status,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct StatusBody {
    status: String,
}

pub async fn set_status(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Json(body): Json<StatusBody>,
) -> Result<Response, Rejection> {
    if body.status != "online" && body.status != "away" {
        return Err(Rejection(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status is `online` or `away`",
        )));
    }
    state
        .desk
        .store
        .touch_presence(&caller.name, Some(&body.status), now_millis())
        .await?;
    me(State(state), Authed(caller)).await
}

pub async fn teams(State(state): State<AppState>, Authed(_caller): Authed) -> Response {
    let now = now_millis();
    let teams: Vec<_> = state
        .desk
        .teams
        .iter()
        .map(|t| json!({ "name": t.name, "open": state.desk.is_open(t, now) }))
        .collect();
    Json(json!({ "teams": teams })).into_response()
}

pub async fn concierges(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> Result<Response, Rejection> {
    let now = now_millis();
    let queue = state.desk.store.queue().await?;
    let presence = state.desk.store.presence().await?;
    let list: Vec<_> = state
        .desk
        .concierges
        .iter()
        .map(|c| {
            let p = presence.iter().find(|p| p.concierge == c.name);
            json!({
                "name": c.name,
                "teams": c.teams,
                "role": if c.admin { "admin" } else { "concierge" },
                "status": p.map_or("away", |p| if p.status == "online" { "online" } else { "away" }),
                "online": p.is_some_and(|p| Desk::is_online(p, now)),
                "open_threads": crate::handoff::owned_by(&queue, &c.name),
                "capacity": c.capacity,
            })
        })
        .collect();
    Ok(Json(json!({ "concierges": list })).into_response())
}

pub async fn queue(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    let now = now_millis();
    let mut entries: Vec<QueueEntry> = state
        .desk
        .store
        .queue()
        .await?
        .into_iter()
        .filter(|e| caller.may_see(state.desk.entry_team(e)))
        .collect();
    entries.sort_by_key(|e| {
        let waiting = matches!(e.conversation.thread, ThreadState::Queued { .. });
        let h = e.handoff.as_ref();
        (
            !waiting,
            std::cmp::Reverse(priority_rank(h.and_then(|h| h.priority.as_deref()))),
            h.map_or(e.conversation.last_message_at, |h| h.created_at),
        )
    });
    let items: Vec<ItemView> = entries.iter().map(|e| entry_view(&state, e, now)).collect();
    Ok(Json(json!({ "now": now, "items": items })).into_response())
}

#[derive(Serialize)]
struct MessageView {
    id: String,
    seq: i64,
    direction: &'static str,
    author: serde_json::Value,
    text: String,
    kind: String,
    at: Millis,
    status: &'static str,
}

fn message_view(m: &Message) -> MessageView {
    let (kind, name) = match &m.author {
        Author::Customer => ("customer", None),
        Author::Agent(n) => ("agent", Some(n.clone())),
        Author::Concierge(n) => ("concierge", Some(n.clone())),
        Author::System => ("system", None),
    };
    MessageView {
        id: m.id.to_string(),
        seq: m.seq,
        direction: match m.direction {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        },
        author: json!({ "kind": kind, "name": name }),
        text: m.content.describe(),
        kind: m.content.kind_name().to_string(),
        at: m.created_at,
        status: match &m.status {
            DeliveryStatus::Failed { .. } => "failed",
            other => other.name(),
        },
    }
}

pub async fn conversation(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    let thread = state.desk.thread(&caller, &id).await?;
    let now = now_millis();
    let store = &state.desk.store;
    let messages = store.recent_messages(&id, HISTORY).await?;
    let last_inbound = messages
        .iter()
        .rev()
        .find(|m| m.direction == Direction::Inbound);
    let name = store.contact_name(&id).await?;
    let item = item_view(
        &state,
        &thread.conversation,
        name,
        thread.handoff.as_ref(),
        last_inbound,
        now,
    );
    let brief: Option<Brief> = thread
        .handoff
        .as_ref()
        .or(thread.handoffs.last())
        .and_then(|h| h.brief.as_deref())
        .and_then(|b| serde_json::from_str(b).ok());
    let notes: Vec<_> = store
        .notes(&id)
        .await?
        .into_iter()
        .map(|n| json!({ "author": n.author, "body": n.body, "at": n.created_at }))
        .collect();
    let messages: Vec<MessageView> = messages.iter().map(message_view).collect();
    Ok(Json(json!({
        "conversation": item,
        "messages": messages,
        "brief": brief,
        "notes": notes,
    }))
    .into_response())
}

/// The thread after an action the caller was allowed to take (even if, after a transfer,
/// they may no longer see it).
async fn answer(
    state: &AppState,
    _caller: &Caller,
    id: &ConversationId,
) -> Result<Response, ActionError> {
    let store = &state.desk.store;
    let conversation = store.conversation(id).await?.ok_or(ActionError::NotFound)?;
    let handoff = store
        .handoffs(id)
        .await?
        .into_iter()
        .rev()
        .find(|h| h.is_open());
    let item = item_view(
        state,
        &conversation,
        None,
        handoff.as_ref(),
        None,
        now_millis(),
    );
    Ok(Json(json!({ "conversation": item })).into_response())
}

pub async fn claim(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    state.desk.claim(&caller, &id).await?;
    answer(&state, &caller, &id).await
}

#[derive(Deserialize, Default)]
pub struct ReleaseBody {
    note: Option<String>,
}

pub async fn release(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: Option<Json<ReleaseBody>>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    let note = body.and_then(|Json(b)| b.note);
    state.desk.release(&caller, &id, note).await?;
    answer(&state, &caller, &id).await
}

pub async fn resolve(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    state.desk.resolve(&caller, &id).await?;
    answer(&state, &caller, &id).await
}

#[derive(Deserialize)]
pub struct TransferBody {
    team: Option<String>,
    concierge: Option<String>,
}

pub async fn transfer(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(body): Json<TransferBody>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    state
        .desk
        .transfer(&caller, &id, body.team, body.concierge)
        .await?;
    answer(&state, &caller, &id).await
}

#[derive(Deserialize)]
pub struct ReplyBody {
    text: String,
    #[serde(default)]
    choices: Vec<String>,
}

pub async fn reply(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ReplyBody>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    // A client retrying a request sends the same key: the reply is queued once, and the
    // retry answered with the same messages. Keys are compared exactly, per concierge and
    // thread.
    let key = match headers.get("idempotency-key") {
        None => uuid::Uuid::now_v7().simple().to_string(),
        Some(value) if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!("an Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        Some(value) => match value.to_str() {
            Ok(key) => key.to_string(),
            Err(_) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "an Idempotency-Key is printable ASCII",
                ));
            }
        },
    };
    let conversation = state
        .desk
        .store
        .conversation(&id)
        .await?
        .ok_or(ActionError::NotFound)?;
    let limit = state
        .channels
        .adapter(&conversation.channel)
        .map(|a| a.capabilities().max_text_chars)
        .filter(|n| *n > 0);
    let queued = state
        .desk
        .reply(&caller, &id, &body.text, &body.choices, &key, limit)
        .await?;
    state.outbox_wake.notify_one();
    let first = queued.first().map(ToString::to_string);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": first, "message_ids": queued.iter().map(ToString::to_string).collect::<Vec<_>>() })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct NoteBody {
    text: String,
}

pub async fn note(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(body): Json<NoteBody>,
) -> Result<Response, ActionError> {
    let id = conversation_id(id)?;
    state.desk.note(&caller, &id, &body.text).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ok": true }))).into_response())
}

pub async fn audit(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    if !caller.admin {
        return Err(Rejection(error(
            StatusCode::FORBIDDEN,
            "the audit log is for admins",
        )));
    }
    let records: Vec<_> = state
        .desk
        .store
        .audit_log(500)
        .await?
        .into_iter()
        .map(|r| {
            json!({ "seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
                    "conversation": r.conversation, "detail": r.detail })
        })
        .collect();
    Ok(Json(json!({ "records": records })).into_response())
}

/// The live events the caller may see, as server-sent events. While connected, the
/// concierge counts as present (offers go only to concierges whose console is open). The
/// stream ends when its token is revoked or its concierge is gone from the configuration or
/// changed teams (checked every [`REVALIDATE`]; they are then listed offline), when a newer
/// stream of the same concierge is past `max_streams_per_concierge`, or at shutdown.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    let Some(hash) = bearer(&headers).map(hash_token) else {
        return Err(Rejection(unauthorized("this token is not valid")));
    };
    state
        .desk
        .store
        .touch_presence(&caller.name, None, now_millis())
        .await?;
    let desk = state.desk.clone();
    let live = BroadcastStream::new(state.desk.events.subscribe());
    let slot = state.streams.open(
        "api",
        caller.name.clone(),
        state.stream_caps.per_concierge,
        &state.shutdown,
    );
    let ended = slot.ended();
    tokio::spawn(watch(state.clone(), caller.clone(), hash, ended.clone()));
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("{}"))
    });
    let stream = live.filter_map(move |event| {
        // Held while the stream lives: dropping it takes the stream off the count.
        let _slot = &slot;
        let out = match event {
            Ok(event) if desk.may_see_event(&caller, &event) => serde_json::to_string(&event)
                .ok()
                .map(|data| Event::default().event(event.kind.name()).data(data)),
            Ok(_) => None,
            // Too slow a reader missed events: it reloads everything.
            Err(_) => Some(Event::default().event("resync").data("{}")),
        };
        std::future::ready(out.map(Ok::<_, Infallible>))
    });
    let stream = hello.chain(stream).take_until(ended.cancelled_owned());
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Watches an open event stream until it ends: every [`REVALIDATE`], checks its token and
/// its caller, and ends it (listing the concierge offline) when either is gone; every
/// [`HEARTBEAT`], refreshes the concierge's presence.
async fn watch(state: AppState, caller: Caller, hash: String, ended: CancellationToken) {
    let store = &state.desk.store;
    let mut revalidate = tokio::time::interval(REVALIDATE);
    revalidate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut touched = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = ended.cancelled() => return,
            _ = revalidate.tick() => {}
        }
        if !still_stands(&state, &caller, &hash).await {
            tracing::info!(concierge = %caller.name, "a revoked token's event stream ended");
            state.metrics.stream_closed("api", "revoked");
            ended.cancel();
            if let Err(e) = store.clear_presence(&caller.name).await {
                tracing::warn!(error = %e, "cannot list a revoked concierge offline");
            }
            return;
        }
        if touched.elapsed() >= HEARTBEAT {
            touched = tokio::time::Instant::now();
            if let Err(e) = store.touch_presence(&caller.name, None, now_millis()).await {
                tracing::debug!(error = %e, "cannot record a console's presence");
            }
        }
    }
}

/// Whether the token still belongs to the caller, and the caller is still configured as the
/// stream found them (same teams and role). A store that cannot answer says nothing of the
/// token: the stream goes on, and is checked again at the next tick.
async fn still_stands(state: &AppState, caller: &Caller, hash: &str) -> bool {
    if state.desk.caller(&caller.name) != Some(caller) {
        return false;
    }
    match state.desk.store.token_owner(hash).await {
        Ok(owner) => owner.as_deref() == Some(caller.name.as_str()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot check an event stream's token");
            true
        }
    }
}
