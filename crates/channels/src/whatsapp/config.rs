//! The keys of a `kind = "whatsapp"` channel file (Meta's Cloud API).

use serde::Deserialize;

use concierge_domain::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    /// The business phone number's id (not the number itself).
    pub phone_number_id: String,
    pub access_token: Secret,
    /// Signs every webhook (X-Hub-Signature-256).
    pub app_secret: Secret,
    /// Answers the GET verification handshake.
    pub verify_token: Secret,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The WhatsApp Business account's id, for `concierge templates sync`.
    #[serde(default)]
    pub waba_id: Option<String>,
    /// The business's Meta catalogue connected to this number: products are sent from it
    /// (single- and multi-product messages); without it, as pictures with buttons.
    #[serde(default)]
    pub catalog_id: Option<String>,
    /// Sent instead of a free-form reply when the 24-hour window is closed.
    #[serde(default)]
    pub reengagement_template: Option<TemplateRef>,
    /// Sends per second for this number (Meta's default throughput is 80).
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
    /// The largest media file fetched from Meta, in bytes.
    #[serde(default = "default_media_max")]
    pub media_max_bytes: u64,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    #[serde(default = "super::super::default_new_conversations_per_minute")]
    pub new_conversations_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    pub language: String,
    /// The body's parameters, in order.
    #[serde(default)]
    pub params: Vec<String>,
}

fn default_api_base() -> String {
    "https://graph.facebook.com/v23.0".to_string()
}

fn default_rate() -> f64 {
    80.0
}

fn default_media_max() -> u64 {
    100 * 1024 * 1024
}
