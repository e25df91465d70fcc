//! The keys of a `kind = "twilio_whatsapp"` channel file.

use std::collections::BTreeMap;

use serde::Deserialize;

use concierge_domain::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    /// Signs every webhook (X-Twilio-Signature) and authenticates our calls.
    pub auth_token: Secret,
    /// Our WhatsApp sender, `whatsapp:+E164`.
    pub from: String,
    /// The URL Twilio calls and signs; a proxy in front changes the one we see.
    pub public_url: String,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Where typing indicators go (Twilio's Messaging v2 API).
    #[serde(default = "default_messaging_api_base")]
    pub messaging_api_base: String,
    /// A Content API template (ContentSid, variables) sent instead of a free-form reply when
    /// the 24-hour window is closed.
    #[serde(default)]
    pub reengagement_template: Option<ContentTemplate>,
    /// Sends per second for this sender (Twilio's WhatsApp default is 10).
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
    /// The largest media file fetched from Twilio, in bytes.
    #[serde(default = "default_media_max")]
    pub media_max_bytes: u64,
    /// How long the link Twilio fetches a reply's file from stays valid, in seconds (Twilio
    /// may hold a message in its queue for up to 4 hours before it sends it).
    #[serde(default = "default_media_link_secs")]
    pub media_link_secs: u64,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    #[serde(default = "super::super::default_new_conversations_per_minute")]
    pub new_conversations_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentTemplate {
    pub content_sid: String,
    /// ContentVariables, by placeholder number ("1", "2", …).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

fn default_api_base() -> String {
    "https://api.twilio.com".to_string()
}

fn default_messaging_api_base() -> String {
    "https://messaging.twilio.com".to_string()
}

fn default_rate() -> f64 {
    10.0
}

fn default_media_link_secs() -> u64 {
    4 * 3600 + 600
}

fn default_media_max() -> u64 {
    100 * 1024 * 1024
}
