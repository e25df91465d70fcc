//! The channel adapter trait and what differs between channels (`Capabilities`); one folder
//! per platform implements it. Platform wire formats never leave their folder: adapters hand
//! inward only domain values.
//!
//! Each platform but the web chat (which the gateway serves itself) is a cargo feature, all
//! on by default; a build without one still reads its channel files and refuses them.
// A build without some platform leaves helpers only those platforms use.
#![cfg_attr(
    not(all(
        feature = "whatsapp",
        feature = "twilio",
        feature = "bluebubbles",
        feature = "telegram"
    )),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "bluebubbles")]
pub mod bluebubbles;
/// Left out of this build (cargo feature `bluebubbles`): only its configuration, so a channel
/// file of the kind still reads, and `concierge check` says what is missing.
#[cfg(not(feature = "bluebubbles"))]
pub mod bluebubbles {
    mod config;
    pub use self::config::{BlueBubblesConfig, SendMethod};
}
pub mod callback;
pub mod choice_id;
mod limiter;
pub mod media_link;
pub mod outbound_http;
pub mod signature;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod templates;
/// Left out of this build (cargo feature `telegram`): only its configuration, so a channel
/// file of the kind still reads, and `concierge check` says what is missing.
#[cfg(not(feature = "telegram"))]
pub mod telegram {
    mod config;
    pub use self::config::{TelegramConfig, TelegramMode};
}
#[cfg(feature = "twilio")]
pub mod twilio;
/// Left out of this build (cargo feature `twilio`): only its configuration, so a channel
/// file of the kind still reads, and `concierge check` says what is missing.
#[cfg(not(feature = "twilio"))]
pub mod twilio {
    mod config;
    pub use self::config::{ContentTemplate, TwilioConfig};
}
pub mod webchat;
#[cfg(feature = "whatsapp")]
pub mod whatsapp;
/// Left out of this build (cargo feature `whatsapp`): only its configuration, so a channel
/// file of the kind still reads, and `concierge check` says what is missing.
#[cfg(not(feature = "whatsapp"))]
pub mod whatsapp {
    mod config;
    pub use self::config::{TemplateRef, WhatsappConfig};
}
mod window;

pub use self::limiter::RateLimiter;
pub use self::window::{ReplyWindow, WindowDecision};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;

use concierge_domain::{
    Author, ChannelId, ContactId, Content, ConversationId, InboundEvent, MediaKind, MediaRef,
    MessageId, PlatformMessageId,
};

/// The closed set of channel kinds, chosen by `kind = "..."` in `channels/<id>.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Webchat,
    Whatsapp,
    TwilioWhatsapp,
    Bluebubbles,
    Telegram,
}

impl ChannelKind {
    pub const ALL: &'static [ChannelKind] = &[
        ChannelKind::Webchat,
        ChannelKind::Whatsapp,
        ChannelKind::TwilioWhatsapp,
        ChannelKind::Bluebubbles,
        ChannelKind::Telegram,
    ];

    /// The customer's phone number in E.164, when this kind of channel identifies customers
    /// by it (the platform vouches for it: the customer cannot type another one).
    pub fn verified_phone(self, contact: &ContactId, aliases: &[ContactId]) -> Option<String> {
        let e164 = |digits: &str| {
            let ok = (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| format!("+{digits}"))
        };
        let ids = std::iter::once(contact)
            .chain(aliases.iter())
            .map(ContactId::as_str);
        match self {
            ChannelKind::Whatsapp => ids.into_iter().find_map(e164),
            ChannelKind::TwilioWhatsapp => ids.into_iter().find_map(|id| {
                let id = id.strip_prefix("whatsapp:").unwrap_or(id);
                e164(id.strip_prefix('+').unwrap_or(id))
            }),
            ChannelKind::Bluebubbles => ids.into_iter().find_map(|id| {
                let handle = id.rsplit(';').next().unwrap_or(id);
                handle.strip_prefix('+').and_then(e164)
            }),
            ChannelKind::Telegram | ChannelKind::Webchat => None,
        }
    }

    /// The contact a phone number (E.164, `+33612345678`) is on this kind of channel, when
    /// customers are addressed by their number: a message can then be sent to a customer who
    /// never wrote.
    pub fn contact_for_phone(self, e164: &str) -> Option<ContactId> {
        let digits = e164.strip_prefix('+')?;
        let valid = (6..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return None;
        }
        let id = match self {
            ChannelKind::Whatsapp | ChannelKind::TwilioWhatsapp => digits.to_string(),
            ChannelKind::Bluebubbles => format!("iMessage;-;{e164}"),
            ChannelKind::Telegram | ChannelKind::Webchat => return None,
        };
        ContactId::parse(id).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Webchat => "webchat",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::TwilioWhatsapp => "twilio_whatsapp",
            ChannelKind::Bluebubbles => "bluebubbles",
            ChannelKind::Telegram => "telegram",
        }
    }

    /// The cargo feature that builds the platform in (`None`: always built in).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            ChannelKind::Webchat => None,
            ChannelKind::Whatsapp => Some("whatsapp"),
            ChannelKind::TwilioWhatsapp => Some("twilio"),
            ChannelKind::Bluebubbles => Some("bluebubbles"),
            ChannelKind::Telegram => Some("telegram"),
        }
    }

    /// Whether this build has the platform.
    pub fn built_in(self) -> bool {
        match self {
            ChannelKind::Webchat => true,
            ChannelKind::Whatsapp => cfg!(feature = "whatsapp"),
            ChannelKind::TwilioWhatsapp => cfg!(feature = "twilio"),
            ChannelKind::Bluebubbles => cfg!(feature = "bluebubbles"),
            ChannelKind::Telegram => cfg!(feature = "telegram"),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// A channel file's `new_conversations_per_minute` when it says none.
fn default_new_conversations_per_minute() -> u32 {
    120
}

/// A channel file, deserialised: the factory of its adapter.
#[derive(Debug, Clone)]
pub enum ChannelConfig {
    Webchat(webchat::WebchatConfig),
    Whatsapp(whatsapp::WhatsappConfig),
    TwilioWhatsapp(twilio::TwilioConfig),
    Bluebubbles(bluebubbles::BlueBubblesConfig),
    Telegram(telegram::TelegramConfig),
}

impl ChannelConfig {
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelConfig::Webchat(_) => ChannelKind::Webchat,
            ChannelConfig::Whatsapp(_) => ChannelKind::Whatsapp,
            ChannelConfig::TwilioWhatsapp(_) => ChannelKind::TwilioWhatsapp,
            ChannelConfig::Bluebubbles(_) => ChannelKind::Bluebubbles,
            ChannelConfig::Telegram(_) => ChannelKind::Telegram,
        }
    }
}

impl ChannelConfig {
    /// The channel's `new_conversations_per_minute` (0: no limit).
    pub fn new_conversations_per_minute(&self) -> u32 {
        match self {
            ChannelConfig::Webchat(c) => c.new_conversations_per_minute,
            ChannelConfig::Whatsapp(c) => c.new_conversations_per_minute,
            ChannelConfig::TwilioWhatsapp(c) => c.new_conversations_per_minute,
            ChannelConfig::Bluebubbles(c) => c.new_conversations_per_minute,
            ChannelConfig::Telegram(c) => c.new_conversations_per_minute,
        }
    }

    /// Values that parse but cannot work, as (key, why) pairs: an empty secret would let
    /// anyone sign a webhook, a zero rate would never send.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let kind = self.kind();
        if !kind.built_in() {
            problems.push((
                "kind",
                format!(
                    "`{}` is not built into this gateway: build it with the cargo feature `{}`",
                    kind.name(),
                    kind.feature().unwrap_or_default()
                ),
            ));
        }
        let mut required = |key: &'static str, value: &str| {
            if value.trim().is_empty() {
                problems.push((key, "must not be empty".to_string()));
            }
        };
        let mut rate = None;
        let mut urls = Vec::new();
        match self {
            ChannelConfig::Webchat(c) => problems.extend(c.problems()),
            ChannelConfig::Whatsapp(c) => {
                required("phone_number_id", &c.phone_number_id);
                required("access_token", c.access_token.expose());
                required("app_secret", c.app_secret.expose());
                required("verify_token", c.verify_token.expose());
                rate = Some(c.messages_per_second);
                urls.push(("api_base", c.api_base.clone()));
                if c.catalog_id.as_ref().is_some_and(|id| {
                    id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit())
                }) {
                    problems.push((
                        "catalog_id",
                        "is the numeric id of the Meta catalogue connected to this number"
                            .to_string(),
                    ));
                }
            }
            ChannelConfig::TwilioWhatsapp(c) => {
                required("account_sid", &c.account_sid);
                required("auth_token", c.auth_token.expose());
                required("from", &c.from);
                rate = Some(c.messages_per_second);
                urls.push(("api_base", c.api_base.clone()));
                urls.push(("public_url", c.public_url.clone()));
                if !c.from.starts_with("whatsapp:+") {
                    problems.push(("from", "must look like whatsapp:+15550100000".to_string()));
                }
            }
            ChannelConfig::Bluebubbles(c) => {
                required("password", c.password.expose());
                required("webhook_secret", c.webhook_secret.expose());
                // It travels in a URL: characters a URL would change are refused.
                if !c
                    .webhook_secret
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
                {
                    problems.push((
                        "webhook_secret",
                        "may hold only letters, digits and - _ . ~ (it travels in a URL)"
                            .to_string(),
                    ));
                }
                urls.push(("server_url", c.server_url.clone()));
            }
            ChannelConfig::Telegram(c) => {
                required("bot_token", c.bot_token.expose());
                urls.push(("api_base", c.api_base.clone()));
                // Telegram accepts 1 to 256 of A-Z, a-z, 0-9, _ and -.
                let token = c.secret_token.expose();
                let valid = (1..=256).contains(&token.len())
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    problems.push((
                        "secret_token",
                        "must be 1 to 256 letters, digits, _ or -".to_string(),
                    ));
                }
                rate = Some(c.messages_per_second);
            }
        }
        if let Some(rate) = rate
            && !(rate.is_finite() && (0.01..=100_000.0).contains(&rate))
        {
            problems.push((
                "messages_per_second",
                format!("{rate} is not between 0.01 and 100000"),
            ));
        }
        for (key, url) in urls {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push((key, format!("`{url}` is not an http(s) URL")));
            }
        }
        problems
    }
}

/// What a channel can show and do; the orchestrator adapts its replies to it and never asks
/// which platform it is talking to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Quick-reply buttons per message (0 when none).
    pub max_buttons: usize,
    /// Rows in a list picker (0 when none).
    pub max_list_rows: usize,
    /// The media kinds the channel can send.
    pub media: &'static [MediaKind],
    /// How long after the customer's last message a free-form reply is allowed.
    pub reply_window: Option<Duration>,
    pub typing: bool,
    pub read_receipts: bool,
    /// The longest text one message may carry, in characters.
    pub max_text_chars: usize,
    /// Platform-approved templates can be sent.
    pub templates: bool,
    /// A media message can carry a caption; where it cannot, the caption goes as a text of
    /// its own (its own outbox entry, so neither part is ever sent twice).
    pub media_captions: bool,
}

/// Products as text for a chat app without buttons (Twilio, iMessage): the line above, then
/// one numbered line each, which the customer can answer with its number.
pub(crate) fn numbered_products(body: &str, products: &[concierge_domain::Product]) -> String {
    let mut lines = vec![body.to_string(), String::new()];
    for (i, product) in products.iter().enumerate() {
        lines.push(format!("{}. {}", i + 1, product.line()));
    }
    lines.join("\n")
}

/// The events of one delivery status report: the status, and when the platform says the
/// reply window had closed, the signal to re-engage. `status_name` (the platform's word for
/// the status) makes each report's event id unique.
#[allow(clippy::too_many_arguments)]
pub(crate) fn status_report(
    channel: &ChannelId,
    contact: ContactId,
    aliases: Vec<ContactId>,
    target: PlatformMessageId,
    status_name: &str,
    status: concierge_domain::DeliveryStatus,
    at: i64,
    window_closed: bool,
) -> Vec<InboundEvent> {
    use concierge_domain::{EventId, EventKind};
    let mut events = Vec::with_capacity(2);
    if let Ok(event_id) = EventId::parse(format!("{target}:{status_name}")) {
        events.push(InboundEvent {
            channel: channel.clone(),
            event_id,
            contact: contact.clone(),
            aliases: aliases.clone(),
            at,
            kind: EventKind::Status {
                target: target.clone(),
                status,
                ours: None,
            },
        });
    }
    if window_closed && let Ok(event_id) = EventId::parse(format!("{target}:window")) {
        events.push(InboundEvent {
            channel: channel.clone(),
            event_id,
            contact,
            aliases,
            at,
            kind: EventKind::WindowClosed { target },
        });
    }
    events
}

/// A webhook request as adapters see it: no web framework type crosses into `channels/`.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub headers: HeaderMap,
    pub query: BTreeMap<String, String>,
    /// The query string as received, for signatures computed over the full URL.
    pub raw_query: Option<String>,
    pub body: Bytes,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The answer to a GET handshake (a platform checking that the URL is ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing credentials: {0}")]
    Missing(&'static str),
    #[error("credentials do not match")]
    Mismatch,
    #[error("this channel does not answer GET requests")]
    NoHandshake,
}

/// Why a recorded webhook cannot be signed for a channel (a Twilio body that is not a form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the webhook: {0}")]
pub struct SignError(pub String);

/// A payload that passed verification but could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse the payload: {0}")]
pub struct ParseError(pub String);

/// Why a send failed, said so the delivery worker knows what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked us to slow down: do not try before `after`.
    #[error("rate limited, retry after {after:?}: {reason}")]
    RetryAfter { after: Duration, reason: String },
    /// The request did not reach the platform, or the platform failed it (a refused
    /// connection, a 5xx): worth retrying with backoff.
    #[error("transient: {reason}")]
    Transient { reason: String },
    /// The request may have reached the platform, but its answer was lost (a timeout, a
    /// connection closed after sending): retry with backoff, idempotently where possible.
    #[error("no answer: {reason}")]
    Ambiguous { reason: String },
    /// The platform refused the message for good (bad recipient, window closed, …).
    #[error("rejected ({code:?}): {reason}")]
    Rejected {
        code: Option<String>,
        reason: String,
    },
}

/// One reply to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub message_id: MessageId,
    /// The store's order of this message in its conversation.
    pub seq: i64,
    /// Repeated on every attempt of the same reply, for platforms that dedupe on it.
    pub idempotency_key: String,
    pub conversation: ConversationId,
    pub contact: ContactId,
    pub author: Author,
    pub content: Content,
    pub reply_to: Option<PlatformMessageId>,
    pub created_at: i64,
    /// An earlier attempt may have reached the platform.
    pub maybe_sent: bool,
    /// When the customer last wrote in this conversation, for channels with a reply window.
    pub customer_last_message_at: Option<i64>,
    /// The platform refused this reply for a closed reply window: send the channel's
    /// re-engagement template instead.
    pub reengage: bool,
    /// The bytes of the media this reply sends, read from the media store (a concierge's
    /// upload): the adapter uploads them, or links to them, as its platform wants.
    pub attachment: Option<Attachment>,
}

/// A file a reply sends: what it is, and its bytes.
#[derive(Clone, PartialEq)]
pub struct Attachment {
    pub media: concierge_domain::StoredMedia,
    pub bytes: bytes::Bytes,
}

impl Attachment {
    /// The file's name for the platform: the sender's, else one made from its id and type.
    pub fn file_name(&self) -> String {
        if let Some(name) = self.media.name.as_deref().filter(|n| !n.is_empty()) {
            return name.to_string();
        }
        let extension = match self.media.mime.as_str() {
            "image/jpeg" => "jpg",
            "image/png" => "png",
            "image/webp" => "webp",
            "image/gif" => "gif",
            "audio/ogg" => "ogg",
            "audio/mpeg" => "mp3",
            "audio/mp4" | "audio/x-m4a" => "m4a",
            "video/mp4" => "mp4",
            "application/pdf" => "pdf",
            _ => "bin",
        };
        format!("{}.{extension}", &self.media.id.as_str()[..12])
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("media", &self.media.id)
            .field("mime", &self.media.mime)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl OutboundMessage {
    /// Whether the customer wrote within `window` (false when they never wrote).
    pub fn within_window(&self, window: Duration, now: i64) -> bool {
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.customer_last_message_at
            .is_some_and(|at| now.saturating_sub(at) < window)
    }
}

/// Media bytes fetched from a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaBytes {
    pub mime: Option<String>,
    pub bytes: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("this channel does not fetch media")]
    Unsupported,
    #[error("the media is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the platform has no such media (expired or unknown)")]
    NotFound,
    /// The reference names a place the gateway does not fetch from (not the platform's).
    #[error("the media is not fetched from there: {0}")]
    Refused(String),
    #[error("cannot fetch the media: {0}")]
    Failed(String),
}

/// What the platform said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    pub platform_id: Option<PlatformMessageId>,
}

#[async_trait]
pub trait ChannelAdapter: Send + Sync {
    fn id(&self) -> &ChannelId;
    fn kind(&self) -> ChannelKind;
    fn capabilities(&self) -> &Capabilities;

    /// Checks that a request comes from the platform, before anything parses it.
    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError>;

    /// Signs a recorded request as the platform would for this channel's secrets, so
    /// `verify` accepts it (`concierge replay`). A channel whose `verify` checks a secret
    /// must implement it; the default sends the request as recorded.
    fn sign(&self, _request: &mut WebhookRequest) -> Result<(), SignError> {
        Ok(())
    }

    /// Answers a GET handshake; channels without one refuse.
    fn handshake(&self, _request: &WebhookRequest) -> Result<HandshakeReply, VerifyError> {
        Err(VerifyError::NoHandshake)
    }

    /// Turns a verified payload into events (possibly none: a payload of nothing but
    /// unknown kinds is not an error).
    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError>;

    /// Delivers one reply.
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError>;

    /// The contact a phone number (E.164) is on this channel, when it addresses customers by
    /// their number (see [`ChannelKind::contact_for_phone`]).
    fn contact_for_phone(&self, e164: &str) -> Option<ContactId> {
        self.kind().contact_for_phone(e164)
    }

    /// A catalogue template, filled, as this channel sends it: by its name and language
    /// (WhatsApp), by the id its platform gave it (Twilio's Content SID), or as its text on
    /// a channel without templates. `Err` says why this channel cannot send it.
    fn template(
        &self,
        spec: &templates::TemplateSpec,
        filled: &templates::Filled,
    ) -> Result<Content, String> {
        Ok(Content::Template {
            name: spec.name.clone(),
            language: spec.language.clone(),
            params: filled.values.clone(),
            names: filled.names.clone(),
            text: Some(filled.text.clone()),
            context: None,
        })
    }

    /// Whether this platform's status reports name the reply they are about (see
    /// [`callback`]): a send whose answer was lost is then given time to be confirmed by
    /// its status before it is sent again.
    fn confirms_sends(&self) -> bool {
        false
    }

    /// Fetches the bytes behind a media reference this adapter produced.
    /// Whether a signed link to media `id` of this channel (see [`media_link`]) is valid now:
    /// only channels whose platform fetches a reply's media by URL mint them.
    fn media_link_valid(
        &self,
        _id: &concierge_domain::MediaId,
        _expires: i64,
        _signature: &str,
    ) -> bool {
        false
    }

    async fn fetch_media(&self, _media: &MediaRef) -> Result<MediaBytes, MediaError> {
        Err(MediaError::Unsupported)
    }

    /// A turn starts on a customer's message: show it read and the bot typing, where the
    /// platform can. Best effort: a failure is logged, never retried.
    async fn turn_started(&self, _contact: &ContactId, _message: &PlatformMessageId) {}

    /// A customer's message is being handled, whoever holds the thread: acknowledge what the
    /// platform needs acknowledged (a Telegram button tap's spinner). Best effort.
    async fn received(&self, _contact: &ContactId, _message: &PlatformMessageId) {}

    /// A verified webhook brought nothing to store: answer what the platform still waits
    /// for (a tap on a Telegram button of a message the gateway did not send, whose spinner
    /// would turn until it times out). Best effort.
    async fn unanswered(&self, _request: &WebhookRequest) {}

    /// The platform reported a fault of the channel (see `EventKind::ChannelError`): a
    /// rate limit slows the channel's sends. Called once the fault is stored.
    fn fault(&self, _fault: &concierge_domain::ChannelFault) {}
}

/// The channel instances of a deployment, by id.
#[derive(Clone, Default)]
pub struct Registry {
    adapters: BTreeMap<ChannelId, Arc<dyn ChannelAdapter>>,
    webchats: BTreeMap<ChannelId, Arc<webchat::Webchat>>,
    #[cfg(feature = "telegram")]
    telegrams: BTreeMap<ChannelId, Arc<telegram::Telegram>>,
}

impl Registry {
    /// Builds every adapter from its file; `http` is the one client they all share.
    pub fn build(channels: &[(ChannelId, ChannelConfig)], http: &reqwest::Client) -> Self {
        let _ = http; // only the platforms left out of a build leave it unused
        let mut registry = Registry::default();
        for (id, config) in channels {
            match config {
                ChannelConfig::Webchat(config) => {
                    let adapter = Arc::new(webchat::Webchat::new(id.clone(), config.clone()));
                    registry.webchats.insert(id.clone(), adapter.clone());
                    registry.adapters.insert(id.clone(), adapter);
                }
                #[cfg(feature = "whatsapp")]
                ChannelConfig::Whatsapp(config) => {
                    let adapter = whatsapp::Whatsapp::new(id.clone(), config.clone(), http.clone());
                    registry.adapters.insert(id.clone(), Arc::new(adapter));
                }
                #[cfg(feature = "twilio")]
                ChannelConfig::TwilioWhatsapp(config) => {
                    let adapter = twilio::Twilio::new(id.clone(), config.clone(), http.clone());
                    registry.adapters.insert(id.clone(), Arc::new(adapter));
                }
                #[cfg(feature = "telegram")]
                ChannelConfig::Telegram(config) => {
                    let adapter = Arc::new(telegram::Telegram::new(
                        id.clone(),
                        config.clone(),
                        http.clone(),
                    ));
                    registry.telegrams.insert(id.clone(), adapter.clone());
                    registry.adapters.insert(id.clone(), adapter);
                }
                #[cfg(feature = "bluebubbles")]
                ChannelConfig::Bluebubbles(config) => {
                    let adapter =
                        bluebubbles::BlueBubbles::new(id.clone(), config.clone(), http.clone());
                    registry.adapters.insert(id.clone(), Arc::new(adapter));
                }
                // `concierge check` refuses a channel whose platform is left out (see
                // `ChannelConfig::problems`): nothing to build.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        registry
    }

    /// Adds an adapter built elsewhere (an embedding application's own channel, a test's
    /// fake platform). It replaces a channel of the same id.
    pub fn insert(&mut self, adapter: Arc<dyn ChannelAdapter>) {
        self.adapters.insert(adapter.id().clone(), adapter);
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn ChannelAdapter>> {
        let id = ChannelId::parse(id).ok()?;
        self.adapters.get(&id)
    }

    pub fn adapter(&self, id: &ChannelId) -> Option<&Arc<dyn ChannelAdapter>> {
        self.adapters.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &ChannelId> {
        self.adapters.keys()
    }

    /// The web chat instances, whose page and live stream the HTTP layer serves.
    pub fn webchat(&self, id: &ChannelId) -> Option<&Arc<webchat::Webchat>> {
        self.webchats.get(id)
    }

    /// Every web chat instance.
    pub fn webchats(&self) -> impl Iterator<Item = &Arc<webchat::Webchat>> {
        self.webchats.values()
    }

    /// The Telegram channels that poll instead of receiving webhooks.
    #[cfg(feature = "telegram")]
    pub fn telegram_pollers(&self) -> Vec<Arc<telegram::Telegram>> {
        self.telegrams
            .values()
            .filter(|t| t.config().mode == telegram::TelegramMode::Polling)
            .cloned()
            .collect()
    }

    #[cfg(feature = "telegram")]
    pub fn telegram(&self, id: &ChannelId) -> Option<&Arc<telegram::Telegram>> {
        self.telegrams.get(id)
    }

    pub fn first_webchat(&self) -> Option<&Arc<webchat::Webchat>> {
        self.webchats.values().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel file of a platform this build leaves out still reads, and is refused by its
    /// `kind`, naming the feature (`cargo test -p concierge-channels --no-default-features`
    /// runs the other side of it).
    #[test]
    fn a_platform_left_out_is_refused_by_its_kind() {
        let telegram: telegram::TelegramConfig =
            toml::from_str("bot_token = \"t\"\nsecret_token = \"s\"\n").unwrap();
        let problems = ChannelConfig::Telegram(telegram).problems();
        let refused = problems.iter().find(|(key, _)| *key == "kind");
        assert_eq!(
            refused.is_some(),
            !cfg!(feature = "telegram"),
            "{problems:?}"
        );
        if let Some((_, why)) = refused {
            assert!(why.contains("cargo feature `telegram`"), "{why}");
        }
        assert!(ChannelKind::Webchat.built_in());
    }
}
