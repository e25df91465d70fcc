//! Long polling (getUpdates) for development without a public URL: updates go into the same
//! inbox as webhooks would, and are confirmed to Telegram only once stored.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Telegram;
use crate::channels::SendError;
use crate::domain::InboundEvent;

/// The update kinds we ask Telegram for (also registered with setWebhook).
pub const ALLOWED_UPDATES: &[&str] = &[
    "message",
    "edited_message",
    "callback_query",
    "message_reaction",
];

/// Where polled events go: the gateway's inbox.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Stores the events durably; an error means "not stored, ask again".
    async fn accept(&self, events: Vec<InboundEvent>) -> Result<(), String>;
}

/// Polls until `shutdown` fires.
pub async fn run(bot: Arc<Telegram>, sink: Arc<dyn EventSink>, shutdown: CancellationToken) {
    let mut offset: Option<i64> = None;
    let mut backoff = Duration::from_millis(500);
    tracing::info!(channel = %bot.id, "polling Telegram for updates");
    loop {
        let mut body = json!({ "timeout": 25, "allowed_updates": ALLOWED_UPDATES });
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        // The long poll lasts up to 25 s: its own limit, whatever the client's default.
        let poll = bot.call_within("getUpdates", &body, Some(Duration::from_secs(35)));
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = poll => answer,
        };
        let updates = match answer {
            Ok(Value::Array(updates)) => updates,
            failed => {
                match failed {
                    Err(SendError::Rejected {
                        code: Some(code), ..
                    }) if code == "409" => {
                        tracing::error!(channel = %bot.id, "Telegram refuses getUpdates while a webhook is set: delete the webhook (deleteWebhook) or use mode = \"webhook\"");
                    }
                    Err(e) => {
                        tracing::warn!(channel = %bot.id, error = %e, "getUpdates failed; retrying")
                    }
                    Ok(_) => {
                        tracing::warn!(channel = %bot.id, "getUpdates answered something else than updates; retrying")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let mut events = Vec::new();
        let mut last = None;
        for raw in updates {
            let id = raw.get("update_id").and_then(Value::as_i64);
            last = last.max(id);
            // From text, as the webhook does: teloxide's Update reads its kinds from a
            // borrowed source, and a `Value` would turn every kind into an unknown one.
            let parsed = serde_json::to_vec(&raw)
                .ok()
                .and_then(|bytes| super::parse::read_update(&bytes).ok());
            match parsed {
                Some(update) => events.extend(super::parse::events(&bot.id, &update)),
                None => tracing::warn!(channel = %bot.id, "skipping an update we cannot read"),
            }
        }
        if !events.is_empty()
            && let Err(e) = sink.accept(events).await
        {
            // Not stored: the same updates come back on the next call (offset unchanged).
            tracing::warn!(channel = %bot.id, error = %e, "cannot store polled updates; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            continue;
        }
        if let Some(last) = last {
            offset = Some(last + 1);
        }
    }
}
