//! iMessage through a BlueBubbles server on a Mac: its webhook (authenticated by the secret
//! in the URL, as the bridge cannot sign), chats as conversations, tapbacks as reactions,
//! delivery and read receipts, and sends through the server's REST API.

mod config;
mod parse;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

pub use self::config::{BlueBubblesConfig, SendMethod};
use super::outbound_http::{read_media, request_error, without_url};
use super::signature::same_secret;
use super::{
    Capabilities, ChannelAdapter, ChannelKind, MediaBytes, MediaError, OutboundMessage, ParseError,
    SendError, SendReceipt, VerifyError, WebhookRequest,
};
use concierge_domain::{
    ChannelId, ContactId, Content, InboundEvent, MediaKind, MediaRef, PlatformMessageId,
};

pub struct BlueBubbles {
    id: ChannelId,
    config: BlueBubblesConfig,
    http: reqwest::Client,
    capabilities: Capabilities,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<SentMessage>,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    #[serde(default)]
    guid: Option<String>,
}

impl BlueBubbles {
    pub fn new(id: ChannelId, config: BlueBubblesConfig, http: reqwest::Client) -> Self {
        Self {
            id,
            config,
            http,
            capabilities: Capabilities {
                max_buttons: 0,
                max_list_rows: 0,
                media: &[
                    MediaKind::Image,
                    MediaKind::Audio,
                    MediaKind::Video,
                    MediaKind::Document,
                ],
                reply_window: None,
                typing: true,
                read_receipts: true,
                max_text_chars: 10_000,
                templates: false,
                media_captions: false,
            },
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/v1/{path}",
            self.config.server_url.trim_end_matches('/')
        )
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<Option<String>, SendError> {
        let request = self.http.post(self.url(path)).json(&body);
        self.answer(request).await
    }

    /// Sends a file from a public URL as an attachment (the server takes an upload).
    async fn post_attachment(
        &self,
        chat: &str,
        temp_guid: &str,
        url: &str,
    ) -> Result<Option<String>, SendError> {
        let download = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| request_error(&e))?;
        let file = read_media(download, self.config.media_max_bytes, None)
            .await
            .map_err(|e| SendError::Rejected {
                code: None,
                reason: format!("cannot fetch the attachment to send: {e}"),
            })?;
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|path| path.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or("attachment")
            .to_string();
        self.send_file(chat, temp_guid, name, file.mime.as_deref(), file.bytes)
            .await
    }

    /// Uploads one file to the chat (`POST /message/attachment`, multipart).
    async fn send_file(
        &self,
        chat: &str,
        temp_guid: &str,
        name: String,
        mime: Option<&str>,
        bytes: bytes::Bytes,
    ) -> Result<Option<String>, SendError> {
        let mut part = reqwest::multipart::Part::stream(bytes).file_name(name.clone());
        if let Some(mime) = mime {
            part = part.mime_str(mime).map_err(|e| SendError::Rejected {
                code: None,
                reason: format!("the attachment's type is not valid: {e}"),
            })?;
        }
        let form = reqwest::multipart::Form::new()
            .text("chatGuid", chat.to_string())
            .text("tempGuid", temp_guid.to_string())
            .text("name", name)
            .text("method", self.config.method.as_str())
            .part("attachment", part);
        let request = self
            .http
            .post(self.url("message/attachment"))
            .multipart(form);
        self.answer(request).await
    }

    /// Sends a call to the server with its password, and reads its answer.
    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Option<String>, SendError> {
        let response = request
            .query(&[("password", self.config.password.expose())])
            .send()
            .await
            .map_err(|e| request_error(&e))?;
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(_) if status.is_success() => return Ok(None),
            Err(e) => return Err(request_error(&e)),
        };
        if status.is_success() {
            let answer = serde_json::from_slice::<Answer>(&bytes).ok();
            return Ok(answer.and_then(|a| a.data).and_then(|d| d.guid));
        }
        let text = String::from_utf8_lossy(&bytes);
        let reason = format!("BlueBubbles answered HTTP {status}");
        Err(if status.is_server_error() {
            // The server answers once the Mac has tried: a 500 may come after the message
            // went out with an error, so a retry must know it may repeat it.
            SendError::Ambiguous { reason }
        } else if text.contains("already") {
            // The same tempGuid is still being sent: wait for it, do not fail it.
            SendError::RetryAfter {
                after: std::time::Duration::from_secs(30),
                reason: format!("{reason}: the same message is still being sent"),
            }
        } else {
            SendError::Rejected {
                code: Some(status.as_u16().to_string()),
                reason,
            }
        })
    }

    /// The text a content becomes on iMessage (no buttons, no templates).
    fn text_of(content: &Content) -> Option<String> {
        match content {
            Content::Text { body } => Some(body.clone()),
            Content::Choices { body, choices, .. } => {
                let mut lines = vec![body.clone(), String::new()];
                for (i, choice) in choices.iter().enumerate() {
                    lines.push(format!("{}. {}", i + 1, choice.title));
                }
                Some(lines.join("\n"))
            }
            Content::Location {
                latitude,
                longitude,
                name,
                ..
            } => Some(format!(
                "{}https://maps.apple.com/?ll={latitude},{longitude}",
                name.as_deref()
                    .map(|n| format!("{n}\n"))
                    .unwrap_or_default()
            )),
            Content::Choice(choice) => Some(choice.title.clone()),
            Content::Products { body, products } => Some(crate::numbered_products(body, products)),
            Content::PaymentLink { body, url, label } => Some(format!("{body}\n{label}: {url}")),
            _ => None,
        }
    }
}

/// A value percent-encoded for one URL path segment (chat guids hold `;` and `+`).
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[async_trait]
impl ChannelAdapter for BlueBubbles {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Bluebubbles
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The bridge cannot sign: its webhook URL carries `?secret=`, compared in constant time.
    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        let secret = request
            .query
            .get("secret")
            .ok_or(VerifyError::Missing("secret"))?;
        if same_secret(
            secret.as_bytes(),
            self.config.webhook_secret.expose().as_bytes(),
        ) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    /// The bridge authenticates by the URL it was given: `?secret=` joins the query.
    fn sign(&self, request: &mut WebhookRequest) -> Result<(), super::SignError> {
        let secret = self.config.webhook_secret.expose();
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC);
        let rest = request
            .raw_query
            .as_deref()
            .map(concierge_store::credentials::without_credential_params)
            .filter(|q| !q.is_empty());
        request.raw_query = Some(match rest {
            Some(rest) => format!("{rest}&secret={encoded}"),
            None => format!("secret={encoded}"),
        });
        request
            .query
            .insert("secret".to_string(), secret.to_string());
        Ok(())
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        parse::parse(&self.id, &request.body)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let chat = message.contact.as_str();
        // The temporary guid is stable across attempts: the server and its echo carry it.
        let temp_guid = format!("temp-{}", message.message_id);
        let guid = match (&message.content, &message.attachment) {
            (Content::Reaction { target, emoji }, _) => {
                let Some(reaction) = parse::tapback_name(emoji) else {
                    return Err(SendError::Rejected {
                        code: None,
                        reason: if emoji.is_empty() {
                            "taking a tapback back is not supported on iMessage".to_string()
                        } else {
                            format!("iMessage has no tapback for {emoji}")
                        },
                    });
                };
                self.post(
                    "message/react",
                    json!({
                        "chatGuid": chat,
                        "selectedMessageGuid": target,
                        "reaction": reaction,
                        "partIndex": 0,
                    }),
                )
                .await?
            }
            (Content::Media { .. }, Some(file)) => {
                self.send_file(
                    chat,
                    &temp_guid,
                    file.file_name(),
                    Some(&file.media.mime),
                    file.bytes.clone(),
                )
                .await?
            }
            (Content::Media { media, .. }, None) => {
                if !(media.0.starts_with("https://") || media.0.starts_with("http://")) {
                    return Err(SendError::Rejected {
                        code: None,
                        reason: "iMessage attachments are sent from a public URL".to_string(),
                    });
                }
                self.post_attachment(chat, &temp_guid, &media.0).await?
            }
            (content, _) => {
                let Some(text) = Self::text_of(content) else {
                    return Err(SendError::Rejected {
                        code: None,
                        reason: format!("cannot send {} content to iMessage", content.kind_name()),
                    });
                };
                let mut body = json!({
                    "chatGuid": chat,
                    "tempGuid": temp_guid,
                    "message": text,
                    "method": self.config.method.as_str(),
                });
                // Quoting needs the server's Private API; AppleScript cannot quote.
                if let (Some(reply_to), SendMethod::PrivateApi) =
                    (&message.reply_to, self.config.method)
                {
                    body["selectedMessageGuid"] = json!(reply_to.as_str());
                }
                self.post("message/text", body).await?
            }
        };
        Ok(SendReceipt {
            platform_id: PlatformMessageId::parse(guid.unwrap_or(temp_guid)).ok(),
        })
    }

    async fn fetch_media(&self, media: &MediaRef) -> Result<MediaBytes, MediaError> {
        let response = self
            .http
            .get(self.url(&format!("attachment/{}/download", path_segment(&media.0))))
            .query(&[("password", self.config.password.expose())])
            .send()
            .await
            .map_err(|e| MediaError::Failed(without_url(&e)))?;
        read_media(response, self.config.media_max_bytes, None).await
    }

    /// Marks the chat read and shows typing (needs the server's Private API; best effort).
    async fn turn_started(&self, contact: &ContactId, _message: &PlatformMessageId) {
        for path in ["read", "typing"] {
            let result = self
                .http
                .post(self.url(&format!("chat/{}/{path}", path_segment(contact.as_str()))))
                .query(&[("password", self.config.password.expose())])
                .send()
                .await;
            if let Err(e) = result {
                tracing::debug!(channel = %self.id, error = %without_url(&e), "cannot signal the chat");
            }
        }
    }
}
