//! The concierge API under `/api/v1`: bearer tokens (kept hashed), team scoping on every
//! route, the queue, a thread with its brief, the actions, and the live event stream.
//! The contract is served as OpenAPI at `/api/v1/openapi.json`, generated from the
//! `#[utoipa::path]` of each handler and the `ToSchema` of its types (see `openapi.rs`).

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
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::AppState;
use super::body::ApiJson;
use concierge_domain::{
    Author, Content, ConversationId, DeliveryStatus, Direction, MediaId, Message, Millis, Priority,
    StoredMedia, ThreadState, now_millis,
};
use concierge_engine::handoff::access::hash_token;
use concierge_engine::handoff::actions::{ActionError, Reply, ReplyShape};
use concierge_engine::handoff::{Brief, Caller, Desk};
use concierge_store::{Conversation, Handoff, QueueEntry, StoreError};

/// How many messages a thread view returns: the latest ones.
const HISTORY: usize = 200;
/// The longest `Idempotency-Key` a reply may carry, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How often a connected console refreshes its concierge's presence.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often an open event stream checks that its token and its concierge still stand: one
/// indexed read of the token's hash.
const REVALIDATE: Duration = Duration::from_secs(1);

/// The body of every refused request.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// What went wrong, in words.
    error: String,
}

/// The request's `Idempotency-Key`, if it has one: 1 to [`MAX_IDEMPOTENCY_KEY`] printable
/// ASCII bytes, else the 400 refusing it.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY => {
            Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("an Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
            )))
        }
        Some(value) => match value.to_str() {
            Ok(key) => Ok(Some(key.to_string())),
            Err(_) => Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "an Idempotency-Key is printable ASCII",
            ))),
        },
    }
}

/// The problem body with `status`.
pub(super) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    error(status, message)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(Problem {
            error: message.into(),
        }),
    )
        .into_response()
}

pub(super) fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// An action the desk refused, as the API answers it.
fn action_error(refused: ActionError) -> Response {
    {
        let status = match &refused {
            ActionError::NotFound => StatusCode::NOT_FOUND,
            ActionError::Forbidden(_) => StatusCode::FORBIDDEN,
            ActionError::Conflict(_) => StatusCode::CONFLICT,
            ActionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ActionError::Store(e @ StoreError::Conflict { .. }) => {
                tracing::warn!(error = %e, "the store refused an API request's write");
                return error(
                    StatusCode::CONFLICT,
                    "the request conflicts with what is stored",
                );
            }
            ActionError::Store(e) => {
                tracing::warn!(error = %e, "the store failed an API request");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; try again",
                );
            }
        };
        error(status, refused.to_string())
    }
}

impl From<ActionError> for Rejection {
    fn from(refused: ActionError) -> Self {
        Rejection(action_error(refused))
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Rejection(action_error(ActionError::Store(e)))
    }
}

/// A refused request, already answered.
pub struct Rejection(Response);

impl Rejection {
    pub(super) fn from_response(response: Response) -> Self {
        Rejection(response)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0
    }
}

/// The bearer token of a request, if it has one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
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
        let hash = hash_token(token);
        let owner = state.desk.queue.token_owner(&hash).await?;
        let caller = owner.and_then(|name| state.desk.caller(&name).cloned());
        match caller {
            Some(caller) => Ok(Authed(caller)),
            None if state.desk.queue.service_token(&hash).await?.is_some() => {
                Err(Rejection(error(
                    StatusCode::FORBIDDEN,
                    "a service's token acts as no concierge",
                )))
            }
            None => Err(Rejection(unauthorized("this token is not valid"))),
        }
    }
}

fn conversation_id(raw: String) -> Result<ConversationId, ActionError> {
    ConversationId::parse(raw).map_err(|_| ActionError::NotFound)
}

#[derive(Serialize, ToSchema)]
struct ContactView {
    id: String,
    name: Option<String>,
    phone: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct HandoffView {
    id: String,
    reason: String,
    priority: String,
    team: Option<String>,
    requested_by: String,
    #[schema(value_type = i64)]
    created_at: Millis,
}

#[derive(Serialize, ToSchema)]
struct SlaView {
    #[schema(value_type = Option<i64>)]
    due_at: Option<Millis>,
    /// `ok` (running), `breached`, or `met` (a concierge answered in time).
    #[schema(value_type = String)]
    state: &'static str,
}

#[derive(Serialize, ToSchema)]
struct LastMessage {
    text: String,
    #[schema(value_type = i64)]
    at: Millis,
}

/// A thread as the queue and the actions show it.
#[derive(Serialize, ToSchema)]
struct ItemView {
    conversation: String,
    channel: String,
    channel_kind: String,
    contact: ContactView,
    /// `bot`, `queued`, `human` or `closed`.
    #[schema(value_type = String)]
    state: &'static str,
    owner: Option<String>,
    offered_to: Option<String>,
    handoff: Option<HandoffView>,
    #[schema(value_type = i64)]
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
            text: concierge_domain::clip_text(&m.content.preview(), 200),
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

/// The caller as the API knows them.
#[derive(Serialize, ToSchema)]
pub struct MeView {
    name: String,
    /// `admin` or `concierge`.
    #[schema(value_type = String)]
    role: &'static str,
    teams: Vec<String>,
    /// `online` or `away`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// The caller: name, role, teams and status.
#[utoipa::path(get, path = "/me", tag = "concierge", responses(
        (status = 200, description = "The caller", body = MeView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn me(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    let presence = state.desk.queue.presence().await?;
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
    Ok(Json(MeView {
        name: caller.name.clone(),
        role: if caller.admin { "admin" } else { "concierge" },
        teams: if caller.admin && caller.teams.is_empty() {
            state.desk.teams.iter().map(|t| t.name.clone()).collect()
        } else {
            caller.teams.clone()
        },
        status,
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct StatusBody {
    /// `online` or `away`.
    status: String,
}

/// Sets the caller's status.
#[utoipa::path(post, path = "/me/status", tag = "concierge", request_body = StatusBody, responses(
        (status = 200, description = "The caller, with the new status", body = MeView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 422, description = "Not `online` or `away`", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn set_status(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(body): ApiJson<StatusBody>,
) -> Result<Response, Rejection> {
    if body.status != "online" && body.status != "away" {
        return Err(Rejection(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status is `online` or `away`",
        )));
    }
    state
        .desk
        .queue
        .touch_presence(&caller.name, Some(&body.status), now_millis())
        .await?;
    me(State(state), Authed(caller)).await
}

#[derive(Serialize, ToSchema)]
pub struct TeamView {
    name: String,
    /// Whether the team is within its hours now.
    open: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TeamsView {
    teams: Vec<TeamView>,
}

/// The configured teams, and whether each is open now.
#[utoipa::path(get, path = "/teams", tag = "concierge", responses(
        (status = 200, description = "The teams", body = TeamsView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn teams(State(state): State<AppState>, Authed(_caller): Authed) -> Response {
    let now = now_millis();
    let teams: Vec<TeamView> = state
        .desk
        .teams
        .iter()
        .map(|t| TeamView {
            name: t.name.clone(),
            open: state.desk.is_open(t, now),
        })
        .collect();
    Json(TeamsView { teams }).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct ConciergeView {
    name: String,
    teams: Vec<String>,
    /// `admin` or `concierge`.
    #[schema(value_type = String)]
    role: &'static str,
    /// `online` or `away`, as the concierge set it.
    #[schema(value_type = String)]
    status: &'static str,
    /// Whether a console of theirs is connected now.
    online: bool,
    open_threads: usize,
    capacity: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ConciergesView {
    concierges: Vec<ConciergeView>,
}

/// The configured concierges, their presence and load.
#[utoipa::path(get, path = "/concierges", tag = "concierge", responses(
        (status = 200, description = "The concierges", body = ConciergesView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn concierges(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> Result<Response, Rejection> {
    let now = now_millis();
    let queue = state.desk.queue.queue().await?;
    let presence = state.desk.queue.presence().await?;
    let concierges: Vec<ConciergeView> = state
        .desk
        .concierges
        .iter()
        .map(|c| {
            let p = presence.iter().find(|p| p.concierge == c.name);
            ConciergeView {
                name: c.name.clone(),
                teams: c.teams.clone(),
                role: if c.admin { "admin" } else { "concierge" },
                status: p.map_or("away", |p| {
                    if p.status == "online" {
                        "online"
                    } else {
                        "away"
                    }
                }),
                online: p.is_some_and(|p| Desk::is_online(p, now)),
                open_threads: concierge_engine::handoff::owned_by(&queue, &c.name),
                capacity: c.capacity,
            }
        })
        .collect();
    Ok(Json(ConciergesView { concierges }).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    /// The gateway's clock, in milliseconds since the epoch.
    #[schema(value_type = i64)]
    now: Millis,
    items: Vec<ItemView>,
}

/// The threads the caller may see that wait for or are with a concierge, waiting first,
/// then by priority and age.
#[utoipa::path(get, path = "/queue", tag = "concierge", responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn queue(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> Result<Response, Rejection> {
    let now = now_millis();
    let mut entries: Vec<QueueEntry> = state
        .desk
        .queue
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
            std::cmp::Reverse(Priority::of(h.and_then(|h| h.priority.as_deref()))),
            h.map_or(e.conversation.last_message_at, |h| h.created_at),
        )
    });
    let items: Vec<ItemView> = entries.iter().map(|e| entry_view(&state, e, now)).collect();
    Ok(Json(QueueView { now, items }).into_response())
}

#[derive(Serialize, ToSchema)]
struct AuthorView {
    /// `customer`, `agent`, `concierge` or `system`.
    #[schema(value_type = String)]
    kind: &'static str,
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct MessageView {
    id: String,
    seq: i64,
    /// `in` (from the customer) or `out`.
    #[schema(value_type = String)]
    direction: &'static str,
    author: AuthorView,
    text: String,
    kind: String,
    /// The content itself, for the kinds a console shows in their own form (`order`,
    /// `contacts`, `form_reply`, `event` (the merchant's), `products`, `payment_link`, `flow`,
    /// `template` (a notification, with its context), and `media` with what was kept of it,
    /// without the platform's reference); as stored, already bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    content: Option<serde_json::Value>,
    #[schema(value_type = i64)]
    at: Millis,
    #[schema(value_type = String)]
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
        author: AuthorView { kind, name },
        text: m.content.describe(),
        kind: m.content.kind_name().to_string(),
        content: match &m.content {
            Content::Order { .. }
            | Content::Contacts { .. }
            | Content::FormReply { .. }
            | Content::Event { .. }
            | Content::Products { .. }
            | Content::PaymentLink { .. } => serde_json::to_value(&m.content).ok(),
            // The platform's reference stays inside: the console reads kept media by its id.
            Content::Media {
                kind,
                mime,
                caption,
                kept,
                ..
            } => Some(serde_json::json!({
                "type": "media", "kind": kind, "mime": mime, "caption": caption, "kept": kept,
            })),
            // A notification: what the customer read, and what the system said about it.
            Content::Template {
                name,
                language,
                text,
                context,
                ..
            } => Some(serde_json::json!({
                "type": "template", "name": name, "language": language, "text": text,
                "context": context,
            })),
            _ => None,
        },
        at: m.created_at,
        status: match &m.status {
            DeliveryStatus::Failed { .. } => "failed",
            other => other.name(),
        },
    }
}

#[derive(Serialize, ToSchema)]
pub struct NoteView {
    author: String,
    body: String,
    #[schema(value_type = i64)]
    at: Millis,
}

#[derive(Serialize, ToSchema)]
pub struct ThreadView {
    conversation: ItemView,
    /// The latest messages, oldest first.
    messages: Vec<MessageView>,
    /// The brief of the open (else the latest) handoff.
    brief: Option<Brief>,
    /// Internal notes, seen only by concierges.
    notes: Vec<NoteView>,
    /// The customer's consent on this channel, with its history.
    consent: super::consent::ConsentState,
}

/// A thread: its state, latest messages, brief and notes.
#[utoipa::path(get, path = "/conversations/{id}", tag = "thread", params(("id" = String, Path, description = "The conversation id")), responses(
        (status = 200, description = "The thread", body = ThreadView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn conversation(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    let thread = state.desk.thread(&caller, &id).await?;
    let now = now_millis();
    let store = &state.store;
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
    let notes: Vec<NoteView> = store
        .notes(&id)
        .await?
        .into_iter()
        .map(|n| NoteView {
            author: n.author,
            body: n.body,
            at: n.created_at,
        })
        .collect();
    let messages: Vec<MessageView> = messages.iter().map(message_view).collect();
    let consent = super::consent::state_of(
        &store
            .consents(&thread.conversation.channel, &thread.conversation.contact)
            .await?,
    );
    Ok(Json(ThreadView {
        conversation: item,
        messages,
        brief,
        notes,
        consent,
    })
    .into_response())
}

/// The thread after an action.
#[derive(Serialize, ToSchema)]
pub struct ActionView {
    conversation: ItemView,
}

/// The thread after an action the caller was allowed to take (even if, after a transfer,
/// they may no longer see it).
async fn answer(
    state: &AppState,
    _caller: &Caller,
    id: &ConversationId,
) -> Result<Response, Rejection> {
    let store = &state.store;
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
    Ok(Json(ActionView { conversation: item }).into_response())
}

/// Claims a queued thread (or accepts the offer of it) for the caller.
#[utoipa::path(post, path = "/conversations/{id}/claim", tag = "thread", params(("id" = String, Path, description = "The conversation id")), responses(
        (status = 200, description = "The thread after the action", body = ActionView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn claim(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    state.desk.claim(&caller, &id).await?;
    tell_thread(&state, "handoff.claimed", &id, &caller).await?;
    answer(&state, &caller, &id).await
}

/// A concierge's move, for the webhooks that take it, named by the conversation's latest
/// handoff (so a retried request tells the same event).
async fn tell_thread(
    state: &AppState,
    kind: &'static str,
    id: &ConversationId,
    caller: &Caller,
) -> Result<(), Rejection> {
    if !state.webhooks.wants(kind) {
        return Ok(());
    }
    let handoff = state.store.handoffs(id).await?.pop();
    let conversation = state.store.conversation(id).await?;
    let subject = format!(
        "{id}.{}",
        handoff.as_ref().map_or("none", |h| h.id.as_str())
    );
    let event = concierge_engine::webhooks::OutEvent::new(
        kind,
        subject,
        serde_json::json!({
            "conversation": id.as_str(),
            "channel": conversation.as_ref().map(|c| c.channel.to_string()),
            "contact": conversation.as_ref().map(|c| c.contact.to_string()),
            "concierge": caller.name,
            "team": handoff.as_ref().and_then(|h| h.team.clone()),
            "reason": handoff.as_ref().map(|h| h.reason.clone()),
        }),
    );
    state.webhooks.emit(event).await?;
    Ok(())
}

#[derive(Deserialize, Default, ToSchema)]
pub struct ReleaseBody {
    /// A note for the bot, which takes the thread back.
    note: Option<String>,
}

/// Hands the thread back to the bot, with an optional note for it.
#[utoipa::path(post, path = "/conversations/{id}/release", tag = "thread", params(("id" = String, Path, description = "The conversation id")), request_body = Option<ReleaseBody>, responses(
        (status = 200, description = "The thread after the action", body = ActionView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn release(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: Option<Json<ReleaseBody>>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    let note = body.and_then(|Json(b)| b.note);
    state.desk.release(&caller, &id, note).await?;
    answer(&state, &caller, &id).await
}

/// Closes the thread.
#[utoipa::path(post, path = "/conversations/{id}/resolve", tag = "thread", params(("id" = String, Path, description = "The conversation id")), responses(
        (status = 200, description = "The thread after the action", body = ActionView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn resolve(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    state.desk.resolve(&caller, &id).await?;
    tell_thread(&state, "conversation.resolved", &id, &caller).await?;
    answer(&state, &caller, &id).await
}

/// One of the two: a team (back to its queue) or a concierge (offered to them).
#[derive(Deserialize, ToSchema)]
pub struct TransferBody {
    team: Option<String>,
    concierge: Option<String>,
}

/// Transfers the thread to a team or a concierge.
#[utoipa::path(post, path = "/conversations/{id}/transfer", tag = "thread", params(("id" = String, Path, description = "The conversation id")), request_body = TransferBody, responses(
        (status = 200, description = "The thread after the action", body = ActionView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn transfer(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    state
        .desk
        .transfer(&caller, &id, body.team, body.concierge)
        .await?;
    answer(&state, &caller, &id).await
}

#[derive(Deserialize, ToSchema)]
pub struct ReplyBody {
    /// The words; with `media`, its caption (and may be empty).
    #[serde(default)]
    text: String,
    /// Quick-reply options, where the channel has them.
    #[serde(default)]
    choices: Vec<String>,
    /// A file kept for this conversation by `POST /conversations/{id}/media`, sent as the
    /// platform's own media message.
    #[serde(default)]
    media: Option<ReplyMedia>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReplyMedia {
    /// The id the upload answered.
    id: String,
    /// The file's name, shown with a document.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplyQueued {
    /// The first of `message_ids`.
    message_id: Option<String>,
    /// The messages queued: a long reply is split at the channel's limit.
    message_ids: Vec<String>,
}

/// Queues the caller's reply to the customer; a retry with the same `Idempotency-Key` is
/// answered with the same messages.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "thread", params(
        ("id" = String, Path, description = "The conversation id"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII bytes"),
    ), request_body = ReplyBody, responses(
        (status = 202, description = "Queued for delivery", body = ReplyQueued),
        (status = 400, description = "A malformed Idempotency-Key", body = Problem),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn reply(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    // A client retrying a request sends the same key: the reply is queued once, and the
    // retry answered with the same messages. Keys are compared exactly, per concierge and
    // thread.
    let key = match idempotency_key(&headers) {
        Ok(key) => key.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
        Err(answer) => return Ok(*answer),
    };
    if body.text.trim().is_empty() && body.media.is_none() {
        return Err(
            ActionError::Invalid("the reply is empty: give a text or a file".to_string()).into(),
        );
    }
    let conversation = state
        .desk
        .conversations
        .conversation(&id)
        .await?
        .ok_or(ActionError::NotFound)?;
    let capabilities = state
        .channels
        .adapter(&conversation.channel)
        .map(|a| a.capabilities());
    let shape = ReplyShape {
        max_text_chars: capabilities.map(|c| c.max_text_chars).filter(|n| *n > 0),
        media_captions: capabilities.is_none_or(|c| c.media_captions),
    };
    let media = match &body.media {
        Some(wanted) => Some(reply_file(&state, &id, wanted).await?),
        None => None,
    };
    let reply = Reply {
        text: &body.text,
        choices: &body.choices,
        media: media.as_ref(),
    };
    let queued = state.desk.reply(&caller, &id, reply, &key, shape).await?;
    state.outbox_wake.notify_one();
    let first = queued.first().map(ToString::to_string);
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplyQueued {
            message_id: first,
            message_ids: queued.iter().map(ToString::to_string).collect(),
        }),
    )
        .into_response())
}

/// The file a reply names: kept for this conversation, else 404 (as for a file that does not
/// exist), so a concierge can only send what was uploaded to a thread they may see.
async fn reply_file(
    state: &AppState,
    conversation: &ConversationId,
    wanted: &ReplyMedia,
) -> Result<StoredMedia, Rejection> {
    let not_found = || {
        Rejection::from_response(problem(
            StatusCode::NOT_FOUND,
            "no such media in this conversation",
        ))
    };
    let (Some(store), Ok(id)) = (state.media.as_ref(), MediaId::parse(&wanted.id)) else {
        return Err(not_found());
    };
    let unavailable = |e: concierge_media::MediaError| {
        tracing::warn!(error = %e, "the media store failed");
        Rejection::from_response(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the media store is unavailable; try again",
        ))
    };
    if !store.linked(&id, conversation).await.map_err(unavailable)? {
        return Err(not_found());
    }
    let mut stored = store
        .stored(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    stored.name = wanted.name.as_deref().and_then(super::media::file_name);
    Ok(stored)
}

#[derive(Deserialize, ToSchema)]
pub struct NoteBody {
    text: String,
}

#[derive(Serialize, ToSchema)]
pub struct NoteAdded {
    ok: bool,
}

/// Adds an internal note to the thread (concierges only see it).
#[utoipa::path(post, path = "/conversations/{id}/notes", tag = "thread", params(("id" = String, Path, description = "The conversation id")), request_body = NoteBody, responses(
        (status = 201, description = "The note is added", body = NoteAdded),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "Not the caller's to act on", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 409, description = "The thread is not in a state that allows it", body = Problem),
        (status = 422, description = "The request is not valid", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn note(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<Response, Rejection> {
    let id = conversation_id(id)?;
    state.desk.note(&caller, &id, &body.text).await?;
    Ok((StatusCode::CREATED, Json(NoteAdded { ok: true })).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    seq: i64,
    #[schema(value_type = i64)]
    at: Millis,
    actor: String,
    action: String,
    conversation: Option<String>,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditView {
    /// The latest 500 records, newest first.
    records: Vec<AuditEntry>,
}

/// The audit log of concierge actions (admins only).
#[utoipa::path(get, path = "/audit", tag = "admin", responses(
        (status = 200, description = "The latest records", body = AuditView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 403, description = "For admins only", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
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
    let records: Vec<AuditEntry> = state
        .desk
        .queue
        .audit_log(500)
        .await?
        .into_iter()
        .map(|r| AuditEntry {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            conversation: r.conversation,
            detail: r.detail,
        })
        .collect();
    Ok(Json(AuditView { records }).into_response())
}

/// The live events the caller may see, as server-sent events. While connected, the
/// concierge counts as present (offers go only to concierges whose console is open). The
/// stream ends when its token is revoked or its concierge is gone from the configuration or
/// changed teams (checked every [`REVALIDATE`]; they are then listed offline), when a newer
/// stream of the same concierge is past `max_streams_per_concierge`, or at shutdown.
#[utoipa::path(get, path = "/events", tag = "concierge", responses(
        (status = 200, description = "Server-sent events: `ready` first, then one event per change the caller may see (named by its kind), `resync` when the reader fell behind", content_type = "text/event-stream", body = String),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
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
        .queue
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
    let store = &state.store;
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
    match state.desk.queue.token_owner(hash).await {
        Ok(owner) => owner.as_deref() == Some(caller.name.as_str()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot check an event stream's token");
            true
        }
    }
}
