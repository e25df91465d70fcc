//! The keys of a `kind = "webchat"` channel file.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebchatConfig {
    /// The title shown at the top of the chat page.
    pub title: String,
    /// A first line shown to every visitor before they write (not stored, not sent).
    pub greeting: Option<String>,
}

impl Default for WebchatConfig {
    fn default() -> Self {
        Self {
            title: "Chat with us".to_string(),
            greeting: None,
        }
    }
}
