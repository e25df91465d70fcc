//! The outbox worker's part of `concierge.toml`: `[delivery]`.

use serde::Deserialize;

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
    /// On a channel whose status reports name our replies (WhatsApp), a send whose answer
    /// was lost waits this long for the platform's status before it is sent again: a status
    /// in that time confirms it, and the customer gets it once.
    pub confirm_wait_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_secs: 300,
            give_up_after_secs: 24 * 3600,
            max_in_flight: 64,
            send_timeout_secs: 30,
            confirm_wait_ms: 10_000,
        }
    }
}
