//! The [`LlmClient`] on top of the `genai` crate: OpenAI, Anthropic, Ollama and any
//! OpenAI-compatible server, each at a base URL the configuration may point anywhere.

use std::time::Duration;

use async_trait::async_trait;
use genai::adapter::AdapterKind;
use genai::chat::{
    ChatMessage, ChatOptions, ChatRequest, ChatRole, ContentPart, MessageContent, Tool,
    ToolResponse,
};
use genai::resolver::{AuthData, Endpoint};
use genai::{Client, ModelIden, WebConfig};

use super::llm::{LlmClient, LlmError, LlmMessage, LlmReply, LlmRequest, ToolCall, UserPart};
use super::{LlmConfig, LlmProvider};

/// A client bound to one provider and base URL.
pub struct GenaiClient {
    client: Client,
    kind: AdapterKind,
    model: String,
    max_tokens: u32,
    /// OpenAI's own API: the reply's limit is `max_completion_tokens` (`max_tokens` is
    /// deprecated there, and refused by its reasoning models); servers that only speak the
    /// older shape (`openai_compatible`) keep `max_tokens`.
    completion_tokens: bool,
    timeout: Duration,
}

impl GenaiClient {
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        let kind = adapter_kind(config.provider);
        let base = base_url(config);
        // A local server without keys still needs a value in the header genai sends.
        let key = config
            .api_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "none".to_string());
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let client = Client::builder()
            .with_adapter_kind(kind)
            .append_provider_config(
                kind,
                (Endpoint::from_owned(base), AuthData::from_single(key)),
            )
            // Our own timer (in `chat`) decides; the HTTP client's is only a backstop.
            .with_web_config(WebConfig::default().with_timeout(timeout + Duration::from_secs(5)))
            .build()
            .map_err(|e| LlmError::Transport(format!("cannot build the LLM client: {e}")))?;
        Ok(Self {
            client,
            kind,
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            completion_tokens: config.provider == LlmProvider::Openai,
            timeout,
        })
    }
}

fn adapter_kind(provider: LlmProvider) -> AdapterKind {
    match provider {
        LlmProvider::Openai | LlmProvider::OpenaiCompatible => AdapterKind::OpenAI,
        LlmProvider::Anthropic => AdapterKind::Anthropic,
        LlmProvider::Ollama => AdapterKind::Ollama,
    }
}

/// The provider's base URL, always with one trailing slash (genai appends the path to it).
pub fn base_url(config: &LlmConfig) -> String {
    let base = match (&config.base_url, config.provider) {
        (Some(url), _) => url.trim().to_string(),
        (None, LlmProvider::Openai | LlmProvider::OpenaiCompatible) => {
            "https://api.openai.com/v1".to_string()
        }
        (None, LlmProvider::Anthropic) => "https://api.anthropic.com/v1".to_string(),
        (None, LlmProvider::Ollama) => "http://localhost:11434".to_string(),
    };
    format!("{}/", base.trim_end_matches('/'))
}

fn to_genai(request: &LlmRequest) -> ChatRequest {
    let mut messages = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        messages.push(match message {
            LlmMessage::User(text) => ChatMessage::user(text.as_str()),
            LlmMessage::UserParts(parts) => {
                use base64::Engine;
                let parts: Vec<ContentPart> = parts
                    .iter()
                    .map(|part| match part {
                        UserPart::Text(text) => ContentPart::Text(text.clone()),
                        UserPart::Media(media) => ContentPart::from_binary_base64(
                            media.mime.clone(),
                            base64::engine::general_purpose::STANDARD.encode(&media.bytes),
                            media.name.clone(),
                        ),
                    })
                    .collect();
                ChatMessage::new(ChatRole::User, MessageContent::from_parts(parts))
            }
            LlmMessage::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                ChatMessage::assistant(text.clone().unwrap_or_default())
            }
            LlmMessage::Assistant { text, tool_calls } => {
                let mut parts = Vec::new();
                if let Some(text) = text.as_ref().filter(|t| !t.is_empty()) {
                    parts.push(ContentPart::Text(text.clone()));
                }
                for call in tool_calls {
                    parts.push(ContentPart::ToolCall(genai::chat::ToolCall {
                        call_id: call.id.clone(),
                        fn_name: call.name.clone(),
                        fn_arguments: call.arguments.clone(),
                        thought_signatures: None,
                    }));
                }
                ChatMessage::new(ChatRole::Assistant, MessageContent::from_parts(parts))
            }
            LlmMessage::ToolResult { call_id, content } => ChatMessage::new(
                ChatRole::Tool,
                MessageContent::from_tool_responses(vec![ToolResponse::new(
                    call_id.clone(),
                    content.clone(),
                )]),
            ),
        });
    }
    let tools: Vec<Tool> = request
        .tools
        .iter()
        .map(|t| {
            Tool::new(t.name.clone())
                .with_description(t.description.clone())
                .with_schema(t.parameters.clone())
        })
        .collect();
    let mut chat = ChatRequest::new(messages).with_system(request.system.clone());
    if !tools.is_empty() {
        chat = chat.with_tools(tools);
    }
    chat
}

fn from_genai_error(e: genai::Error) -> LlmError {
    if let Some(status) = e.status() {
        let retry_after = e
            .headers()
            .and_then(concierge_channels::outbound_http::retry_after);
        return LlmError::Status {
            status: status.as_u16(),
            retry_after,
            detail: short(&e.to_string()),
        };
    }
    match &e {
        genai::Error::WebModelCall { .. } | genai::Error::WebAdapterCall { .. } => {
            LlmError::Transport(short(&e.to_string()))
        }
        _ => LlmError::Malformed(short(&e.to_string())),
    }
}

/// Error texts can carry whole request payloads: keep logs and notes short.
fn short(text: &str) -> String {
    let first = text.lines().take(3).collect::<Vec<_>>().join(" ");
    concierge_domain::clip_text(&first, 300)
}

#[async_trait]
impl LlmClient for GenaiClient {
    async fn chat(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let model = request.model.clone().unwrap_or_else(|| self.model.clone());
        let mut options = ChatOptions::default()
            .with_capture_usage(true)
            .with_capture_tool_calls(true);
        options = if self.completion_tokens {
            options.with_extra_body(serde_json::json!({ "max_completion_tokens": self.max_tokens }))
        } else {
            options.with_max_tokens(self.max_tokens)
        };
        if let Some(t) = request.temperature {
            options = options.with_temperature(t);
        }
        let call = self.client.exec_chat(
            ModelIden::new(self.kind, model),
            to_genai(request),
            Some(&options),
        );
        let response = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(LlmError::Timeout(self.timeout)),
            Ok(Err(e)) => {
                let mapped = from_genai_error(e);
                if let LlmError::Transport(detail) = &mapped
                    && detail.contains("timed out")
                {
                    return Err(LlmError::Timeout(self.timeout));
                }
                return Err(mapped);
            }
            Ok(Ok(response)) => response,
        };
        let input_tokens = response.usage.prompt_tokens.unwrap_or(0).max(0) as u64;
        let output_tokens = response.usage.completion_tokens.unwrap_or(0).max(0) as u64;
        let tool_calls = response
            .tool_calls()
            .into_iter()
            .map(|c| ToolCall {
                id: c.call_id.clone(),
                name: c.fn_name.clone(),
                arguments: c.fn_arguments.clone(),
            })
            .collect();
        let texts = response.texts();
        let text = (!texts.is_empty())
            .then(|| texts.join("\n"))
            .filter(|t| !t.trim().is_empty());
        Ok(LlmReply {
            text,
            tool_calls,
            input_tokens,
            output_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(provider: LlmProvider, base: Option<&str>) -> LlmConfig {
        LlmConfig {
            provider,
            model: "m".into(),
            base_url: base.map(str::to_string),
            api_key: None,
            timeout_secs: 30,
            max_tokens: 100,
            max_retries: 0,
        }
    }

    #[test]
    fn base_urls_get_one_trailing_slash() {
        let with = config(LlmProvider::OpenaiCompatible, Some("http://h:1/v1/"));
        let without = config(LlmProvider::OpenaiCompatible, Some("http://h:1/v1"));
        assert_eq!(base_url(&with), "http://h:1/v1/");
        assert_eq!(base_url(&without), "http://h:1/v1/");
        assert_eq!(
            base_url(&config(LlmProvider::Ollama, None)),
            "http://localhost:11434/"
        );
    }
}
