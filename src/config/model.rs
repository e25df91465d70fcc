//! The typed sections of `concierge.toml`. Unknown keys are refused; every key has a default
//! so a file with only `[server]` and `[store]` is a whole deployment.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;
pub use crate::agents::{AgentsConfig, FlowConfig, LlmConfig, LlmProvider, ToolConfig};
pub use crate::delivery::DeliveryConfig;
pub use crate::handoff::{ConciergeConfig, ConciergeRole, QueueConfig, TeamConfig};
pub use crate::media::{MediaConfig, TranscriptionConfig};
pub use crate::notify::NotificationsConfig;
pub use crate::orchestrator::OrchestratorConfig;
pub use crate::orchestrator::{CommerceConfig, ConsentConfig};
pub use crate::store::sqlite::SyncMode;
pub use crate::webhooks::WebhookConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub paths: PathsConfig,
    #[serde(default)]
    pub faq: FaqConfig,
    #[serde(default)]
    pub responder: ResponderConfig,
    #[serde(default)]
    pub orchestrator: OrchestratorConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Customers' media: where it is kept, its limits, whether the LLM sees images.
    #[serde(default)]
    pub media: MediaConfig,
    /// The words with which customers opt out of marketing and back in, and the replies.
    #[serde(default)]
    pub consent: ConsentConfig,
    /// The server voice notes are put into words by; without it they are not transcribed.
    pub transcription: Option<TranscriptionConfig>,
    /// The LLM provider; without it the gateway answers from the FAQ only.
    pub llm: Option<LlmConfig>,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub merchant: MerchantConfig,
    /// The merchant's HTTP tools the agents may call.
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
    /// The forms (WhatsApp Flows) the agents may send.
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    #[serde(default)]
    pub queue: QueueConfig,
    /// The teams (skills) handoffs are queued for; one always-open team when none is given.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    /// The people who take threads over from the console.
    #[serde(default)]
    pub concierges: Vec<ConciergeConfig>,
    /// Where the merchant's other systems hear what happens (signed, retried, at least once).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// How fast batches of notifications go out.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The words of the cart the gateway keeps, per language.
    #[serde(default)]
    pub commerce: CommerceConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the one HTTP port listens on.
    pub bind: String,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a request may take, headers and body included, before it is answered 408.
    pub request_timeout_secs: u64,
    /// How long a client may take to send a request's head (request line and headers); a
    /// slower one (a slow-loris) is disconnected. Also how long an idle connection is kept.
    pub header_read_timeout_secs: u64,
    /// How long a client may take to send a request's body once its head is in; a slower
    /// one gets 408.
    pub body_read_timeout_secs: u64,
    /// The largest request head (request line and headers), in bytes (1024 to 262144); a
    /// larger one, or one with more than 100 headers, gets 431.
    pub max_header_bytes: usize,
    /// How long a graceful shutdown waits for the lanes and deliveries in flight.
    pub shutdown_grace_secs: u64,
    /// A customer's message dated (by the platform) longer ago than this is acknowledged and
    /// counted, not processed: a webhook replayed after its dedupe key expired is not
    /// answered again. 0: no limit.
    pub max_event_age_secs: u64,
    /// An address of its own for `/metrics` (`127.0.0.1:9090`; port 0 picks a free one, and
    /// the bound address is logged). When set, the public port never serves `/metrics`.
    pub metrics_bind: Option<String>,
    /// When set, `/metrics` (on whichever port serves it) requires
    /// `Authorization: Bearer <token>`. With neither this nor `metrics_bind`, `/metrics` is
    /// not served at all.
    pub metrics_token: Option<Secret>,
    /// The most connections open at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a write to a client may wait for the client to read: a client that stopped
    /// reading (its TCP window full) is disconnected, its live stream ended.
    pub write_timeout_secs: u64,
    /// The most live web chat streams of one visitor key on an instance; a new one past it
    /// closes the oldest.
    pub max_streams_per_key: usize,
    /// The most `/api/v1/events` streams of one concierge on an instance; a new one past it
    /// closes the oldest.
    pub max_streams_per_concierge: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            max_header_bytes: 16 * 1024,
            shutdown_grace_secs: 20,
            max_event_age_secs: 7 * 24 * 3600,
            metrics_bind: None,
            metrics_token: None,
            max_connections: 10_000,
            write_timeout_secs: 30,
            max_streams_per_key: 5,
            max_streams_per_concierge: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` (relative to the folder of concierge.toml) for the embedded store;
    /// `redis://HOST:PORT/DB` (or `rediss://` for TLS) for several instances sharing one Redis.
    pub url: String,
    /// SQLite `synchronous`: `full` makes every acknowledged webhook survive a power cut;
    /// `normal` survives a crash of the process (not of the machine) and is faster.
    pub sync: SyncMode,
    /// Redis: every key starts with `PREFIX:`, so several deployments can share a server.
    pub prefix: String,
    /// Redis: how many inbox partitions the conversations are spread over. Each partition is
    /// worked by one instance at a time; fixed for the life of a deployment's keys.
    pub partitions: u16,
    /// Redis: how long an instance's hold on its inbox partitions lasts without renewal. A
    /// dead instance's work is taken over after this long.
    pub takeover_ms: u64,
    /// Redis: how long a webhook's event id is remembered to drop platform retries (and its
    /// raw request kept for `concierge inbox export`).
    pub dedupe_ttl_secs: u64,
    /// SQLite: how many days each accepted webhook's raw request (credentials removed) is
    /// kept for `concierge inbox export` and `concierge replay`.
    pub raw_retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:data/concierge.db".to_string(),
            sync: SyncMode::Full,
            prefix: "concierge".to_string(),
            partitions: 16,
            takeover_ms: 10_000,
            dedupe_ttl_secs: 7 * 24 * 3600,
            raw_retention_days: 7,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// The channel files' folder; `channels/` beside concierge.toml by default.
    pub channels: Option<String>,
    /// The prompts' folder; `prompts/` beside concierge.toml by default.
    pub prompts: Option<String>,
    /// The template catalogue's folder; `templates/` beside concierge.toml by default.
    pub templates: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaqConfig {
    /// The FAQ file, inside the prompts folder.
    pub file: String,
    /// The confidence (0 to 1) a match needs before its answer is sent.
    pub threshold: f64,
}

impl Default for FaqConfig {
    fn default() -> Self {
        Self {
            file: "faq.md".to_string(),
            threshold: 0.5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderConfig {
    /// The message sent when nothing can answer, by language code; `en` is the fallback.
    pub holding: BTreeMap<String, String>,
    /// The holding message is not repeated to a customer within this many seconds.
    pub holding_repeat_secs: u64,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        let mut holding = BTreeMap::new();
        holding.insert(
            "en".to_string(),
            "Thank you for your message! I can't answer that one myself, so a member of our team will get back to you here as soon as possible.".to_string(),
        );
        holding.insert(
            "fr".to_string(),
            "Merci pour votre message ! Je ne peux pas y répondre moi-même : un membre de notre équipe vous répondra ici dès que possible.".to_string(),
        );
        Self {
            holding,
            holding_repeat_secs: 600,
        }
    }
}

/// The merchant, as the agents' prompts speak of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantConfig {
    pub name: String,
    /// An IANA time zone (`Europe/Paris`): the agents' idea of "now".
    pub timezone: String,
    /// Free text the agents may quote.
    pub business_hours: String,
}

impl Default for MerchantConfig {
    fn default() -> Self {
        Self {
            name: "our shop".to_string(),
            timezone: "UTC".to_string(),
            business_hours: String::new(),
        }
    }
}
