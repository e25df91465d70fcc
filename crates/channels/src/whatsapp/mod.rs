//! WhatsApp through Meta's Cloud API: the signed webhook and its handshake, every inbound
//! kind, statuses, outbound rendering within the platform's limits, the 24-hour customer
//! service window with its re-engagement template, and the platform's rate limits.

pub mod catalogue_sync;
mod commerce;
mod config;
mod parse;
mod render;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

pub use self::config::{TemplateRef, WhatsappConfig};
use super::outbound_http::{read_media, request_error, retry_after, without_url};
use super::signature::{same_secret, verify_sha256_hex};
use super::{
    Attachment, Capabilities, ChannelAdapter, ChannelKind, HandshakeReply, MediaBytes, MediaError,
    OutboundMessage, ParseError, RateLimiter, ReplyWindow, SendError, SendReceipt, VerifyError,
    WebhookRequest, WindowDecision, callback,
};
use concierge_domain::{
    ChannelId, ContactId, Content, InboundEvent, MediaKind, MediaRef, PlatformMessageId, now_millis,
};

/// The customer service window: free-form replies only this long after the customer wrote.
pub const REPLY_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub struct Whatsapp {
    id: ChannelId,
    config: WhatsappConfig,
    http: reqwest::Client,
    capabilities: Capabilities,
    limiter: RateLimiter,
    window: ReplyWindow,
    /// The Graph media ids of files uploaded lately, by our media id: a reply sent again
    /// (after a kill, or to several customers) is not uploaded again while Meta keeps it.
    uploaded: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

/// How long an uploaded file's Graph id is sent again (Meta keeps uploads 30 days).
const UPLOAD_REUSE: Duration = Duration::from_secs(24 * 3600);

/// What an error answer from the Graph API means for the delivery worker.
enum Failure {
    WindowClosed(String),
    Send(SendError),
}

impl Whatsapp {
    pub fn new(id: ChannelId, config: WhatsappConfig, http: reqwest::Client) -> Self {
        let limiter = RateLimiter::new(config.messages_per_second);
        Self {
            id,
            config,
            http,
            capabilities: Capabilities {
                max_buttons: render::MAX_BUTTONS,
                max_list_rows: render::MAX_LIST_ROWS,
                media: &[
                    MediaKind::Image,
                    MediaKind::Audio,
                    MediaKind::Video,
                    MediaKind::Document,
                    MediaKind::Sticker,
                ],
                reply_window: Some(REPLY_WINDOW),
                typing: true,
                read_receipts: true,
                max_text_chars: render::MAX_TEXT,
                templates: true,
                media_captions: true,
            },
            limiter,
            window: ReplyWindow::new(REPLY_WINDOW),
            uploaded: std::sync::Mutex::default(),
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/{}/messages",
            self.config.api_base.trim_end_matches('/'),
            self.config.phone_number_id
        )
    }

    /// Posts one body to /messages; the platform's message id on success. Messages wait for
    /// the number's throughput; read receipts do not count against it.
    async fn post(
        &self,
        body: &serde_json::Value,
        limited: bool,
    ) -> Result<Option<String>, Failure> {
        if limited {
            self.limiter.acquire().await;
        }
        let request = self
            .http
            .post(self.messages_url())
            .bearer_auth(self.config.access_token.expose())
            .json(body);
        // Accepted, but the answer was cut: sent, without its id (never send it again).
        let Some(bytes) = self.exchange(request).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<wire::SendResponse>(&bytes)
            .ok()
            .and_then(|r| r.messages.into_iter().next())
            .map(|m| m.id))
    }

    /// Sends one request to the Graph API: the answer's bytes on success (`None` when a
    /// successful answer was cut), its error read as the worker's next step otherwise.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<bytes::Bytes>, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Send(request_error(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(_) if status.is_success() => return Ok(None),
            Err(e) => return Err(Failure::Send(request_error(&e))),
        };
        if status.is_success() {
            return Ok(Some(bytes));
        }
        let error = serde_json::from_slice::<wire::ErrorBody>(&bytes).ok();
        let code = error.as_ref().and_then(|e| e.error.code);
        let message = error
            .as_ref()
            .and_then(|e| e.error.message.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(classify(
            status.as_u16(),
            code,
            message,
            retry_after(&headers),
        ))
    }

    /// Uploads a reply's file to the number's media (`POST /{phone-number-id}/media`): the
    /// id a message then sends it by. An upload whose answer was lost is uploaded again (an
    /// unused upload expires on Meta's side; only the message is never sent twice).
    async fn upload(&self, attachment: &Attachment) -> Result<String, Failure> {
        let file = reqwest::multipart::Part::stream(attachment.bytes.clone())
            .file_name(attachment.file_name())
            .mime_str(&attachment.media.mime)
            .map_err(|e| {
                Failure::Send(SendError::Rejected {
                    code: None,
                    reason: format!("the file's type cannot be sent: {e}"),
                })
            })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", attachment.media.mime.clone())
            .part("file", file);
        let request = self
            .http
            .post(format!(
                "{}/{}/media",
                self.config.api_base.trim_end_matches('/'),
                self.config.phone_number_id
            ))
            .bearer_auth(self.config.access_token.expose())
            .multipart(form);
        let cut = || {
            Failure::Send(SendError::Transient {
                reason: "the media upload's answer was cut".to_string(),
            })
        };
        let bytes = self.exchange(request).await?.ok_or_else(cut)?;
        serde_json::from_slice::<wire::UploadResponse>(&bytes)
            .map(|r| r.id)
            .map_err(|_| cut())
    }

    /// The content a reply with an attachment sends: the file uploaded, sent by its id, as
    /// the kind WhatsApp takes for its type (a document with its name otherwise).
    async fn uploaded(
        &self,
        content: &Content,
        attachment: &Attachment,
    ) -> Result<(Content, Option<String>), Failure> {
        let caption = match content {
            Content::Media { caption, .. } => caption.clone(),
            _ => None,
        };
        let kind = whatsapp_kind(&attachment.media.mime);
        let ours = attachment.media.id.to_string();
        let known = self
            .uploaded
            .lock()
            .ok()
            .and_then(|known| known.get(&ours).cloned())
            .filter(|(_, at)| at.elapsed() < UPLOAD_REUSE)
            .map(|(id, _)| id);
        let id = match known {
            Some(id) => id,
            None => {
                let id = self.upload(attachment).await?;
                if let Ok(mut known) = self.uploaded.lock() {
                    known.retain(|_, (_, at)| at.elapsed() < UPLOAD_REUSE);
                    known.insert(ours, (id.clone(), std::time::Instant::now()));
                }
                id
            }
        };
        let name = (kind == MediaKind::Document).then(|| attachment.file_name());
        Ok((
            Content::media(
                kind,
                Some(attachment.media.mime.clone()),
                caption,
                MediaRef(id),
            ),
            name,
        ))
    }

    /// The re-engagement template as content, when one is configured.
    fn reengagement(&self) -> Option<Content> {
        self.config
            .reengagement_template
            .as_ref()
            .map(|t| Content::template(t.name.clone(), t.language.clone(), t.params.clone()))
    }

    async fn send_content(
        &self,
        message: &OutboundMessage,
        content: &Content,
        reply_to: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let (uploaded, file_name) = match (content, &message.attachment) {
            (Content::Media { .. }, Some(attachment)) => {
                let (content, name) = self.uploaded(content, attachment).await?;
                (Some(content), name)
            }
            _ => (None, None),
        };
        let content = uploaded.as_ref().unwrap_or(content);
        let catalog = self.config.catalog_id.as_deref();
        let mut bodies = render::bodies(message.contact.as_str(), content, reply_to, catalog)
            .map_err(|reason| Failure::Send(SendError::Rejected { code: None, reason }))?;
        if let (Some(name), Some(body)) = (file_name, bodies.first_mut()) {
            body["document"]["filename"] = json!(name);
        }
        // Each part names the reply, and the status of the last one vouches for all of it.
        let parts = bodies.len();
        for (i, body) in bodies.iter_mut().enumerate() {
            if let Some(body) = body.as_object_mut() {
                body.insert(
                    "biz_opaque_callback_data".to_string(),
                    callback::encode(message.message_id, i + 1, parts).into(),
                );
            }
        }
        let mut last = None;
        for body in &bodies {
            last = self.post(body, true).await?;
        }
        Ok(last)
    }

    /// The re-engagement template instead of a reply the window no longer allows; a clear
    /// failure when none is configured.
    async fn reengage(
        &self,
        message: &OutboundMessage,
        why: &str,
    ) -> Result<SendReceipt, SendError> {
        let Some(template) = self.reengagement() else {
            return Err(SendError::Rejected {
                code: Some("131047".to_string()),
                reason: format!(
                    "{why}: the 24-hour customer service window is closed and this channel has no reengagement_template"
                ),
            });
        };
        tracing::info!(channel = %self.id, "reply window closed: sending the re-engagement template");
        match self.send_content(message, &template, None).await {
            Ok(id) => {
                self.window.reengaged(&message.conversation, now_millis());
                Ok(receipt(id))
            }
            Err(Failure::Send(e)) => Err(e),
            Err(Failure::WindowClosed(reason)) => Err(SendError::Rejected {
                code: Some("131047".to_string()),
                reason: format!("the re-engagement template was refused too: {reason}"),
            }),
        }
    }
}

fn receipt(id: Option<String>) -> SendReceipt {
    SendReceipt {
        platform_id: id.and_then(|id| PlatformMessageId::parse(id).ok()),
    }
}

/// Whether `url` is where WhatsApp media is downloaded from: the configured API's own host,
/// or an https host of Meta's media CDNs (`lookaside.fbsbx.com`, `*.fbcdn.net`,
/// `*.whatsapp.net`).
fn meta_media_host(url: &str, api_base: &str) -> bool {
    let (Ok(url), Ok(api)) = (reqwest::Url::parse(url), reqwest::Url::parse(api_base)) else {
        return false;
    };
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let same_api = url.scheme() == api.scheme()
        && Some(host.as_str()) == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default();
    let cdn = url.scheme() == "https"
        && (host == "lookaside.fbsbx.com"
            || [".fbsbx.com", ".fbcdn.net", ".whatsapp.net"]
                .iter()
                .any(|suffix| host.ends_with(suffix)));
    same_api || cdn
}

/// The message kind WhatsApp takes a file of type `mime` as (its supported media types);
/// anything else goes as a document.
fn whatsapp_kind(mime: &str) -> MediaKind {
    match mime {
        "image/jpeg" | "image/png" => MediaKind::Image,
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" => MediaKind::Audio,
        "video/mp4" | "video/3gpp" => MediaKind::Video,
        _ => MediaKind::Document,
    }
}

/// Maps an error answer to what the worker should do. Codes from Meta's error reference.
fn classify(status: u16, code: Option<i64>, message: String, after: Option<Duration>) -> Failure {
    let code_text = code.map(|c| c.to_string());
    match code {
        Some(c) if parse::WINDOW_CLOSED_CODES.contains(&c) => Failure::WindowClosed(message),
        // Throughput of the number exceeded.
        Some(130429) => Failure::Send(SendError::RetryAfter {
            after: after.unwrap_or(Duration::from_secs(1)),
            reason: message,
        }),
        // Too many messages to the same customer: about one every 6 seconds is allowed.
        Some(131056) => Failure::Send(SendError::RetryAfter {
            after: after.unwrap_or(Duration::from_secs(6)),
            reason: message,
        }),
        // Application, account or business-account rate limits.
        Some(4) | Some(80007) | Some(130472) => Failure::Send(SendError::RetryAfter {
            after: after.unwrap_or(Duration::from_secs(60)),
            reason: message,
        }),
        // Temporary errors on Meta's side.
        Some(1) | Some(2) | Some(131000) | Some(131016) | Some(133004) => {
            Failure::Send(SendError::Transient { reason: message })
        }
        _ if status == 429 => Failure::Send(SendError::RetryAfter {
            after: after.unwrap_or(Duration::from_secs(1)),
            reason: message,
        }),
        _ if status >= 500 => Failure::Send(SendError::Transient { reason: message }),
        _ if status == 408 => Failure::Send(SendError::Ambiguous { reason: message }),
        _ => Failure::Send(SendError::Rejected {
            code: code_text,
            reason: message,
        }),
    }
}

#[async_trait]
impl ChannelAdapter for Whatsapp {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        let header = request
            .header("x-hub-signature-256")
            .ok_or(VerifyError::Missing("X-Hub-Signature-256"))?;
        if verify_sha256_hex(
            self.config.app_secret.expose().as_bytes(),
            &request.body,
            header,
        ) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn sign(&self, request: &mut WebhookRequest) -> Result<(), super::SignError> {
        let signature = super::signature::sign_sha256_hex(
            self.config.app_secret.expose().as_bytes(),
            &request.body,
        );
        let value =
            http::HeaderValue::from_str(&signature).map_err(|e| super::SignError(e.to_string()))?;
        request.headers.insert("x-hub-signature-256", value);
        Ok(())
    }

    fn handshake(&self, request: &WebhookRequest) -> Result<HandshakeReply, VerifyError> {
        let param = |name: &str| request.query.get(name).map(String::as_str);
        let mode = param("hub.mode").ok_or(VerifyError::Missing("hub.mode"))?;
        let token = param("hub.verify_token").ok_or(VerifyError::Missing("hub.verify_token"))?;
        let challenge = param("hub.challenge").ok_or(VerifyError::Missing("hub.challenge"))?;
        if mode == "subscribe"
            && same_secret(
                token.as_bytes(),
                self.config.verify_token.expose().as_bytes(),
            )
        {
            Ok(HandshakeReply(challenge.to_string()))
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        parse::parse(&self.id, &self.config.phone_number_id, &request.body)
    }

    /// A throughput error (130429), a spam-rate limit (131048) or the account's rate limit
    /// (80007): the number pauses, then sends more slowly for a while.
    fn fault(&self, fault: &concierge_domain::ChannelFault) {
        if fault
            .code
            .as_deref()
            .is_some_and(|code| parse::RATE_LIMIT_CODES.contains(&code))
        {
            let spacing = self.limiter.slow_down(parse::RATE_LIMIT_PAUSE);
            tracing::warn!(channel = %self.id, code = fault.code.as_deref().unwrap_or(""), spacing_ms = spacing.as_millis() as u64, "WhatsApp reports a rate limit: the number's sends slow down");
        }
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        match self.window.decide(message, now_millis()) {
            WindowDecision::Send => {}
            WindowDecision::Reengage => {
                return self.reengage(message, "not sent as written").await;
            }
            WindowDecision::Refuse(reason) => {
                return Err(SendError::Rejected {
                    code: Some("131047".to_string()),
                    reason,
                });
            }
        }
        match self
            .send_content(
                message,
                &message.content,
                message.reply_to.as_ref().map(|r| r.as_str()),
            )
            .await
        {
            Ok(id) => Ok(receipt(id)),
            Err(Failure::Send(e)) => Err(e),
            Err(Failure::WindowClosed(reason)) => self.reengage(message, &reason).await,
        }
    }

    fn confirms_sends(&self) -> bool {
        true
    }

    async fn fetch_media(&self, media: &MediaRef) -> Result<MediaBytes, MediaError> {
        let failed = |e: reqwest::Error| MediaError::Failed(without_url(&e));
        // A webhook's media id goes into the lookup's path: an id, nothing else.
        let an_id = !media.0.is_empty()
            && media.0.len() <= 128
            && media
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !an_id || media.0.starts_with('.') {
            return Err(MediaError::Refused("not a Graph media id".to_string()));
        }
        let lookup = self
            .http
            .get(format!(
                "{}/{}",
                self.config.api_base.trim_end_matches('/'),
                media.0
            ))
            .bearer_auth(self.config.access_token.expose())
            .send()
            .await
            .map_err(failed)?;
        if lookup.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(MediaError::NotFound);
        }
        if !lookup.status().is_success() {
            return Err(MediaError::Failed(format!(
                "HTTP {} looking the media up",
                lookup.status()
            )));
        }
        let info: wire::MediaUrl = lookup
            .json()
            .await
            .map_err(|e| MediaError::Failed(without_url(&e)))?;
        // The access token goes only to Meta: the API's own host or Meta's media CDNs.
        if !meta_media_host(&info.url, &self.config.api_base) {
            return Err(MediaError::Refused(
                "the media's download URL is not on a Meta host".to_string(),
            ));
        }
        let download = self
            .http
            .get(&info.url)
            .bearer_auth(self.config.access_token.expose())
            .send()
            .await
            .map_err(failed)?;
        read_media(download, self.config.media_max_bytes, info.mime_type).await
    }

    async fn turn_started(&self, _contact: &ContactId, message: &PlatformMessageId) {
        let body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message.as_str(),
            "typing_indicator": { "type": "text" },
        });
        if let Err(Failure::Send(e)) = self.post(&body, false).await {
            tracing::debug!(channel = %self.id, error = %e, "cannot mark the message read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::meta_media_host;

    #[test]
    fn the_token_goes_only_to_meta_media_hosts() {
        let api = "https://graph.facebook.com/v23.0";
        for ok in [
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2",
            "https://scontent.xx.fbcdn.net/v/t1.0/photo.jpg",
            "https://mmg.whatsapp.net/d/f/a.enc",
            "https://graph.facebook.com/v23.0/media/1",
        ] {
            assert!(meta_media_host(ok, api), "{ok}");
        }
        for refused in [
            "http://lookaside.fbsbx.com/x",
            "https://lookaside.fbsbx.com.evil.test/x",
            "https://evil.test/?lookaside.fbsbx.com",
            "https://user:pw@lookaside.fbsbx.com/x",
            "https://169.254.169.254/latest/meta-data",
            "http://graph.facebook.com/v23.0/media/1",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!meta_media_host(refused, api), "{refused}");
        }
        // A fake Graph API in tests, or a proxy in front: its own host serves the media.
        assert!(meta_media_host(
            "http://127.0.0.1:4000/download/7",
            "http://127.0.0.1:4000/v23.0"
        ));
        assert!(!meta_media_host(
            "http://127.0.0.1:4001/download/7",
            "http://127.0.0.1:4000/v23.0"
        ));
    }
}
