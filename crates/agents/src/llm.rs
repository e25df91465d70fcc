//! The LLM client trait the agents call, its request and reply shapes, and two layers around
//! any client: the retry policy (calls refused with 429 or a 5xx are tried again with
//! backoff) and the meter (an `llm` span and the metrics of every request to the provider).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tracing::Instrument;

use concierge_domain::ConversationId;
use concierge_telemetry::{LlmCallResult, LlmLabels, Metrics};

/// One chat completion request: a system prompt, the conversation so far, the tools.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// A model other than the client's default (an agent's override).
    pub model: Option<String>,
    pub system: String,
    pub messages: Vec<LlmMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: Option<f64>,
    /// The conversation the call works for: for the `llm` span, never sent to the provider.
    pub conversation: Option<ConversationId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmMessage {
    User(String),
    /// A customer's words with what they showed (images), in the order they came.
    UserParts(Vec<UserPart>),
    Assistant {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
    },
}

/// One part of a customer's message to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum UserPart {
    Text(String),
    Media(LlmMedia),
}

/// Bytes the model reads beside the text: an image (fitted to the size models use).
#[derive(Clone, PartialEq)]
pub struct LlmMedia {
    pub mime: String,
    pub bytes: bytes::Bytes,
    /// The file name a provider shows the model (a PDF's); none for images.
    pub name: Option<String>,
}

impl std::fmt::Debug for LlmMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LlmMedia({}, {} bytes, {:?})",
            self.mime,
            self.bytes.len(),
            self.name
        )
    }
}

impl LlmMessage {
    /// Adds a customer's message to this one if it is the customer's too (consecutive
    /// messages of one author are one turn for every provider); gives it back otherwise.
    pub fn join_customer(&mut self, text: String, media: Option<LlmMedia>) -> Option<LlmMessage> {
        match self {
            LlmMessage::User(previous) => match media {
                None => {
                    previous.push('\n');
                    previous.push_str(&text);
                }
                Some(media) => {
                    let before = std::mem::take(previous);
                    *self = LlmMessage::UserParts(vec![
                        UserPart::Text(format!("{before}\n{text}")),
                        UserPart::Media(media),
                    ]);
                }
            },
            LlmMessage::UserParts(parts) => {
                match parts.last_mut() {
                    Some(UserPart::Text(previous)) => {
                        previous.push('\n');
                        previous.push_str(&text);
                    }
                    _ => parts.push(UserPart::Text(text)),
                }
                parts.extend(media.map(UserPart::Media));
            }
            _ => return Some(LlmMessage::customer(text, media)),
        }
        None
    }

    /// The message without its images (their description stays in the text).
    pub fn without_media(self) -> LlmMessage {
        match self {
            LlmMessage::UserParts(parts) => {
                let texts: Vec<String> = parts
                    .into_iter()
                    .filter_map(|part| match part {
                        UserPart::Text(text) => Some(text),
                        UserPart::Media(_) => None,
                    })
                    .collect();
                LlmMessage::User(texts.join("\n"))
            }
            other => other,
        }
    }

    /// A customer's message, with its image if it has one.
    pub fn customer(text: String, media: Option<LlmMedia>) -> LlmMessage {
        match media {
            None => LlmMessage::User(text),
            Some(media) => {
                LlmMessage::UserParts(vec![UserPart::Text(text), UserPart::Media(media)])
            }
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The JSON Schema of its arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// What the model answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmReply {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider answered with an error status.
    #[error("the LLM provider answered {status}: {detail}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The provider could not be reached.
    #[error("cannot reach the LLM provider: {0}")]
    Transport(String),
    /// The answer could not be understood (a malformed tool call, say).
    #[error("the LLM's answer could not be read: {0}")]
    Malformed(String),
}

impl LlmError {
    /// Whether trying again may help: rate limits and server errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Transport(_) => true,
            _ => false,
        }
    }

    /// The kind of failure, a fixed word for metrics: timeout, rate_limited, server_error,
    /// client_error, transport, malformed.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "timeout",
            LlmError::Status { status: 429, .. } => "rate_limited",
            LlmError::Status { status, .. } if *status >= 500 => "server_error",
            LlmError::Status { .. } => "client_error",
            LlmError::Transport(_) => "transport",
            LlmError::Malformed(_) => "malformed",
        }
    }

    /// What went wrong, for people who are not told the provider's own words (a concierge
    /// reading a handoff brief): the kind of failure and the status, never the detail, which
    /// may name the provider's internal addresses.
    pub fn for_concierge(&self) -> String {
        match self {
            LlmError::Timeout(_) => "the language model did not answer (timeout)".to_string(),
            LlmError::Status { status: 429, .. } => {
                "the language model is over its rate limit (HTTP 429)".to_string()
            }
            LlmError::Status { status, .. } if *status >= 500 => {
                format!("the language model failed (HTTP {status})")
            }
            LlmError::Status { status, .. } => {
                format!("the language model refused the request (HTTP {status})")
            }
            LlmError::Transport(_) => "the language model could not be reached".to_string(),
            LlmError::Malformed(_) => "the language model's answer could not be read".to_string(),
        }
    }
}

#[async_trait]
pub trait LlmClient: Send + Sync {
    async fn chat(&self, request: &LlmRequest) -> Result<LlmReply, LlmError>;

    /// The caller is about to send `request` once more after a failure (for the counters).
    fn retrying(&self, _request: &LlmRequest) {}
}

/// Tries a client again on 429, 5xx and connection failures: `max_retries` more times, waiting
/// `initial` then twice as long each time, or what the provider's `Retry-After` asks (capped).
pub struct Retrying<C> {
    inner: C,
    max_retries: u32,
    initial: Duration,
}

/// No wait between two attempts is longer than this, whatever the provider asks.
const MAX_WAIT: Duration = Duration::from_secs(20);

impl<C> Retrying<C> {
    pub fn new(inner: C, max_retries: u32, initial: Duration) -> Self {
        Self {
            inner,
            max_retries,
            initial,
        }
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Retrying<C> {
    async fn chat(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let mut wait = self.initial;
        let mut attempt = 0;
        loop {
            match self.inner.chat(request).await {
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    attempt += 1;
                    let asked = match &e {
                        LlmError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let pause = asked.unwrap_or(wait).min(MAX_WAIT);
                    self.inner.retrying(request);
                    tracing::info!(error = %e, attempt, wait_ms = pause.as_millis() as u64, "LLM call refused; trying again");
                    tokio::time::sleep(pause).await;
                    wait = (wait * 2).min(MAX_WAIT);
                }
                other => return other,
            }
        }
    }
}

/// Measures every request to the provider: an `llm` span (provider, model, conversation,
/// outcome, tokens), and the calls, latency, tokens and errors by provider and model. Goes
/// inside [`Retrying`], so each attempt is one call and the retries are counted too.
pub struct Metered<C> {
    inner: C,
    metrics: Metrics,
    provider: &'static str,
    /// The configured model, for requests without an agent's override.
    model: String,
}

impl<C> Metered<C> {
    pub fn new(inner: C, metrics: Metrics, provider: &'static str, model: &str) -> Self {
        Self {
            inner,
            metrics,
            provider,
            model: model.to_string(),
        }
    }

    fn labels(&self, request: &LlmRequest) -> LlmLabels {
        LlmLabels {
            provider: self.provider,
            model: request.model.as_ref().unwrap_or(&self.model).clone(),
        }
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Metered<C> {
    async fn chat(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let labels = self.labels(request);
        let span = tracing::info_span!(
            "llm",
            provider = labels.provider,
            model = %labels.model,
            conversation = request.conversation.as_ref().map(tracing::field::display),
            outcome = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.inner.chat(request).instrument(span.clone()).await;
        let seconds = started.elapsed().as_secs_f64();
        let outcome = match &result {
            Ok(reply) => {
                span.record("outcome", "ok");
                span.record("prompt_tokens", reply.input_tokens);
                span.record("completion_tokens", reply.output_tokens);
                LlmCallResult::Answered {
                    prompt_tokens: reply.input_tokens,
                    completion_tokens: reply.output_tokens,
                }
            }
            Err(e) => {
                span.record("outcome", e.kind());
                LlmCallResult::Failed(e.kind())
            }
        };
        self.metrics.llm_call(&labels, seconds, outcome);
        result
    }

    fn retrying(&self, request: &LlmRequest) {
        self.metrics.llm_retry(&self.labels(request));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn customers_messages_join_with_their_images_in_order_and_lose_them_for_a_blind_model() {
        use super::{LlmMedia, LlmMessage, UserPart};
        let photo = || LlmMedia {
            mime: "image/jpeg".into(),
            bytes: bytes::Bytes::from_static(b"jpeg"),
            name: None,
        };
        let mut message = LlmMessage::customer("hello".into(), None);
        assert!(
            message
                .join_customer("[image attached] the crack".into(), Some(photo()))
                .is_none()
        );
        assert!(message.join_customer("and this".into(), None).is_none());
        assert_eq!(
            message,
            LlmMessage::UserParts(vec![
                UserPart::Text("hello\n[image attached] the crack".into()),
                UserPart::Media(photo()),
                UserPart::Text("and this".into()),
            ])
        );
        assert_eq!(
            message.without_media(),
            LlmMessage::User("hello\n[image attached] the crack\nand this".into())
        );
        let mut answer = LlmMessage::Assistant {
            text: Some("hi".into()),
            tool_calls: Vec::new(),
        };
        assert!(
            answer.join_customer("next".into(), None).is_some(),
            "another author: apart"
        );
    }

    use std::sync::Mutex;

    use super::*;

    struct Scripted(Mutex<Vec<Result<LlmReply, LlmError>>>);

    #[async_trait]
    impl LlmClient for Scripted {
        async fn chat(&self, _request: &LlmRequest) -> Result<LlmReply, LlmError> {
            let mut answers = self.0.lock().unwrap();
            answers.remove(0)
        }
    }

    fn request() -> LlmRequest {
        LlmRequest {
            model: None,
            system: "s".into(),
            messages: vec![LlmMessage::User("hi".into())],
            tools: vec![],
            temperature: None,
            conversation: None,
        }
    }

    fn status(status: u16) -> Result<LlmReply, LlmError> {
        Err(LlmError::Status {
            status,
            retry_after: None,
            detail: String::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_rate_limits_and_server_errors_then_answers() {
        let ok = LlmReply {
            text: Some("hello".into()),
            ..LlmReply::default()
        };
        let client = Retrying::new(
            Scripted(Mutex::new(vec![status(429), status(503), Ok(ok.clone())])),
            2,
            Duration::from_millis(100),
        );
        assert_eq!(client.chat(&request()).await.unwrap(), ok);
    }

    #[tokio::test(start_paused = true)]
    async fn the_meter_counts_each_attempt_its_tokens_and_the_retries() {
        let metrics = Metrics::new();
        let ok = LlmReply {
            text: Some("hello".into()),
            input_tokens: 10,
            output_tokens: 3,
            ..LlmReply::default()
        };
        let client = Retrying::new(
            Metered::new(
                Scripted(Mutex::new(vec![status(429), Ok(ok)])),
                metrics.clone(),
                "openai",
                "m",
            ),
            2,
            Duration::from_millis(100),
        );
        client.chat(&request()).await.unwrap();
        let text = metrics.render();
        for line in [
            "concierge_llm_calls_total{provider=\"openai\",model=\"m\"} 2",
            "concierge_llm_retries_total{provider=\"openai\",model=\"m\"} 1",
            "concierge_llm_errors_total{provider=\"openai\",model=\"m\",error=\"rate_limited\"} 1",
            "concierge_llm_tokens_total{provider=\"openai\",model=\"m\",kind=\"prompt\"} 10",
            "concierge_llm_tokens_total{provider=\"openai\",model=\"m\",kind=\"completion\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_retries_and_never_retries_a_client_error() {
        let client = Retrying::new(
            Scripted(Mutex::new(vec![status(500), status(500), status(500)])),
            1,
            Duration::from_millis(100),
        );
        assert!(matches!(
            client.chat(&request()).await,
            Err(LlmError::Status { status: 500, .. })
        ));
        let client = Retrying::new(
            Scripted(Mutex::new(vec![status(400), Ok(LlmReply::default())])),
            3,
            Duration::from_millis(100),
        );
        assert!(matches!(
            client.chat(&request()).await,
            Err(LlmError::Status { status: 400, .. })
        ));
    }
}
