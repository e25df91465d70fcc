//! Notifications: the merchant's systems write first. A request names a channel, a customer
//! (a phone number or a known contact), a catalogue template with its parameters or a text,
//! and what the agents should know; it is checked here (nothing is sent when anything is
//! wrong) and queued by the store with the consent check in the same write.

mod batch;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use self::batch::{
    BatchBody, BatchRecipient, BatchWorker, NotificationsConfig, Params, TemplateBody, To, check,
};

use concierge_channels::Registry;
use concierge_channels::templates::{Catalogue, TemplateSpec};
use concierge_domain::{ChannelId, ContactId, Content, Millis, now_millis};
use concierge_store::{
    Conversations, NewNotification, Notification, Notifications, Notified, Purpose, Refusal,
    StoreError,
};
use concierge_telemetry::Metrics;

/// The largest `context` kept with a notification, as JSON.
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;
/// The longest idempotency key.
pub const MAX_KEY_CHARS: usize = 200;

/// Who a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A phone number in E.164 (`+33612345678`), on channels that address customers by it.
    Phone(String),
    /// A contact the channel knows (a Telegram chat, a web chat visitor who wrote before).
    Contact(String),
}

/// A template to send, by name and language, with its parameters by name (or by number,
/// `"1"`, `"2"`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateUse {
    pub name: String,
    pub language: String,
    pub params: BTreeMap<String, String>,
}

/// What a calling system asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRequest {
    pub service: String,
    /// The caller's `Idempotency-Key`: the same key again sends nothing more.
    pub key: Option<String>,
    pub channel: String,
    pub to: Recipient,
    pub template: Option<TemplateUse>,
    pub text: Option<String>,
    /// For a text: what it is for (`utility` unless said); a template's category says it.
    pub purpose: Option<Purpose>,
    pub context: Option<serde_json::Value>,
}

/// Why a notification was not queued; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no channel `{0}`")]
    UnknownChannel(String),
    /// Anything wrong in the request itself: the message says what.
    #[error("{0}")]
    Invalid(String),
    #[error("no template {name} in {language}{}", languages_hint(.languages))]
    UnknownTemplate {
        name: String,
        language: String,
        languages: Vec<String>,
    },
    #[error("the customer opted out")]
    OptedOut,
    #[error("the customer has not agreed to marketing messages")]
    NoConsent,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn languages_hint(languages: &[String]) -> String {
    if languages.is_empty() {
        String::new()
    } else {
        format!(" (it is in: {})", languages.join(", "))
    }
}

impl NotifyError {
    /// The stable word the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            NotifyError::UnknownChannel(_) => "unknown_channel",
            NotifyError::Invalid(_) => "invalid",
            NotifyError::UnknownTemplate { .. } => "unknown_template",
            NotifyError::OptedOut => "opted_out",
            NotifyError::NoConsent => "no_consent",
            NotifyError::Store(_) => "store_unavailable",
        }
    }
}

/// A notification queued (or queued before with the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub notification: Notification,
    pub replayed: bool,
}

/// Checks notifications and hands them to the store.
#[derive(Clone)]
pub struct Notifier {
    notifications: Arc<dyn Notifications>,
    conversations: Arc<dyn Conversations>,
    channels: Registry,
    catalogue: Arc<Catalogue>,
    metrics: Metrics,
}

/// A checked request, ready for the store.
struct Prepared {
    channel: ChannelId,
    contact: ContactId,
    purpose: Purpose,
    template: Option<String>,
    content: Content,
}

impl Notifier {
    pub fn new(
        notifications: Arc<dyn Notifications>,
        conversations: Arc<dyn Conversations>,
        channels: Registry,
        catalogue: Arc<Catalogue>,
        metrics: Metrics,
    ) -> Self {
        Self {
            notifications,
            conversations,
            channels,
            catalogue,
            metrics,
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Checks the request and queues its message; nothing is sent when it is refused. For
    /// one recipient of a batch, `batch` is the batch and the recipient's place in it.
    pub async fn notify(
        &self,
        request: NotifyRequest,
        batch: Option<(String, u32)>,
    ) -> Result<Queued, NotifyError> {
        let result = self.queue(request, batch).await;
        let outcome = match &result {
            Ok(q) if q.replayed => "replayed",
            Ok(_) => "queued",
            Err(e) => e.code(),
        };
        self.metrics.notification(outcome);
        result
    }

    async fn queue(
        &self,
        request: NotifyRequest,
        batch: Option<(String, u32)>,
    ) -> Result<Queued, NotifyError> {
        let prepared = self.prepare(&request).await?;
        let key = match &request.key {
            Some(key) => {
                if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
                    return Err(NotifyError::Invalid(format!(
                        "the Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters"
                    )));
                }
                scoped_key(&request.service, Some(key))
            }
            None => scoped_key(&request.service, None),
        };
        let conversation = self
            .conversations
            .conversation_of(&prepared.channel, &prepared.contact)
            .await?;
        let notification = NewNotification {
            id: uuid::Uuid::now_v7().simple().to_string(),
            key,
            service: request.service.clone(),
            channel: prepared.channel,
            contact: prepared.contact,
            conversation,
            purpose: prepared.purpose,
            template: prepared.template,
            content: prepared.content,
            batch,
            at: now_millis(),
        };
        match self.notifications.notify(&notification).await? {
            Notified::Queued {
                notification,
                replayed,
            } => Ok(Queued {
                notification,
                replayed,
            }),
            Notified::Refused(Refusal::OptedOut) => Err(NotifyError::OptedOut),
            Notified::Refused(Refusal::NoConsent) => Err(NotifyError::NoConsent),
        }
    }

    /// Everything about a request that can be checked before the store: the channel, the
    /// recipient, the template and its parameters, the text, the context.
    async fn prepare(&self, request: &NotifyRequest) -> Result<Prepared, NotifyError> {
        let unknown = || NotifyError::UnknownChannel(request.channel.clone());
        let channel = ChannelId::parse(request.channel.as_str()).map_err(|_| unknown())?;
        let adapter = self.channels.adapter(&channel).ok_or_else(unknown)?;
        let contact = match &request.to {
            Recipient::Phone(phone) => adapter.contact_for_phone(phone).ok_or_else(|| {
                if is_e164(phone) {
                    NotifyError::Invalid(format!(
                        "channel {channel} does not address customers by phone number: name a contact instead"
                    ))
                } else {
                    NotifyError::Invalid(format!(
                        "`{}` is not a phone number in E.164 (a + then 6 to 15 digits, like +33612345678)",
                        clip(phone, 40)
                    ))
                }
            })?,
            Recipient::Contact(id) => ContactId::parse(id.as_str())
                .map_err(|e| NotifyError::Invalid(format!("`to.contact`: {e}")))?,
        };
        let context = match &request.context {
            Some(context) => {
                let size = context.to_string().len();
                if size > MAX_CONTEXT_BYTES {
                    return Err(NotifyError::Invalid(format!(
                        "the context is {size} bytes of JSON; at most {MAX_CONTEXT_BYTES}"
                    )));
                }
                Some(context.clone())
            }
            None => None,
        };
        let capabilities = adapter.capabilities();
        let (content, purpose, template) = match (&request.template, &request.text) {
            (Some(_), Some(_)) => {
                return Err(NotifyError::Invalid(
                    "send either a template or a text, not both".to_string(),
                ));
            }
            (None, None) => {
                return Err(NotifyError::Invalid(
                    "nothing to send: give a template or a text".to_string(),
                ));
            }
            (Some(wanted), None) => {
                let spec = self.template(wanted)?;
                let filled = spec.fill(&wanted.params).map_err(NotifyError::Invalid)?;
                let content = adapter
                    .template(spec, &filled)
                    .map_err(NotifyError::Invalid)?;
                let purpose = if spec.category.is_marketing() {
                    Purpose::Marketing
                } else {
                    Purpose::Utility
                };
                (content, purpose, Some(spec.key()))
            }
            (None, Some(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    return Err(NotifyError::Invalid("the text is empty".to_string()));
                }
                if text.chars().count() > capabilities.max_text_chars {
                    return Err(NotifyError::Invalid(format!(
                        "the text is longer than the {} characters channel {channel} sends",
                        capabilities.max_text_chars
                    )));
                }
                if capabilities.templates
                    && let Some(window) = capabilities.reply_window
                {
                    let conversation = self
                        .conversations
                        .conversation_of(&channel, &contact)
                        .await?;
                    let open = self
                        .conversations
                        .last_inbound_at(&conversation)
                        .await?
                        .is_some_and(|at| {
                            now_millis() - at < Millis::try_from(window.as_millis()).unwrap_or(0)
                        });
                    if !open {
                        return Err(NotifyError::Invalid(format!(
                            "the customer has not written on channel {channel} in the last {} hours: outside that window only a template may be sent",
                            window.as_secs() / 3600
                        )));
                    }
                }
                let content = Content::Template {
                    name: String::new(),
                    language: String::new(),
                    params: Vec::new(),
                    names: Vec::new(),
                    text: Some(text.to_string()),
                    context: None,
                };
                (content, request.purpose.unwrap_or(Purpose::Utility), None)
            }
        };
        let content = match content {
            Content::Template {
                name,
                language,
                params,
                names,
                text,
                ..
            } => Content::Template {
                name,
                language,
                params,
                names,
                text,
                context,
            },
            other => other,
        };
        Ok(Prepared {
            channel,
            contact,
            purpose,
            template,
            content,
        })
    }

    fn template(&self, wanted: &TemplateUse) -> Result<&TemplateSpec, NotifyError> {
        self.catalogue
            .get(&wanted.name, &wanted.language)
            .ok_or_else(|| NotifyError::UnknownTemplate {
                name: clip(&wanted.name, 80),
                language: clip(&wanted.language, 20),
                languages: self
                    .catalogue
                    .languages(&wanted.name)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            })
    }

    /// A queued notification, by id.
    pub async fn get(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        self.notifications.notification(id).await
    }
}

/// A caller's idempotency key, scoped to its service (two systems' keys never meet); a fresh
/// one when it gave none.
fn scoped_key(service: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{service}:{key}"),
        None => format!("{service}:{}", uuid::Uuid::now_v7().simple()),
    }
}

/// Whether `phone` is written in E.164.
pub fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (6..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
