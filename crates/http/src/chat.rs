//! The web chat page and its live stream (server-sent events). The page posts messages to
//! `/webhooks/{channel_id}` like any platform; the stream first replays what the visitor
//! missed from the store (resuming after `Last-Event-ID`), then follows new replies. Past
//! `max_streams_per_key` streams of one visitor key, a new one closes the oldest.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::AppState;
use super::streams::Slot;
use concierge_channels::webchat::{ChatEvent, Webchat};
use concierge_domain::{
    ChannelId, ContactId, ConversationId, DeliveryStatus, MediaId, MediaKind, Message,
};
use concierge_media::{MediaError, Variant};

const PAGE: &str = include_str!("assets/chat.html");
/// The most messages replayed when a page (re)connects: the latest ones.
const REPLAY: usize = 500;

pub async fn default_page(State(state): State<AppState>) -> Response {
    match state.channels.first_webchat() {
        Some(chat) => render_page(chat),
        None => (StatusCode::NOT_FOUND, "no web chat channel is configured").into_response(),
    }
}

pub async fn page(State(state): State<AppState>, Path(channel_id): Path<String>) -> Response {
    match find(&state, &channel_id) {
        Some(chat) => render_page(chat),
        None => (StatusCode::NOT_FOUND, "no such web chat").into_response(),
    }
}

fn find<'a>(state: &'a AppState, channel_id: &str) -> Option<&'a std::sync::Arc<Webchat>> {
    let id = ChannelId::parse(channel_id).ok()?;
    state.channels.webchat(&id)
}

fn render_page(chat: &Webchat) -> Response {
    let settings = serde_json::json!({
        "channel": chat_id(chat),
        "title": chat.config().title,
        "greeting": chat.config().greeting,
    });
    // No `<`, `>` or `&` in the embedded JSON: nothing in it can close its data block.
    let settings = settings
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let html = fill(
        PAGE,
        &[
            ("{{TITLE}}", &escape_html(&chat.config().title)),
            ("{{SETTINGS}}", &settings),
        ],
    );
    // Its script and style are `/assets/chat.*`; it may be framed by the channel's
    // `embed_origins`.
    let mut ancestors = String::from("'self'");
    for origin in &chat.config().embed_origins {
        ancestors.push(' ');
        ancestors.push_str(origin);
    }
    // Product cards show the merchant's pictures, from its https CDN.
    let policy = super::csp::policy(&ancestors, " https:");
    (
        [
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
        Html(html),
    )
        .into_response()
}

/// Replaces placeholders in one pass over the template, so a value that happens to contain a
/// placeholder is never substituted again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    loop {
        let next = values
            .iter()
            .filter_map(|(name, value)| rest.find(name).map(|at| (at, *name, *value)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, name, value)) => {
                out.push_str(&rest[..at]);
                out.push_str(value);
                rest = &rest[at + name.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

fn chat_id(chat: &Webchat) -> String {
    use concierge_channels::ChannelAdapter;
    chat.id().to_string()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether a stored message belongs on the visitor's page: everything but replies that
/// failed. Replies still pending are included: their live push may have happened just before
/// this stream subscribed, and the page shows each id once, so replaying them early is safe
/// while leaving them out could hide them until the next reconnect.
/// What the visitor's page replays: not a reply that failed, and not what the merchant's
/// systems told the conversation (an event is for the agents, not the visitor).
fn visible(message: &Message) -> bool {
    !matches!(message.status, DeliveryStatus::Failed { .. })
        && !matches!(message.content, concierge_domain::Content::Event { .. })
}

pub async fn events(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(chat) = find(&state, &channel_id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such web chat").into_response();
    };
    let params = query_params(query.as_deref());
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(contact) = visitor(&chat, &channel_id, &headers, param("key")) else {
        return (StatusCode::UNAUTHORIZED, "a valid key is required").into_response();
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| param("after"))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let conversation = match visitors_conversation(&state, &chat, &contact).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    // Subscribe before reading history, so nothing published in between is missed.
    let live = chat.hub().subscribe(&contact);
    let slot = state.streams.open(
        "chat",
        format!("{channel_id}:{contact}"),
        state.stream_caps.per_key,
        &state.shutdown,
    );
    // The latest messages after the resume point: a long conversation replays its end.
    let history = match state.store.recent_messages(&conversation, REPLAY).await {
        Ok(history) => history,
        Err(e) => {
            tracing::warn!(error = %e, "cannot replay a web chat history");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let history: VecDeque<ChatEvent> = history
        .iter()
        .filter(|m| m.seq > after && visible(m))
        .map(ChatEvent::from_message)
        .collect();
    let ended = slot.ended();
    let stream = replay_then_follow(history, live, after, slot).take_until(ended.cancelled_owned());
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The visitor a request comes from: by the key in its header (the page's POSTs), its cookie
/// (scoped to `/chat/{channel}/`: the stream and media, which cannot set headers), or
/// `?key=` (other clients).
fn visitor(
    chat: &Webchat,
    channel_id: &str,
    headers: &HeaderMap,
    from_query: Option<&str>,
) -> Option<ContactId> {
    let cookie_name = format!("concierge_chat_{channel_id}");
    let from_header = headers
        .get(concierge_channels::webchat::KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == cookie_name)
            .map(|(_, value)| value.to_string())
    };
    let key = from_header
        .or_else(from_cookie)
        .or_else(|| from_query.map(str::to_string))?;
    chat.contact_for_key(&key)
}

/// The visitor's conversation on this web chat, once they are known.
async fn visitors_conversation(
    state: &AppState,
    chat: &Webchat,
    contact: &ContactId,
) -> Result<ConversationId, Response> {
    use concierge_channels::ChannelAdapter;
    state
        .store
        .conversation_of(chat.id(), contact)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the store does not answer a web chat visitor");
            (StatusCode::SERVICE_UNAVAILABLE, "try again shortly").into_response()
        })
}

/// `GET /chat/{channel}/media/{id}`: a file of the visitor's own conversation (theirs, or a
/// reply's), for the page to show; anything else is 404.
pub async fn media(
    State(state): State<AppState>,
    Path((channel_id, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such file").into_response();
    let Some(chat) = find(&state, &channel_id).cloned() else {
        return not_found();
    };
    let params = query_params(query.as_deref());
    let key = params
        .iter()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str());
    let Some(contact) = visitor(&chat, &channel_id, &headers, key) else {
        return (StatusCode::UNAUTHORIZED, "a valid key is required").into_response();
    };
    let (Some(store), Ok(id)) = (state.media.as_ref(), MediaId::parse(&id)) else {
        return not_found();
    };
    let conversation = match visitors_conversation(&state, &chat, &contact).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    match store.linked(&id, &conversation).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return media_unavailable(e),
    }
    let thumb = params.iter().any(|(k, v)| k == "variant" && v == "thumb");
    let variant = if thumb {
        Variant::Thumbnail
    } else {
        Variant::Original
    };
    match store.read(&id, variant).await {
        Ok(Some((bytes, mime))) => super::media::serve(&id, bytes, mime, "private, max-age=3600"),
        Ok(None) => not_found(),
        Err(e) => media_unavailable(e),
    }
}

fn media_unavailable(e: concierge_media::MediaError) -> Response {
    tracing::warn!(error = %e, "the media store failed");
    (StatusCode::SERVICE_UNAVAILABLE, "try again shortly").into_response()
}

/// What an upload answers the page: the file, to post a message with.
#[derive(serde::Serialize)]
struct VisitorUpload {
    id: String,
    mime: String,
    bytes: u64,
    name: Option<String>,
}

/// `POST /chat/{channel}/media`: a visitor keeps a file (within `[media] max_bytes`, of a
/// kind that is kept) in their conversation; the page then posts a message naming it.
pub async fn upload(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(chat) = find(&state, &channel_id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such web chat").into_response();
    };
    let Some(contact) = visitor(&chat, &channel_id, &headers, None) else {
        return (StatusCode::UNAUTHORIZED, "a valid key is required").into_response();
    };
    let Some(store) = state.media.as_ref() else {
        return (StatusCode::NOT_FOUND, "files are not taken here").into_response();
    };
    if body.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "the file is empty").into_response();
    }
    let conversation = match visitors_conversation(&state, &chat, &contact).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    let stored = match store.keep(body, MediaKind::Document).await {
        Ok(stored) => stored,
        Err(e @ MediaError::TooLarge { .. }) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response();
        }
        Err(e @ (MediaError::NotAllowed(_) | MediaError::Unreadable(_))) => {
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()).into_response();
        }
        Err(e) => return media_unavailable(e),
    };
    if let Err(e) = store.link(&stored.id, &conversation).await {
        return media_unavailable(e);
    }
    let name = query_params(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "name")
        .and_then(|(_, v)| super::media::file_name(&v));
    (
        StatusCode::CREATED,
        axum::Json(VisitorUpload {
            id: stored.id.to_string(),
            mime: stored.mime,
            bytes: stored.bytes,
            name,
        }),
    )
        .into_response()
}

struct Follow {
    history: VecDeque<ChatEvent>,
    live: broadcast::Receiver<ChatEvent>,
    last: i64,
    /// Held while the stream lives; its token ends the stream.
    slot: Slot,
}

fn to_sse(event: &ChatEvent) -> Event {
    Event::default()
        .id(event.seq.to_string())
        .event("message")
        .data(serde_json::to_string(event).unwrap_or_default())
}

fn replay_then_follow(
    history: VecDeque<ChatEvent>,
    live: broadcast::Receiver<ChatEvent>,
    after: i64,
    slot: Slot,
) -> impl futures_util::Stream<Item = Event> {
    let state = Follow {
        history,
        live,
        last: after,
        slot,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if let Some(event) = s.history.pop_front() {
            s.last = s.last.max(event.seq);
            let sse = to_sse(&event);
            return Some((sse, s));
        }
        let ended = s.slot.ended();
        loop {
            tokio::select! {
                () = ended.cancelled() => return None,
                received = s.live.recv() => match received {
                    Ok(event) if event.seq > s.last => {
                        s.last = event.seq;
                        let sse = to_sse(&event);
                        return Some((sse, s));
                    }
                    Ok(_) => continue,
                    // Lagged or closed: end the stream; the page reconnects with its
                    // Last-Event-ID and catches up from the store.
                    Err(_) => return None,
                }
            }
        }
    })
}
