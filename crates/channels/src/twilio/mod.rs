//! WhatsApp through Twilio: the signed form webhook, inbound messages and status callbacks,
//! sends through the Messages resource (text, media by URL, Content API templates), the
//! 24-hour window (63016) and Twilio's rate limits.

mod config;
mod parse;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

pub use self::config::{ContentTemplate, TwilioConfig};
use self::parse::Form;
use super::media_link::MediaLinks;
use super::outbound_http::{read_media, request_error, retry_after, without_url};
use super::signature::verify_sha1_base64;
use super::{
    Attachment, Capabilities, ChannelAdapter, ChannelKind, MediaBytes, MediaError, OutboundMessage,
    ParseError, RateLimiter, ReplyWindow, SendError, SendReceipt, VerifyError, WebhookRequest,
    WindowDecision,
};
use concierge_domain::{
    ChannelId, ContactId, Content, InboundEvent, MediaId, MediaKind, MediaRef, PlatformMessageId,
    now_millis,
};

/// The customer service window, as for every WhatsApp sender.
pub const REPLY_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_BODY: usize = 1600;

pub struct Twilio {
    id: ChannelId,
    config: TwilioConfig,
    http: reqwest::Client,
    capabilities: Capabilities,
    limiter: RateLimiter,
    window: ReplyWindow,
    /// Signs the links Twilio fetches a reply's media from.
    links: Option<MediaLinks>,
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: String,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

enum Failure {
    WindowClosed(String),
    Send(SendError),
}

impl Twilio {
    pub fn new(id: ChannelId, config: TwilioConfig, http: reqwest::Client) -> Self {
        let limiter = RateLimiter::new(config.messages_per_second);
        let links = MediaLinks::origin_of(&config.public_url)
            .map(|origin| MediaLinks::new(config.auth_token.expose().as_bytes(), &origin));
        Self {
            id,
            links,
            config,
            http,
            capabilities: Capabilities {
                // Buttons and lists need pre-approved Content templates on Twilio: choices
                // are sent as numbered text.
                max_buttons: 0,
                max_list_rows: 0,
                media: &[
                    MediaKind::Image,
                    MediaKind::Audio,
                    MediaKind::Video,
                    MediaKind::Document,
                ],
                reply_window: Some(REPLY_WINDOW),
                typing: true,
                read_receipts: true,
                max_text_chars: MAX_BODY,
                templates: true,
                media_captions: true,
            },
            limiter,
            window: ReplyWindow::new(REPLY_WINDOW),
        }
    }

    /// The URL Twilio signed: the configured public URL, with the query string we received.
    fn signed_url(&self, request: &WebhookRequest) -> String {
        match request.raw_query.as_deref().filter(|q| !q.is_empty()) {
            Some(query) if !self.config.public_url.contains('?') => {
                format!("{}?{query}", self.config.public_url)
            }
            _ => self.config.public_url.clone(),
        }
    }

    /// What Twilio signs: the URL, then each form parameter's name and value, sorted.
    fn signed_data(&self, request: &WebhookRequest) -> Result<String, ParseError> {
        let mut params = Form::parse(&request.body)?.0;
        params.sort();
        params.dedup();
        let mut data = self.signed_url(request);
        for (name, value) in &params {
            data.push_str(name);
            data.push_str(value);
        }
        Ok(data)
    }

    fn address(contact: &ContactId) -> String {
        let digits = contact.as_str();
        if digits.starts_with("whatsapp:") {
            digits.to_string()
        } else {
            format!("whatsapp:+{digits}")
        }
    }

    /// The form fields for one piece of content.
    fn fields(&self, content: &Content) -> Result<Vec<(String, String)>, String> {
        let mut fields = Vec::new();
        match content {
            Content::Text { body } => fields.push(("Body".into(), clip(body))),
            Content::Choices { body, choices, .. } => {
                // The options are what the customer answers with: when the whole does not
                // fit, the question is shortened, not the options (the orchestrator already
                // sent a long question's beginning as a message of its own).
                let options: Vec<String> = choices
                    .iter()
                    .enumerate()
                    .map(|(i, choice)| format!("{}. {}", i + 1, choice.title))
                    .collect();
                let options = options.join("\n");
                let room = MAX_BODY.saturating_sub(options.chars().count() + 2);
                let text = if room >= 20 {
                    format!("{}\n\n{options}", concierge_domain::clip_text(body, room))
                } else {
                    format!("{body}\n\n{options}")
                };
                fields.push(("Body".into(), clip(&text)));
            }
            Content::Products { body, products } => {
                // One picture (the first product's) with the numbered list.
                if let Some(image) = products.iter().find_map(|p| p.image.as_ref()) {
                    fields.push(("MediaUrl".into(), image.clone()));
                }
                fields.push((
                    "Body".into(),
                    clip(&crate::numbered_products(body, products)),
                ));
            }
            Content::PaymentLink { body, url, label } => {
                fields.push(("Body".into(), clip(&format!("{body}\n{label}: {url}"))));
            }
            Content::Media { caption, media, .. } => {
                if !(media.0.starts_with("https://") || media.0.starts_with("http://")) {
                    return Err("Twilio sends media by public URL only".to_string());
                }
                fields.push(("MediaUrl".into(), media.0.clone()));
                if let Some(caption) = caption {
                    fields.push(("Body".into(), clip(caption)));
                }
            }
            Content::Template {
                name,
                params,
                names,
                ..
            } => {
                fields.push(("ContentSid".into(), name.clone()));
                if !params.is_empty() {
                    // Numbered ("1", "2", …) unless the template names its variables.
                    let variables: serde_json::Map<String, serde_json::Value> = params
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let key = names.get(i).cloned().unwrap_or_else(|| (i + 1).to_string());
                            (key, serde_json::Value::from(p.clone()))
                        })
                        .collect();
                    fields.push((
                        "ContentVariables".into(),
                        serde_json::Value::Object(variables).to_string(),
                    ));
                }
            }
            Content::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let label = concierge_domain::place_label(name.as_deref(), address.as_deref());
                fields.push((
                    "Body".into(),
                    format!("{label}\nhttps://maps.google.com/?q={latitude},{longitude}")
                        .trim()
                        .to_string(),
                ));
            }
            Content::Choice(choice) => fields.push(("Body".into(), clip(&choice.title))),
            other => {
                return Err(format!(
                    "cannot send {} content through Twilio",
                    other.kind_name()
                ));
            }
        }
        Ok(fields)
    }

    /// Creates a message; its sid, when Twilio's answer could be read.
    async fn create(
        &self,
        contact: &ContactId,
        content: &Content,
    ) -> Result<Option<String>, Failure> {
        let mut fields = self
            .fields(content)
            .map_err(|reason| Failure::Send(SendError::Rejected { code: None, reason }))?;
        fields.push(("From".into(), self.config.from.clone()));
        fields.push(("To".into(), Self::address(contact)));
        fields.push(("StatusCallback".into(), self.config.public_url.clone()));
        self.limiter.acquire().await;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.api_base.trim_end_matches('/'),
            self.config.account_sid
        );
        let response = self
            .http
            .post(url)
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&fields)
            .send()
            .await
            .map_err(|e| Failure::Send(request_error(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            // Accepted, but the answer was cut: sent, without its sid (never send it again).
            Err(_) if status.is_success() => return Ok(None),
            Err(e) => return Err(Failure::Send(request_error(&e))),
        };
        if status.is_success() {
            return Ok(serde_json::from_slice::<Created>(&bytes)
                .ok()
                .map(|c| c.sid));
        }
        let error = serde_json::from_slice::<ApiError>(&bytes).ok();
        let code = error.as_ref().and_then(|e| e.code);
        let message = error
            .and_then(|e| e.message)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let after = retry_after(&headers);
        Err(match code {
            Some(63016) => Failure::WindowClosed(message),
            // Too many requests; channel rate limit exceeded.
            Some(20429) | Some(63018) => Failure::Send(SendError::RetryAfter {
                after: after.unwrap_or(Duration::from_secs(1)),
                reason: message,
            }),
            _ if status.as_u16() == 429 => Failure::Send(SendError::RetryAfter {
                after: after.unwrap_or(Duration::from_secs(1)),
                reason: message,
            }),
            _ if status.is_server_error() => {
                Failure::Send(SendError::Transient { reason: message })
            }
            _ => Failure::Send(SendError::Rejected {
                code: code.map(|c| c.to_string()),
                reason: message,
            }),
        })
    }

    async fn reengage(
        &self,
        message: &OutboundMessage,
        why: &str,
    ) -> Result<SendReceipt, SendError> {
        let Some(template) = &self.config.reengagement_template else {
            return Err(SendError::Rejected {
                code: Some("63016".to_string()),
                reason: format!(
                    "{why}: the 24-hour customer service window is closed and this channel has no reengagement_template"
                ),
            });
        };
        tracing::info!(channel = %self.id, "reply window closed: sending the re-engagement template");
        // Variables in placeholder order ("1", "2", … "10"), as Twilio numbers them.
        let mut variables: Vec<(&String, &String)> = template.variables.iter().collect();
        variables.sort_by_key(|(k, _)| k.parse::<u32>().unwrap_or(u32::MAX));
        let content = Content::template(
            template.content_sid.clone(),
            String::new(),
            variables.into_iter().map(|(_, v)| v.clone()).collect(),
        );
        match self.create(&message.contact, &content).await {
            Ok(sid) => {
                self.window.reengaged(&message.conversation, now_millis());
                Ok(receipt(sid))
            }
            Err(Failure::Send(e)) => Err(e),
            Err(Failure::WindowClosed(reason)) => Err(SendError::Rejected {
                code: Some("63016".to_string()),
                reason: format!("the re-engagement template was refused too: {reason}"),
            }),
        }
    }
}

impl Twilio {
    /// A reply's file as Twilio takes it: a `MediaUrl` Twilio fetches from the gateway, signed
    /// and good for `media_link_secs`.
    fn linked(
        &self,
        caption: Option<String>,
        attachment: &Attachment,
    ) -> Result<Content, SendError> {
        let links = self.links.as_ref().ok_or_else(|| SendError::Rejected {
            code: None,
            reason: "public_url has no origin to serve the file from".to_string(),
        })?;
        let expires = now_millis() / 1000
            + i64::try_from(self.config.media_link_secs).unwrap_or(i64::MAX / 2);
        let url = links.url(&self.id, &attachment.media.id, expires);
        Ok(Content::media(
            MediaKind::for_mime(&attachment.media.mime),
            Some(attachment.media.mime.clone()),
            caption,
            MediaRef(url),
        ))
    }
}

fn clip(text: &str) -> String {
    concierge_domain::clip_text(text, MAX_BODY)
}

fn receipt(sid: Option<String>) -> SendReceipt {
    SendReceipt {
        platform_id: sid.and_then(|sid| PlatformMessageId::parse(sid).ok()),
    }
}

#[async_trait]
impl ChannelAdapter for Twilio {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    /// Twilio sends a template by its Content SID, with the same variables.
    fn template(
        &self,
        spec: &crate::templates::TemplateSpec,
        filled: &crate::templates::Filled,
    ) -> Result<Content, String> {
        let Some(sid) = &spec.twilio_content_sid else {
            return Err(format!(
                "template {} has no twilio_content_sid: Twilio sends templates by their Content SID",
                spec.key()
            ));
        };
        Ok(Content::Template {
            name: sid.clone(),
            language: spec.language.clone(),
            params: filled.values.clone(),
            names: filled.names.clone(),
            text: Some(filled.text.clone()),
            context: None,
        })
    }

    fn media_link_valid(&self, id: &MediaId, expires: i64, signature: &str) -> bool {
        self.links
            .as_ref()
            .is_some_and(|links| links.valid(&self.id, id, expires, signature, now_millis() / 1000))
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::TwilioWhatsapp
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// X-Twilio-Signature: base64 HMAC-SHA1, keyed with the auth token, of the public URL
    /// followed by every form parameter's name and value, sorted by name, then by value, a
    /// repeated name-value pair counting once (as Twilio's own validators do).
    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        let header = request
            .header("x-twilio-signature")
            .ok_or(VerifyError::Missing("X-Twilio-Signature"))?;
        let data = self
            .signed_data(request)
            .map_err(|_| VerifyError::Mismatch)?;
        if verify_sha1_base64(
            self.config.auth_token.expose().as_bytes(),
            data.as_bytes(),
            header,
        ) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn sign(&self, request: &mut WebhookRequest) -> Result<(), super::SignError> {
        let data = self
            .signed_data(request)
            .map_err(|e| super::SignError(e.to_string()))?;
        let signature = super::signature::sign_sha1_base64(
            self.config.auth_token.expose().as_bytes(),
            data.as_bytes(),
        );
        let value =
            http::HeaderValue::from_str(&signature).map_err(|e| super::SignError(e.to_string()))?;
        request.headers.insert("x-twilio-signature", value);
        Ok(())
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        let ours = parse::Ours {
            account_sid: &self.config.account_sid,
            sender: &self.config.from,
        };
        parse::parse(&self.id, &ours, &Form::parse(&request.body)?)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        match self.window.decide(message, now_millis()) {
            WindowDecision::Send => {}
            WindowDecision::Reengage => {
                return self.reengage(message, "not sent as written").await;
            }
            WindowDecision::Refuse(reason) => {
                return Err(SendError::Rejected {
                    code: Some("63016".to_string()),
                    reason,
                });
            }
        }
        let linked = match (&message.content, &message.attachment) {
            (Content::Media { caption, .. }, Some(attachment)) => {
                Some(self.linked(caption.clone(), attachment)?)
            }
            _ => None,
        };
        let content = linked.as_ref().unwrap_or(&message.content);
        match self.create(&message.contact, content).await {
            Ok(sid) => Ok(receipt(sid)),
            Err(Failure::Send(e)) => Err(e),
            Err(Failure::WindowClosed(reason)) => self.reengage(message, &reason).await,
        }
    }

    async fn fetch_media(&self, media: &MediaRef) -> Result<MediaBytes, MediaError> {
        // The account's credentials go only to Twilio's own API, whatever a webhook names.
        let api = format!("{}/", self.config.api_base.trim_end_matches('/'));
        if !media.0.starts_with(&api) {
            return Err(MediaError::Refused(format!(
                "not under the channel's api_base ({api})"
            )));
        }
        let response = self
            .http
            .get(&media.0)
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .send()
            .await
            .map_err(|e| MediaError::Failed(without_url(&e)))?;
        read_media(response, self.config.media_max_bytes, None).await
    }

    /// Twilio's typing indicator, which also marks the message read (public beta).
    async fn turn_started(&self, _contact: &ContactId, message: &PlatformMessageId) {
        let url = format!(
            "{}/v2/Indicators/Typing.json",
            self.config.messaging_api_base.trim_end_matches('/')
        );
        let result = self
            .http
            .post(url)
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&[("channel", "whatsapp"), ("messageId", message.as_str())])
            .send()
            .await;
        if let Err(e) = result {
            tracing::debug!(channel = %self.id, error = %without_url(&e), "cannot send the typing indicator");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn adapter(public_url: &str) -> Twilio {
        let config: TwilioConfig = toml::from_str(&format!(
            "account_sid = \"AC1\"\nauth_token = \"12345\"\nfrom = \"whatsapp:+1\"\npublic_url = \"{public_url}\"\n"
        ))
        .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        Twilio::new(
            ChannelId::parse("twilio").unwrap(),
            config,
            reqwest::Client::new(),
        )
    }

    fn request(raw_query: &str, body: &str, signature: &str) -> WebhookRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-twilio-signature", signature.parse().unwrap());
        WebhookRequest {
            headers,
            query: BTreeMap::new(),
            raw_query: Some(raw_query.to_string()),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    /// Twilio's published validation example, whose URL carries a query string.
    #[test]
    fn a_question_too_long_for_its_options_is_shortened_never_the_options() {
        let twilio = adapter("https://gw.example.com/webhooks/twilio");
        let choices: Vec<concierge_domain::Choice> = (1..=5)
            .map(|i| concierge_domain::Choice::new(format!("c{i}"), format!("Option {i}")))
            .collect();
        let content = Content::Choices {
            body: "Which one? ".repeat(300),
            choices,
            header: None,
            footer: None,
            button: None,
        };
        let fields = twilio.fields(&content).unwrap();
        let body = &fields.iter().find(|(k, _)| k == "Body").unwrap().1;
        assert!(body.chars().count() <= MAX_BODY);
        assert!(body.ends_with("4. Option 4\n5. Option 5"), "{body}");
    }

    #[test]
    fn twilios_documented_vector_verifies_with_the_query_we_received() {
        let adapter = adapter("https://mycompany.com/myapp.php");
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
        let good = request("foo=1&bar=2", body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(adapter.verify(&good), Ok(()));
        let other_query = request("foo=1&bar=3", body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(adapter.verify(&other_query), Err(VerifyError::Mismatch));
    }

    /// Repeated parameters: values of one name are sorted, and repeats count once.
    #[test]
    fn repeated_parameters_are_sorted_by_value() {
        let adapter = adapter("https://mycompany.com/myapp.php");
        let body = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        let good = request("foo=1&bar=2", body, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        assert_eq!(adapter.verify(&good), Ok(()));
    }
}
