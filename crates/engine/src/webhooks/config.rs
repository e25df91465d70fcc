//! `[[webhooks]]`: where the merchant's other systems hear what happens, with the secret each
//! delivery is signed with and the events each one takes.

use serde::Deserialize;

use concierge_domain::Secret;

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 9] = [
    "message.received",
    "message.sent",
    "message.delivered",
    "message.failed",
    "handoff.created",
    "handoff.claimed",
    "conversation.resolved",
    "notification.failed",
    "consent.changed",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// What the deliveries are listed under; the URL's host when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Where events are POSTed: `https://`, or `http://` to this machine only.
    pub url: String,
    /// The Standard Webhooks signing secret: `whsec_` then the key in base64 (at least 24
    /// bytes): `echo whsec_$(openssl rand -base64 32)`.
    pub secret: Secret,
    /// The events it takes (see [`EVENTS`]); `["*"]` for all.
    pub events: Vec<String>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How long a delivery is retried, from its event, before it is given up (and listed
    /// as failed): a day by default.
    #[serde(default = "default_retry_for_secs")]
    pub retry_for_secs: u64,
    /// The wait before the first retry, tripled at each one after (at most two hours).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_backoff_ms() -> u64 {
    5_000
}

fn default_timeout_secs() -> u64 {
    10
}

fn default_retry_for_secs() -> u64 {
    24 * 3600
}

impl WebhookConfig {
    /// The name deliveries are kept under.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            reqwest::Url::parse(&self.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| self.url.clone())
        })
    }

    /// Whether it takes events of `kind`.
    pub fn takes(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == kind)
    }

    /// The signing key: the secret's base64 after `whsec_`.
    pub fn key(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let encoded = self.secret.expose().strip_prefix("whsec_")?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .filter(|k| k.len() >= 24)
    }
}

/// Every mistake in `[[webhooks]]`, with its key.
pub fn check(webhooks: &[WebhookConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for (i, w) in webhooks.iter().enumerate() {
        let at = |key: &str| format!("webhooks[{i}].{key}");
        match reqwest::Url::parse(&w.url) {
            Err(e) => problems.push((at("url"), format!("not a URL: {e}"))),
            Ok(url) => {
                let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if url.scheme() != "https" && !(url.scheme() == "http" && local) {
                    problems.push((
                        at("url"),
                        "must be https:// (http:// only to this machine)".to_string(),
                    ));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problems.push((
                        at("url"),
                        "must not carry a user or password: the signature authenticates us"
                            .to_string(),
                    ));
                }
            }
        }
        if w.key().is_none() {
            problems.push((
                at("secret"),
                "a signing secret is `whsec_` then at least 24 bytes in base64 (`echo whsec_$(openssl rand -base64 32)`)".to_string(),
            ));
        }
        if w.events.is_empty() {
            problems.push((at("events"), "name at least one event".to_string()));
        }
        for (j, event) in w.events.iter().enumerate() {
            if event != "*" && !EVENTS.contains(&event.as_str()) {
                problems.push((
                    format!("webhooks[{i}].events[{j}]"),
                    format!(
                        "`{event}` is not an event ({}){}",
                        EVENTS.join(", "),
                        concierge_domain::suggest::did_you_mean(event, EVENTS)
                    ),
                ));
            }
        }
        for (key, value) in [
            ("timeout_secs", w.timeout_secs),
            ("retry_for_secs", w.retry_for_secs),
        ] {
            if value == 0 {
                problems.push((at(key), "must be at least 1".to_string()));
            }
        }
        let name = w.name();
        if names.contains(&name) {
            problems.push((
                at("name"),
                format!("two webhooks are named `{name}`: give each its own `name`"),
            ));
        }
        names.push(name);
    }
    problems
}
