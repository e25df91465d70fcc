//! The keys of a `kind = "bluebubbles"` channel file (iMessage through a BlueBubbles server).

use serde::Deserialize;

use concierge_domain::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueBubblesConfig {
    /// The BlueBubbles server on the Mac, e.g. `http://mac-mini.local:1234`.
    pub server_url: String,
    /// The server's password (sent as `?password=` on every call, as its API requires).
    pub password: Secret,
    /// The bridge cannot sign its webhooks: it calls `/webhooks/{id}?secret=...`.
    pub webhook_secret: Secret,
    /// How the server sends: `apple-script` (works everywhere) or `private-api`.
    #[serde(default)]
    pub method: SendMethod,
    /// The largest attachment fetched from the server, in bytes.
    #[serde(default = "default_media_max")]
    pub media_max_bytes: u64,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    #[serde(default = "super::super::default_new_conversations_per_minute")]
    pub new_conversations_per_minute: u32,
}

/// How the BlueBubbles server sends a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendMethod {
    /// Through AppleScript: works on every server, cannot quote a message.
    #[default]
    AppleScript,
    /// Through the server's Private API: can quote (reply to) a message.
    PrivateApi,
}

impl SendMethod {
    /// The value of the server API's `method` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SendMethod::AppleScript => "apple-script",
            SendMethod::PrivateApi => "private-api",
        }
    }
}

fn default_media_max() -> u64 {
    100 * 1024 * 1024
}
