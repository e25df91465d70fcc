//! Telegram through the Bot API: the webhook with its secret token, updates read with our
//! own wire types, sends paced per chat and overall, 429 retry_after honoured.

mod config;
mod parse;
pub mod poll;
mod wire;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use self::config::{TelegramConfig, TelegramMode};
use super::outbound_http::{read_media, request_error, without_url};
use super::signature::same_secret;
use super::{
    Attachment, Capabilities, ChannelAdapter, ChannelKind, MediaBytes, MediaError, OutboundMessage,
    ParseError, RateLimiter, SendError, SendReceipt, VerifyError, WebhookRequest,
};
use concierge_domain::{
    ChannelId, ContactId, Content, InboundEvent, MediaKind, MediaRef, PlatformMessageId,
};

pub struct Telegram {
    id: ChannelId,
    config: TelegramConfig,
    http: reqwest::Client,
    capabilities: Capabilities,
    overall: RateLimiter,
    /// When each chat may next be sent to.
    per_chat: Mutex<HashMap<String, Instant>>,
    chat_interval: Duration,
}

impl Telegram {
    /// Stops a button's spinner. Best effort: a failure is logged.
    pub(crate) async fn answer_callback(&self, query: &str) {
        if let Err(e) = self
            .call(
                "answerCallbackQuery",
                &json!({ "callback_query_id": query }),
            )
            .await
        {
            tracing::debug!(channel = %self.id, error = %e, "cannot answer the callback query");
        }
    }

    pub fn new(id: ChannelId, config: TelegramConfig, http: reqwest::Client) -> Self {
        let chat_interval = Duration::try_from_secs_f64(1.0 / config.messages_per_second_per_chat)
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(60));
        Self {
            id,
            overall: RateLimiter::new(config.messages_per_second),
            config,
            http,
            capabilities: Capabilities {
                max_buttons: 100,
                max_list_rows: 100,
                media: &[MediaKind::Image, MediaKind::Document],
                reply_window: None,
                typing: true,
                read_receipts: false,
                // Telegram counts 4,096 UTF-16 units, as the engine's split does.
                max_text_chars: 4096,
                templates: false,
                media_captions: true,
            },
            per_chat: Mutex::new(HashMap::new()),
            chat_interval,
        }
    }

    pub fn config(&self) -> &TelegramConfig {
        &self.config
    }

    /// Registers `url` as the bot's webhook with our secret token and the update kinds we
    /// use; Telegram's answer on success.
    pub async fn set_webhook(&self, url: &str) -> Result<Value, SendError> {
        self.call(
            "setWebhook",
            &json!({
                "url": url,
                "secret_token": self.config.secret_token.expose(),
                "allowed_updates": poll::ALLOWED_UPDATES,
                // One delivery at a time: Telegram's parallel deliveries could swap two
                // messages of a chat; our acknowledgements take milliseconds.
                "max_connections": 1,
            }),
        )
        .await
    }

    fn method_url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.config.api_base.trim_end_matches('/'),
            self.config.bot_token.expose()
        )
    }

    /// Waits for this chat's next slot, then for the bot's overall one. Groups (negative
    /// chat ids) get at most 20 messages a minute, as Telegram allows.
    async fn pace(&self, chat: &str) {
        let interval = if chat.starts_with('-') {
            self.chat_interval.max(Duration::from_secs(3))
        } else {
            self.chat_interval
        };
        let slot = {
            let mut next = self.per_chat.lock().await;
            let now = Instant::now();
            next.retain(|_, at| *at > now);
            let slot = next.get(chat).copied().unwrap_or(now).max(now);
            next.insert(chat.to_string(), slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        self.overall.acquire().await;
    }

    /// Calls a Bot API method; its `result` on success.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SendError> {
        self.call_within(method, body, None).await
    }

    /// Calls a method with its own time limit (a long poll outlasts the client's default).
    pub async fn call_within(
        &self,
        method: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, SendError> {
        Ok(self
            .call_for::<Value>(method, body, timeout)
            .await?
            .unwrap_or(Value::Null))
    }

    /// Calls a method and reads its `result` as a `T` straight from the answer's bytes;
    /// `None` when a successful answer has no `result` of that shape.
    async fn call_for<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, SendError> {
        let mut request = self.http.post(self.method_url(method)).json(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        Self::answer(request).await
    }

    /// Sends a reply's file with its method's multipart form (`sendPhoto`, `sendVoice`, …):
    /// the field named for the kind carries the bytes, with the chat, caption and reply.
    async fn upload(
        &self,
        chat: i64,
        content: &Content,
        attachment: &Attachment,
        reply_to: Option<i32>,
    ) -> Result<Value, SendError> {
        let (method, field) = match attachment.media.mime.as_str() {
            "image/jpeg" | "image/png" | "image/webp" => ("sendPhoto", "photo"),
            "image/gif" => ("sendAnimation", "animation"),
            "audio/ogg" => ("sendVoice", "voice"),
            "audio/mpeg" | "audio/mp4" => ("sendAudio", "audio"),
            "video/mp4" => ("sendVideo", "video"),
            _ => ("sendDocument", "document"),
        };
        let file = reqwest::multipart::Part::stream(attachment.bytes.clone())
            .file_name(attachment.file_name())
            .mime_str(&attachment.media.mime)
            .map_err(|e| SendError::Rejected {
                code: None,
                reason: format!("the file's type cannot be sent: {e}"),
            })?;
        let mut form = reqwest::multipart::Form::new()
            .text("chat_id", chat.to_string())
            .part(field, file);
        if let Content::Media {
            caption: Some(caption),
            ..
        } = content
        {
            form = form.text("caption", caption.chars().take(1024).collect::<String>());
        }
        if let Some(reply_to) = reply_to {
            form = form.text(
                "reply_parameters",
                json!({ "message_id": reply_to, "allow_sending_without_reply": true }).to_string(),
            );
        }
        let request = self.http.post(self.method_url(method)).multipart(form);
        Ok(Self::answer::<Value>(request).await?.unwrap_or(Value::Null))
    }

    /// Reads a Bot API answer: its `result` as a `T` on success (`None` when it has none of
    /// that shape), the error as the worker's next step otherwise.
    async fn answer<T: DeserializeOwned>(
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, SendError> {
        let response = request.send().await.map_err(|e| request_error(&e))?;
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(_) if status.is_success() => return Ok(None),
            Err(e) => return Err(request_error(&e)),
        };
        let answer = serde_json::from_slice::<wire::Answer<T>>(&bytes).ok();
        match answer {
            Some(answer) if answer.ok => Ok(answer.result),
            Some(answer) => {
                let reason = answer
                    .description
                    .unwrap_or_else(|| format!("HTTP {status}"));
                let code = answer.error_code.unwrap_or(i64::from(status.as_u16()));
                if let Some(after) = answer.parameters.and_then(|p| p.retry_after) {
                    return Err(SendError::RetryAfter {
                        after: Duration::from_secs(after),
                        reason,
                    });
                }
                Err(match code {
                    429 => SendError::RetryAfter {
                        after: Duration::from_secs(1),
                        reason,
                    },
                    500.. => SendError::Transient { reason },
                    _ => SendError::Rejected {
                        code: Some(code.to_string()),
                        reason,
                    },
                })
            }
            None if status.is_success() => Ok(None),
            None if status.is_server_error() => Err(SendError::Transient {
                reason: format!("HTTP {status}"),
            }),
            None => Err(SendError::Rejected {
                code: Some(status.as_u16().to_string()),
                reason: format!("HTTP {status}"),
            }),
        }
    }

    /// The method and body for one piece of content.
    fn request(
        chat: i64,
        content: &Content,
        reply_to: Option<i32>,
    ) -> Result<(&'static str, Value), String> {
        let (method, mut body) = match content {
            Content::Text { body } => ("sendMessage", json!({ "chat_id": chat, "text": body })),
            Content::Choices { body, choices, .. } => {
                // One button per row: titles stay readable on a phone.
                let keyboard: Vec<Value> = choices
                    .iter()
                    .map(|c| json!([{ "text": c.title, "callback_data": callback_data(&c.id) }]))
                    .collect();
                let mut message = json!({ "chat_id": chat, "text": body });
                if choices.len() <= 3 && choices.iter().all(|c| c.title.chars().count() <= 20) {
                    // Short choices side by side, as a row.
                    let row: Vec<Value> = choices
                        .iter()
                        .map(|c| json!({ "text": c.title, "callback_data": callback_data(&c.id) }))
                        .collect();
                    message["reply_markup"] = json!({ "inline_keyboard": [row] });
                } else {
                    message["reply_markup"] = json!({ "inline_keyboard": keyboard });
                }
                ("sendMessage", message)
            }
            Content::Media {
                kind,
                caption,
                media,
                ..
            } => {
                let (method, field) = match kind {
                    MediaKind::Image => ("sendPhoto", "photo"),
                    MediaKind::Audio => ("sendAudio", "audio"),
                    MediaKind::Video => ("sendVideo", "video"),
                    MediaKind::Sticker => ("sendSticker", "sticker"),
                    MediaKind::Document => ("sendDocument", "document"),
                };
                let mut body = json!({ "chat_id": chat, field: media.0 });
                if let Some(caption) = caption {
                    body["caption"] = json!(caption.chars().take(1024).collect::<String>());
                }
                (method, body)
            }
            Content::Location {
                latitude,
                longitude,
                ..
            } => (
                "sendLocation",
                json!({ "chat_id": chat, "latitude": latitude, "longitude": longitude }),
            ),
            Content::Reaction { target, emoji } => {
                let message_id = target
                    .rsplit(':')
                    .next()
                    .and_then(|m| m.parse::<i64>().ok())
                    .ok_or_else(|| "a reaction needs a Telegram message id".to_string())?;
                (
                    "setMessageReaction",
                    json!({
                        "chat_id": chat,
                        "message_id": message_id,
                        // No emoji takes our reaction back.
                        "reaction": if emoji.is_empty() {
                            json!([])
                        } else {
                            json!([{ "type": "emoji", "emoji": emoji }])
                        },
                    }),
                )
            }
            Content::Choice(choice) => (
                "sendMessage",
                json!({ "chat_id": chat, "text": choice.title }),
            ),
            Content::Products { body, products } => products_request(chat, body, products),
            Content::PaymentLink { body, url, label } => (
                "sendMessage",
                json!({ "chat_id": chat, "text": body,
                        "reply_markup": { "inline_keyboard": [[{ "text": label, "url": url }]] } }),
            ),
            other => {
                return Err(format!(
                    "cannot send {} content on Telegram",
                    other.kind_name()
                ));
            }
        };
        if let (Some(reply_to), true) = (reply_to, method != "setMessageReaction") {
            body["reply_parameters"] =
                json!({ "message_id": reply_to, "allow_sending_without_reply": true });
        }
        Ok((method, body))
    }
}

/// Products in one message, so that a retry never shows them twice: one product with its
/// picture as a photo with its line and an "Add to cart" button; several as a text listing
/// them, with a cart button for each one that can be bought (one a row).
fn products_request(
    chat: i64,
    body: &str,
    products: &[concierge_domain::Product],
) -> (&'static str, Value) {
    let button = |p: &concierge_domain::Product, title: String| json!([{ "text": title, "callback_data": callback_data(&p.add_choice_id()) }]);
    if let [one] = products
        && let Some(image) = &one.image
    {
        let caption = concierge_domain::clip_text(&format!("{body}\n\n{}", one.line()), 1024);
        let mut message = json!({ "chat_id": chat, "photo": image, "caption": caption });
        if one.available != Some(false) {
            message["reply_markup"] =
                json!({ "inline_keyboard": [button(one, "🛒 Add to cart".to_string())] });
        }
        return ("sendPhoto", message);
    }
    let mut text = body.to_string();
    text.push('\n');
    for (i, p) in products.iter().enumerate() {
        text.push_str(&format!("\n{}. {}", i + 1, p.line()));
    }
    let keyboard: Vec<Value> = products
        .iter()
        .filter(|p| p.available != Some(false))
        .map(|p| {
            button(
                p,
                concierge_domain::clip_text(&format!("🛒 {}", p.line()), 60),
            )
        })
        .collect();
    let mut message = json!({ "chat_id": chat, "text": concierge_domain::clip_text(&text, 4096) });
    if !keyboard.is_empty() {
        message["reply_markup"] = json!({ "inline_keyboard": keyboard });
    }
    ("sendMessage", message)
}

/// Telegram takes 1 to 64 bytes of callback data: a longer choice id is fitted (its start
/// and a digest), so that two long ids stay apart; the button's title says what was picked.
fn callback_data(id: &str) -> String {
    crate::choice_id::fitted(id, 64)
}

#[async_trait]
impl ChannelAdapter for Telegram {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        let token = request
            .header("x-telegram-bot-api-secret-token")
            .ok_or(VerifyError::Missing("X-Telegram-Bot-Api-Secret-Token"))?;
        if same_secret(
            token.as_bytes(),
            self.config.secret_token.expose().as_bytes(),
        ) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn sign(&self, request: &mut WebhookRequest) -> Result<(), super::SignError> {
        let value = http::HeaderValue::from_str(self.config.secret_token.expose())
            .map_err(|_| super::SignError("secret_token is not a header value".to_string()))?;
        request
            .headers
            .insert("x-telegram-bot-api-secret-token", value);
        Ok(())
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        parse::parse(&self.id, &request.body)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let chat: i64 = message
            .contact
            .as_str()
            .parse()
            .map_err(|_| SendError::Rejected {
                code: None,
                reason: "the contact is not a Telegram chat id".to_string(),
            })?;
        let reply_to = message
            .reply_to
            .as_ref()
            .and_then(|r| r.as_str().rsplit(':').next()?.parse::<i32>().ok());
        let (method, body) = Self::request(chat, &message.content, reply_to)
            .map_err(|reason| SendError::Rejected { code: None, reason })?;
        self.pace(message.contact.as_str()).await;
        let sent = match (&message.content, &message.attachment) {
            (Content::Media { .. }, Some(attachment)) => {
                self.upload(chat, &message.content, attachment, reply_to)
                    .await
            }
            _ => self.call(method, &body).await,
        };
        let result = match sent {
            Ok(result) => result,
            Err(SendError::RetryAfter { after, reason }) => {
                // A flood limit holds the whole bot back, not only this reply.
                self.overall.pause(after).await;
                return Err(SendError::RetryAfter { after, reason });
            }
            Err(e) => return Err(e),
        };
        let id = result
            .get("message_id")
            .and_then(Value::as_i64)
            .map(|m| format!("{chat}:{m}"));
        Ok(SendReceipt {
            platform_id: id.and_then(|id| PlatformMessageId::parse(id).ok()),
        })
    }

    async fn fetch_media(&self, media: &MediaRef) -> Result<MediaBytes, MediaError> {
        let file = self
            .call("getFile", &json!({ "file_id": media.0 }))
            .await
            .map_err(|e| match e {
                SendError::Rejected { .. } => MediaError::NotFound,
                other => MediaError::Failed(other.to_string()),
            })?;
        let limit = self.config.media_max_bytes;
        if file
            .get("file_size")
            .and_then(Value::as_u64)
            .is_some_and(|size| size > limit)
        {
            return Err(MediaError::TooLarge { limit });
        }
        let path = file
            .get("file_path")
            .and_then(Value::as_str)
            .ok_or(MediaError::NotFound)?;
        let response = self
            .http
            .get(format!(
                "{}/file/bot{}/{path}",
                self.config.api_base.trim_end_matches('/'),
                self.config.bot_token.expose()
            ))
            .send()
            .await
            .map_err(|e| MediaError::Failed(without_url(&e)))?;
        read_media(response, limit, None).await
    }

    /// A button tap is answered at once, whoever holds the thread, so its spinner stops.
    async fn received(&self, _contact: &ContactId, message: &PlatformMessageId) {
        if let Some(query) = message.as_str().strip_prefix("cbq:") {
            self.answer_callback(query).await;
        }
    }

    /// A tap on a button of an inline message: answered, so the spinner stops.
    async fn unanswered(&self, request: &WebhookRequest) {
        if let Ok(update) = parse::read_update(&request.body)
            && let Some(query) = parse::stray_callback(&update)
        {
            self.answer_callback(query).await;
        }
    }

    /// Typing while the turn runs.
    async fn turn_started(&self, contact: &ContactId, _message: &PlatformMessageId) {
        if let Ok(chat) = contact.as_str().parse::<i64>()
            && let Err(e) = self
                .call(
                    "sendChatAction",
                    &json!({ "chat_id": chat, "action": "typing" }),
                )
                .await
        {
            tracing::debug!(channel = %self.id, error = %e, "cannot send the typing action");
        }
    }
}
