//! The keys of a `kind = "webchat"` channel file.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebchatConfig {
    /// The title shown at the top of the chat page.
    pub title: String,
    /// A first line shown to every visitor before they write (not stored, not sent).
    pub greeting: Option<String>,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    pub new_conversations_per_minute: u32,
    /// New visitors a minute from one client address (the connection's peer: a proxy in
    /// front of the gateway is one address) whose messages the agents answer; past it a new
    /// visitor gets the holding reply, their message is kept, and a later one within budget
    /// is answered. 0: no limit.
    pub new_conversations_per_minute_per_ip: u32,
}

impl Default for WebchatConfig {
    fn default() -> Self {
        Self {
            title: "Chat with us".to_string(),
            greeting: None,
            new_conversations_per_minute: super::super::default_new_conversations_per_minute(),
            new_conversations_per_minute_per_ip: 10,
        }
    }
}
