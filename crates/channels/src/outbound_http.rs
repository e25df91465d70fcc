//! What the adapters that call a platform over HTTP share: classifying a failed call so the
//! delivery worker knows whether, and when, to try again.

use std::time::Duration;

use super::{MediaBytes, MediaError, SendError};

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
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// Reads a media download, refusing one larger than `limit` bytes (before reading it when the
/// size is announced, as soon as it is passed otherwise).
pub async fn read_media(
    mut response: reqwest::Response,
    limit: u64,
    fallback_mime: Option<String>,
) -> Result<MediaBytes, MediaError> {
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(MediaError::NotFound);
    }
    if !response.status().is_success() {
        return Err(MediaError::Failed(format!(
            "HTTP {} downloading the media",
            response.status()
        )));
    }
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(MediaError::TooLarge { limit });
    }
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(fallback_mime);
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| MediaError::Failed(without_url(&e)))?
    {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(MediaError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(MediaBytes {
        mime,
        bytes: bytes.into(),
    })
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
