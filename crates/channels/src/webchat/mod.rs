//! The web chat channel: a page served by the gateway, whose messages arrive as webhooks on
//! `/webhooks/{id}` like any platform's, and whose replies go out through the outbox to the
//! visitor's live stream. The visitor's browser keeps a random key; the contact id is derived
//! from it, so the id shown to concierges is not the credential.

mod config;
mod hub;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use self::config::WebchatConfig;
pub use self::hub::Hub;
pub use self::wire::ChatEvent;
use super::{
    Capabilities, ChannelAdapter, ChannelKind, OutboundMessage, ParseError, SendError, SendReceipt,
    VerifyError, WebhookRequest,
};
use concierge_domain::{
    ChannelId, Choice, ContactId, Content, EventId, EventKind, InboundEvent, InboundMessage,
    MediaId, MediaKind, MediaRef, PlatformMessageId, now_millis,
};

/// The header carrying the visitor's key on every POST.
pub const KEY_HEADER: &str = concierge_store::credentials::WEBCHAT_KEY_HEADER;

pub struct Webchat {
    id: ChannelId,
    config: WebchatConfig,
    capabilities: Capabilities,
    hub: Arc<Hub>,
}

impl Webchat {
    pub fn new(id: ChannelId, config: WebchatConfig) -> Self {
        Self {
            id,
            config,
            capabilities: Capabilities {
                max_buttons: 10,
                max_list_rows: 10,
                media: &[
                    MediaKind::Image,
                    MediaKind::Audio,
                    MediaKind::Video,
                    MediaKind::Document,
                ],
                reply_window: None,
                typing: false,
                read_receipts: false,
                max_text_chars: 4096,
                templates: false,
                media_captions: true,
            },
            hub: Arc::new(Hub::default()),
        }
    }

    pub fn config(&self) -> &WebchatConfig {
        &self.config
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The contact a visitor key stands for, or `None` for a malformed key.
    pub fn contact_for_key(&self, key: &str) -> Option<ContactId> {
        let valid = (16..=128).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(self.id.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        ContactId::parse(format!("web-{}", hex::encode(&digest[..12]))).ok()
    }
}

#[async_trait]
impl ChannelAdapter for Webchat {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Webchat
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        let key = request
            .header(KEY_HEADER)
            .ok_or(VerifyError::Missing(KEY_HEADER))?;
        self.contact_for_key(key)
            .map(|_| ())
            .ok_or(VerifyError::Mismatch)
    }

    /// A kept request carries the visitor's pseudonym, not their key: the replay posts as a
    /// visitor of its own per pseudonym, so each visitor's messages stay one conversation.
    fn sign(&self, request: &mut WebhookRequest) -> Result<(), super::SignError> {
        if request.header(KEY_HEADER).is_some() {
            return Ok(());
        }
        // Without either the request goes as recorded, and the target refuses it.
        let Some(pseudonym) = request
            .headers
            .remove(concierge_store::credentials::VISITOR_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_string))
        else {
            return Ok(());
        };
        if pseudonym.is_empty() || !pseudonym.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(super::SignError(
                "an unreadable visitor pseudonym".to_string(),
            ));
        }
        let key = format!("replay-{pseudonym}");
        if let Ok(value) = http::HeaderValue::from_str(&key) {
            request.headers.insert(KEY_HEADER, value);
        }
        Ok(())
    }

    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        let contact = request
            .header(KEY_HEADER)
            .and_then(|key| self.contact_for_key(key))
            .ok_or_else(|| ParseError("no valid visitor key".to_string()))?;
        // serde_json's messages quote the offending value: say only what kind of error and
        // where, so no message text reaches the logs.
        let post: wire::Post = serde_json::from_slice(&request.body).map_err(|e| {
            ParseError(format!(
                "not a web chat message ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if post.id.is_empty() || post.id.len() > 128 || post.id.contains(':') {
            return Err(ParseError(
                "the message id must be 1 to 128 characters, without ':'".to_string(),
            ));
        }
        // Ids are chosen by the page, so they are only unique per visitor.
        let scoped = format!("{contact}:{}", post.id);
        let platform_id =
            PlatformMessageId::parse(scoped.clone()).map_err(|e| ParseError(e.to_string()))?;
        let event_id = EventId::parse(scoped).map_err(|e| ParseError(e.to_string()))?;
        let content = match (post.text, post.choice, post.media) {
            (text, None, Some(file)) => {
                let id = MediaId::parse(&file.id).map_err(ParseError)?;
                let mime = file.mime.filter(|m| m.len() <= 100 && m.contains('/'));
                Content::media(
                    mime.as_deref()
                        .map_or(MediaKind::Document, MediaKind::for_mime),
                    mime,
                    text.filter(|t| !t.trim().is_empty()),
                    MediaRef::kept(&id),
                )
            }
            (_, Some(choice), _) => Content::Choice(Choice::new(choice.id, choice.title)),
            (Some(text), None, None) if !text.trim().is_empty() => Content::text(text),
            _ => {
                return Err(ParseError(
                    "a message needs a text, a choice or a file".to_string(),
                ));
            }
        };
        if content
            .plain_text()
            .is_some_and(|t| t.chars().count() > self.capabilities.max_text_chars)
        {
            return Err(ParseError("the text is too long".to_string()));
        }
        Ok(vec![InboundEvent {
            channel: self.id.clone(),
            event_id,
            contact,
            aliases: Vec::new(),
            at: now_millis(),
            kind: EventKind::Message(InboundMessage {
                platform_id,
                content,
                reply_to: None,
                display_name: post
                    .name
                    .as_deref()
                    .and_then(concierge_domain::display_name),
                over_budget: None,
            }),
        }])
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        // The message is already stored; the page replays what it missed from the store when
        // it reconnects, so a visitor who is away loses nothing. The live push is best effort.
        self.hub
            .publish(&message.contact, ChatEvent::from_outbound(message));
        Ok(SendReceipt {
            platform_id: PlatformMessageId::parse(message.message_id.to_string()).ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn chat() -> Webchat {
        Webchat::new(ChannelId::parse("web").unwrap(), WebchatConfig::default())
    }

    fn request(key: Option<&str>, body: &str) -> WebhookRequest {
        let mut headers = http::HeaderMap::new();
        if let Some(key) = key {
            headers.insert(KEY_HEADER, key.parse().unwrap());
        }
        WebhookRequest {
            headers,
            query: BTreeMap::new(),
            raw_query: None,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn the_key_is_required_and_checked() {
        let chat = chat();
        assert_eq!(
            chat.verify(&request(None, "{}")),
            Err(VerifyError::Missing(KEY_HEADER))
        );
        assert_eq!(
            chat.verify(&request(Some("short"), "{}")),
            Err(VerifyError::Mismatch)
        );
        assert!(
            chat.verify(&request(Some("0123456789abcdef0123"), "{}"))
                .is_ok()
        );
    }

    #[test]
    fn the_contact_is_derived_from_the_key_not_equal_to_it() {
        let chat = chat();
        let key = "0123456789abcdef0123";
        let contact = chat.contact_for_key(key).unwrap();
        assert_eq!(chat.contact_for_key(key).unwrap(), contact);
        assert!(!contact.as_str().contains(key));
    }

    #[test]
    fn parses_text_and_choices() {
        let chat = chat();
        let key = Some("0123456789abcdef0123");
        let events = chat
            .parse(&request(key, r#"{"id":"m1","text":"hello","name":"Ana"}"#))
            .unwrap();
        assert_eq!(events.len(), 1);
        let contact = chat.contact_for_key("0123456789abcdef0123").unwrap();
        assert_eq!(events[0].event_id.as_str(), format!("{contact}:m1"));
        let EventKind::Message(m) = &events[0].kind else {
            panic!("not a message")
        };
        assert_eq!(m.content, Content::text("hello"));
        assert_eq!(m.display_name.as_deref(), Some("Ana"));
        let events = chat
            .parse(&request(
                key,
                r#"{"id":"m2","choice":{"id":"yes","title":"Yes"}}"#,
            ))
            .unwrap();
        let EventKind::Message(m) = &events[0].kind else {
            panic!("not a message")
        };
        assert!(matches!(m.content, Content::Choice(_)));
        assert!(
            chat.parse(&request(key, r#"{"id":"m3","text":"  "}"#))
                .is_err()
        );
        assert!(chat.parse(&request(key, "garbage")).is_err());
    }

    #[test]
    fn parse_errors_never_quote_the_message() {
        let chat = chat();
        let key = Some("0123456789abcdef0123");
        let secret = "my card is 4111 1111 1111 1111";
        for body in [
            format!(r#"{{"id":"m1","choice":"{secret}"}}"#),
            format!(r#"{{"id":"m1","text":["{secret}"]}}"#),
            format!(r#"{{"id":"{secret}:x","text":"hi"}}"#),
        ] {
            let error = chat.parse(&request(key, &body)).unwrap_err();
            assert!(!error.to_string().contains("4111"), "{error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let chat = chat();
            let mut request = request(Some("0123456789abcdef0123"), "");
            request.body = bytes::Bytes::from(body);
            let _ = chat.parse(&request);
        }

        #[test]
        fn random_ids_and_texts_never_panic(id in ".{0,200}", text in ".{0,300}") {
            let chat = chat();
            let body = serde_json::json!({ "id": id, "text": text }).to_string();
            let _ = chat.parse(&request(Some("0123456789abcdef0123"), &body));
        }
    }
}
