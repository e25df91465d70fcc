//! The keys of a `kind = "telegram"` channel file.

use serde::Deserialize;

use concierge_domain::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub bot_token: Secret,
    /// Sent by Telegram in X-Telegram-Bot-Api-Secret-Token on every webhook call.
    pub secret_token: Secret,
    /// `webhook`, or `polling` (getUpdates) for development without a public URL.
    #[serde(default)]
    pub mode: TelegramMode,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The largest file fetched from Telegram, in bytes (the Bot API serves up to 20 MB).
    #[serde(default = "default_media_max")]
    pub media_max_bytes: u64,
    /// Sends per second to one chat (Telegram allows about one).
    #[serde(default = "default_per_chat")]
    pub messages_per_second_per_chat: f64,
    /// Sends per second in all (Telegram allows about thirty).
    #[serde(default = "default_overall")]
    pub messages_per_second: f64,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    #[serde(default = "super::super::default_new_conversations_per_minute")]
    pub new_conversations_per_minute: u32,
}

/// How updates reach the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// Telegram calls `/webhooks/{id}` (setWebhook).
    #[default]
    Webhook,
    /// The gateway asks with getUpdates: for development without a public URL.
    Polling,
}

fn default_api_base() -> String {
    "https://api.telegram.org".to_string()
}

fn default_media_max() -> u64 {
    20 * 1024 * 1024
}

fn default_per_chat() -> f64 {
    1.0
}

fn default_overall() -> f64 {
    30.0
}
