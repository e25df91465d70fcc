//! The typed sections of `concierge.toml`. Unknown keys are refused; every key has a default
//! so a file with only `[server]` and `[store]` is a whole deployment.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    /// How long a graceful shutdown waits for the lanes and deliveries in flight.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` (relative to the folder of concierge.toml) for the embedded store.
    pub url: String,
    /// SQLite `synchronous`: `full` makes every acknowledged webhook survive a power cut;
    /// `normal` survives a crash of the process (not of the machine) and is faster.
    pub sync: SyncMode,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:data/concierge.db".to_string(),
            sync: SyncMode::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// The channel files' folder; `channels/` beside concierge.toml by default.
    pub channels: Option<String>,
    /// The prompts' folder; `prompts/` beside concierge.toml by default.
    pub prompts: Option<String>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// How many conversations are worked on at once (each one stays in order).
    pub max_parallel_lanes: usize,
    /// Start with processing paused: webhooks are stored and acknowledged, nothing is
    /// answered until the gateway is restarted without it (for maintenance and tests).
    pub paused: bool,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            max_parallel_lanes: 256,
            paused: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The first retry waits about this long; each next one twice as long, with jitter.
    pub initial_backoff_ms: u64,
    /// No wait between two attempts is longer than this.
    pub max_backoff_secs: u64,
    /// A reply still not accepted this long after its first attempt is marked failed.
    pub give_up_after_secs: u64,
    /// How many sends may be in flight at once (across conversations).
    pub max_in_flight: usize,
    /// One attempt's time limit.
    pub send_timeout_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_secs: 300,
            give_up_after_secs: 24 * 3600,
            max_in_flight: 64,
            send_timeout_secs: 30,
        }
    }
}
