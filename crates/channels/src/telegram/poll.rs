//! Long polling (getUpdates) for development without a public URL: updates go into the same
//! inbox as webhooks would, and are confirmed to Telegram only once stored.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Telegram;
use super::wire::Polled;
use crate::SendError;
use concierge_domain::InboundEvent;

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
        // Read straight into our update types: each answer's bytes are decoded once.
        let poll = bot.call_for::<Vec<Polled>>("getUpdates", &body, Some(Duration::from_secs(35)));
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = poll => answer,
        };
        let updates = match answer {
            Ok(Some(updates)) => updates,
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
        for polled in updates {
            match polled {
                Polled::Read(update) => {
                    last = last.max(Some(update.update_id));
                    events.extend(super::parse::events(&bot.id, &update));
                    if let Some(query) = super::parse::stray_callback(&update) {
                        bot.answer_callback(query).await;
                    }
                }
                Polled::Unreadable { update_id } => {
                    last = last.max(update_id);
                    tracing::warn!(channel = %bot.id, "skipping an update we cannot read");
                }
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
