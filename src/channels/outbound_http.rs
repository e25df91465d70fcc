//! What the adapters that call a platform over HTTP share: classifying a failed call so the
//! delivery worker knows whether, and when, to try again.

use std::time::Duration;

use super::SendError;

/// A request that failed before any answer: refused connections never reached the platform;
/// anything later (a timeout, a connection closed mid-way) may have.
pub fn request_error(e: &reqwest::Error) -> SendError {
    if e.is_connect() {
        SendError::Transient {
            reason: format!("cannot connect: {}", without_url(e)),
        }
    } else {
        SendError::Ambiguous {
            reason: format!("no answer: {}", without_url(e)),
        }
    }
}

/// The error's text without the request URL (which may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// A `Retry-After` header in seconds, when the platform sent one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
