//! Reproducing production traffic on a laptop: `concierge inbox export` prints the raw
//! webhooks the store kept (credentials already removed at ingest) as JSON lines, and
//! `concierge replay` posts them to another gateway, in order, each re-signed by the target
//! channel's own adapter for the target's secrets. Nothing here knows a platform: signing is
//! `ChannelAdapter::sign`, and what a credential is, `store::credentials::kept_request`.
//!
//! The record, one JSON object per line, oldest first:
//! `{"channel", "kind", "received_at" (RFC 3339), "query" (string or null),
//!   "headers" ([[name, value], …] in the order received), "body" (the body when it is UTF-8)
//!   or "body_base64" (otherwise)}`.

mod export;
mod send;

pub use self::export::{ExportOptions, export};
pub use self::send::{ReplayOptions, Summary, replay};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::store::RawWebhook;

/// One exported webhook: the line format `export` writes and `replay` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub channel: String,
    pub kind: String,
    pub received_at: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl Record {
    pub fn from_raw(raw: &RawWebhook) -> Record {
        let received_at = jiff::Timestamp::from_millisecond(raw.received_at)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| raw.received_at.to_string());
        let (body, body_base64) = match std::str::from_utf8(&raw.body) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&raw.body)),
            ),
        };
        Record {
            channel: raw.channel.as_str().to_string(),
            kind: raw.kind.clone(),
            received_at,
            query: raw.query.clone(),
            headers: raw.headers.clone(),
            body,
            body_base64,
        }
    }

    /// The body's bytes, from whichever field holds them.
    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => Err("has both `body` and `body_base64`".to_string()),
            (Some(text), None) => Ok(text.clone().into_bytes()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("`body_base64` is not base64: {e}")),
            (None, None) => Err("has neither `body` nor `body_base64`".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChannelId;

    fn raw(body: &[u8]) -> RawWebhook {
        RawWebhook {
            channel: ChannelId::parse("whatsapp").unwrap(),
            kind: "whatsapp".to_string(),
            received_at: 1_767_225_600_123,
            query: Some("a=1".to_string()),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn a_utf8_body_is_text_and_any_other_is_base64() {
        let text = Record::from_raw(&raw(b"{\"a\":\"\xc3\xa9\"}"));
        assert_eq!(text.body.as_deref(), Some("{\"a\":\"é\"}"));
        assert_eq!(text.body_base64, None);
        assert_eq!(text.received_at, "2026-01-01T00:00:00.123Z");
        let line = serde_json::to_string(&text).unwrap();
        assert!(!line.contains("body_base64"), "{line}");
        let binary = Record::from_raw(&raw(&[0xff, 0x00, 0x41]));
        assert_eq!(binary.body, None);
        let back: Record = serde_json::from_str(&serde_json::to_string(&binary).unwrap()).unwrap();
        assert_eq!(back.body_bytes().unwrap(), vec![0xff, 0x00, 0x41]);
    }
}
