//! Voice notes put into words by a transcription server that speaks OpenAI's
//! `/v1/audio/transcriptions` (OpenAI, Groq, a local whisper server): `[transcription]` of
//! `concierge.toml`, and the client. What the server answers is data, bounded in size.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use concierge_domain::{Secret, clip_text};

/// The longest transcript kept (a few minutes of speech); longer ones are clipped.
pub const MAX_TRANSCRIPT_CHARS: usize = 4_000;
/// The largest answer read from the server.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// `[transcription]`: without it, voice notes reach the agents as what they are, not words.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// `openai_compatible`, the one shape every server named above speaks.
    pub provider: TranscriptionProvider,
    /// The API's base URL, `…/v1`.
    pub base_url: String,
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptionProvider {
    OpenaiCompatible,
}

fn default_model() -> String {
    "whisper-1".to_string()
}

fn default_timeout() -> u64 {
    60
}

impl TranscriptionConfig {
    /// What is wrong with the section, as (key, problem) pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(("base_url", "must be an http:// or https:// URL".to_string()));
        }
        if self.model.trim().is_empty() {
            problems.push(("model", "must name a model".to_string()));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 600 {
            problems.push(("timeout_secs", "must be between 1 and 600".to_string()));
        }
        problems
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscribeError {
    #[error("the transcription server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the transcription server answered {0}")]
    Status(u16),
    #[error("the transcription server could not be reached")]
    Transport,
    #[error("the transcription server's answer could not be read")]
    Malformed,
}

impl TranscribeError {
    /// A fixed word for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TranscribeError::Timeout(_) => "timeout",
            TranscribeError::Status(_) => "status",
            TranscribeError::Transport => "transport",
            TranscribeError::Malformed => "malformed",
        }
    }
}

/// A client of one transcription server.
#[derive(Clone)]
pub struct Transcriber {
    config: TranscriptionConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    text: String,
}

impl Transcriber {
    pub fn new(config: TranscriptionConfig, http: reqwest::Client) -> Transcriber {
        Transcriber { config, http }
    }

    /// The words of a voice note of type `mime`, clipped to [`MAX_TRANSCRIPT_CHARS`], with
    /// control characters but new lines taken out.
    pub async fn transcribe(&self, audio: Bytes, mime: &str) -> Result<String, TranscribeError> {
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        let file = reqwest::multipart::Part::stream(audio)
            .file_name(format!("voice.{}", extension(mime)))
            .mime_str(mime)
            .map_err(|_| TranscribeError::Malformed)?;
        let form = reqwest::multipart::Form::new()
            .text("model", self.config.model.clone())
            .text("response_format", "json")
            .part("file", file);
        let url = format!(
            "{}/audio/transcriptions",
            self.config.base_url.trim().trim_end_matches('/')
        );
        let mut request = self.http.post(url).multipart(form).timeout(timeout);
        if let Some(key) = self
            .config
            .api_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
        {
            request = request.bearer_auth(key.expose());
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                TranscribeError::Timeout(timeout)
            } else {
                TranscribeError::Transport
            }
        })?;
        if !response.status().is_success() {
            return Err(TranscribeError::Status(response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| TranscribeError::Transport)?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(TranscribeError::Malformed);
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|_| TranscribeError::Malformed)?;
        let text: String = answer
            .text
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect();
        Ok(clip_text(text.trim(), MAX_TRANSCRIPT_CHARS))
    }
}

/// A file name's extension the server can tell the format by.
fn extension(mime: &str) -> &'static str {
    match mime {
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/m4a" | "audio/aac" | "video/mp4" => "m4a",
        "audio/x-wav" => "wav",
        "audio/x-flac" => "flac",
        "audio/amr" => "amr",
        "video/webm" => "webm",
        _ => "bin",
    }
}
