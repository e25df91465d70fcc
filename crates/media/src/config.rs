//! `[media]` of `concierge.toml`: where media is kept, how large it may be, how long a turn
//! waits for it, whether images go to the LLM.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The folder media is kept in, relative to the configuration's folder.
    pub store: String,
    /// Larger media is noted in the thread, not downloaded.
    pub max_bytes: u64,
    /// How long a turn waits for its message's media before it answers without it.
    pub wait_ms: u64,
    /// Whether customers' images go to the LLM as images (an agent without vision gets
    /// their description either way).
    pub images_to_llm: bool,
    /// Hosts (`cdn.shop.example`) whose https URLs an agent's `send_media` may send even when
    /// no tool of the turn returned them.
    pub send_hosts: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            store: "data/media".to_string(),
            max_bytes: 16 * 1024 * 1024,
            wait_ms: 5_000,
            images_to_llm: true,
            send_hosts: Vec::new(),
        }
    }
}

impl MediaConfig {
    /// What is wrong with the section, as (key, problem) pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.store.trim().is_empty() {
            problems.push(("store", "must name a folder".to_string()));
        } else if self.store.contains("://") {
            problems.push((
                "store",
                "must be a folder: buckets (s3://…) are not supported yet".to_string(),
            ));
        }
        for host in &self.send_hosts {
            let plain = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
            if !plain {
                problems.push((
                    "send_hosts",
                    format!("`{host}` is not a host name like cdn.shop.example (no scheme, path or port)"),
                ));
            }
        }
        if self.max_bytes == 0 {
            problems.push(("max_bytes", "must be above 0".to_string()));
        }
        if self.wait_ms > 120_000 {
            problems.push((
                "wait_ms",
                "must be at most 120000: a customer would wait longer than two minutes".to_string(),
            ));
        }
        problems
    }
}
