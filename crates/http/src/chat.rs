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
use concierge_domain::{ChannelId, DeliveryStatus, Message};

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
    let policy = super::csp::policy(&ancestors);
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
fn visible(message: &Message) -> bool {
    !matches!(message.status, DeliveryStatus::Failed { .. })
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
    let params: Vec<(String, String)> = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // The page sends its key in a cookie scoped to this stream (EventSource cannot set
    // headers, and a query string ends up in proxy logs); `?key=` serves other clients.
    let cookie_name = format!("concierge_chat_{channel_id}");
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == cookie_name)
        .map(|(_, value)| value.to_string());
    let key = from_cookie.or_else(|| param("key").map(str::to_string));
    let Some(contact) = key.and_then(|key| chat.contact_for_key(&key)) else {
        return (StatusCode::UNAUTHORIZED, "a valid key is required").into_response();
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| param("after"))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let conversation = {
        use concierge_channels::ChannelAdapter;
        match state.store.conversation_of(chat.id(), &contact).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a web chat stream: the store does not answer");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again shortly").into_response();
            }
        }
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
