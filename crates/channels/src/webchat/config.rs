//! The keys of a `kind = "webchat"` channel file.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebchatConfig {
    /// The title shown at the top of the chat page.
    pub title: String,
    /// A first line shown to every visitor before they write (not stored, not sent).
    pub greeting: Option<String>,
    /// The sites that may show the page in a frame, as origins (`https://shop.example`);
    /// the gateway's own origin always may, no other by default.
    pub embed_origins: Vec<String>,
    /// New conversations a minute the agents take on this channel (see `[orchestrator]
    /// new_conversations_per_minute`). 0: no limit.
    pub new_conversations_per_minute: u32,
    /// New visitors a minute from one client address (the connection's peer: a proxy in
    /// front of the gateway is one address) whose messages the agents answer; past it a new
    /// visitor gets the holding reply, their message is kept, and a later one within budget
    /// is answered. 0: no limit.
    pub new_conversations_per_minute_per_ip: u32,
}

impl WebchatConfig {
    /// The `embed_origins` entries that are not a `scheme://host[:port]` origin.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        self.embed_origins
            .iter()
            .filter(|origin| !is_origin(origin))
            .map(|origin| {
                (
                    "embed_origins",
                    format!(
                        "`{origin}` is not an origin like https://shop.example (http or https, lowercase host, an optional port, no path)"
                    ),
                )
            })
            .collect()
    }
}

/// Whether `text` is an http(s) origin written as browsers write it (so it goes into the
/// page's Content-Security-Policy as it is, and cannot carry another directive).
fn is_origin(text: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(text) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|host| {
            !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                })
        })
        && url.origin().ascii_serialization() == text
}

impl Default for WebchatConfig {
    fn default() -> Self {
        Self {
            title: "Chat with us".to_string(),
            greeting: None,
            embed_origins: Vec::new(),
            new_conversations_per_minute: super::super::default_new_conversations_per_minute(),
            new_conversations_per_minute_per_ip: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_may_embed_the_page() {
        for good in [
            "https://shop.example",
            "http://localhost:8080",
            "https://[::1]:8443",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "",
            "shop.example",
            "https://shop.example/",
            "https://shop.example/chat",
            "https://shop.example?x",
            "https://user@shop.example",
            "https://Shop.example",
            "https://shop.example:443",
            "https://*.shop.example",
            "https://shop.example; script-src *",
            "javascript:alert(1)",
            "file:///etc",
            "'self'",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
