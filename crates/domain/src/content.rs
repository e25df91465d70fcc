//! What a message carries. Non-exhaustive: a kind a platform adds tomorrow becomes
//! `Unsupported` at the adapter, never an error further in.

use serde::{Deserialize, Serialize};

use crate::commerce::Product;

/// The body of a message, in the one shape every channel is normalised into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Content {
    Text {
        body: String,
    },
    Media {
        kind: MediaKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        media: MediaRef,
        /// What the gateway made of the bytes once it fetched them: kept (with what they
        /// are), or why it could not. `None` until then, and on outbound media.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<KeptMedia>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// The button or list row the customer picked.
    Choice(Choice),
    Reaction {
        /// The platform id of the message reacted to.
        target: String,
        /// The emoji; empty when a reaction was removed.
        emoji: String,
    },
    /// An outbound text offering choices. The adapter renders them within its platform's
    /// limits (buttons, a list, or numbered text); nothing above it knows those limits.
    Choices {
        body: String,
        choices: Vec<Choice>,
        /// A title above the body, where the platform shows one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// A small line under the body, where the platform shows one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        /// The label of the button that opens a list, where the platform needs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        button: Option<String>,
    },
    /// A message template approved by the platform (the only kind WhatsApp lets a business
    /// send outside the 24-hour customer service window).
    Template {
        name: String,
        language: String,
        /// The body's parameters, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        params: Vec<String>,
        /// The parameters' names, in the same order, for a template with named placeholders
        /// (`{{order}}`); empty for numbered ones (`{{1}}`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        names: Vec<String>,
        /// The body as the customer reads it, placeholders filled (a notification's): what
        /// the console shows and the agents read, and what a channel without templates sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// What the merchant's system said about it (a notification's `context`), for the
        /// agents: data, never sent to the customer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<serde_json::Value>,
    },
    /// Contact cards the customer shared (a person's name, phones, e-mails): data to read,
    /// never numbers the gateway calls or writes to by itself.
    Contacts {
        contacts: Vec<ContactCard>,
    },
    /// A cart the customer sent from the business's catalogue (WhatsApp's `order`): the
    /// products by the merchant's own ids, as the platform reported them; the merchant's
    /// systems, never this, say what they cost.
    Order {
        catalog_id: String,
        items: Vec<OrderItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A form the customer filled in (a completed WhatsApp Flow): its answers by field name,
    /// bounded, and the token that says which form it was.
    FormReply {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow_token: Option<String>,
        answers: serde_json::Map<String, serde_json::Value>,
    },
    /// What a message the customer deleted (WhatsApp's revoke) is stored as: its words are
    /// gone, as the customer asked; the agents do not see it, a concierge sees it was there.
    Deleted,
    /// Products from the merchant's catalogue, shown the chat app's way (a catalogue
    /// message, photos with "Add to cart" buttons, cards): every name, price and picture
    /// from a merchant tool's answer, never from the model.
    Products {
        body: String,
        products: Vec<Product>,
    },
    /// A button that opens a payment page. Its URL comes from a merchant tool's answer
    /// (`payment_url`), never from the model's words.
    PaymentLink {
        body: String,
        url: String,
        label: String,
    },
    /// A form sent to the customer (a WhatsApp Flow), with the fresh token its answer comes
    /// back with.
    Flow {
        body: String,
        /// The `[[flows]]` name.
        flow: String,
        flow_id: String,
        token: String,
        /// The label of the button that opens it.
        cta: String,
        /// The first screen, for a flow opened without the merchant's endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screen: Option<String>,
        /// What the form starts with (its first screen's data).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
    /// Something the merchant's systems report about the conversation (`payment.succeeded`,
    /// `order.shipped`), posted to the events API: it enters the conversation's lane like a
    /// message, for the agents to tell the customer; never sent as it is.
    Event {
        name: String,
        /// The sender's id of the event (what makes a second post of it a duplicate).
        id: String,
        /// The service whose token posted it.
        service: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        data: serde_json::Value,
    },
    /// A kind we do not understand yet, kept so nothing is dropped silently.
    Unsupported {
        kind: String,
    },
}

/// One line of a cart: a product by the merchant's id, how many, and the price the platform
/// showed (a decimal as it was written, with its currency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl OrderItem {
    /// The most lines one cart keeps.
    pub const MAX_ITEMS: usize = 100;

    fn describe(&self) -> String {
        match (&self.unit_price, &self.currency) {
            (Some(price), Some(currency)) => {
                format!("{} × {} at {price} {currency}", self.quantity, self.product)
            }
            (Some(price), None) => format!("{} × {} at {price}", self.quantity, self.product),
            _ => format!("{} × {}", self.quantity, self.product),
        }
    }
}

/// The most a form's answers may hold, as JSON: a form is data for the agents, not a
/// document.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// A form's answers within [`MAX_FORM_BYTES`]: fields past it are left out, whole.
pub fn bounded_answers(
    answers: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut kept = serde_json::Map::new();
    let mut size = 2;
    for (key, value) in answers {
        let cost = key.len() + value.to_string().len() + 4;
        if size + cost > MAX_FORM_BYTES {
            continue;
        }
        size += cost;
        kept.insert(key, value);
    }
    kept
}

/// A shared contact card, bounded: see [`ContactCard::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactCard {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
}

impl ContactCard {
    /// The most cards one message keeps, and phones or e-mails one card keeps.
    pub const MAX_CARDS: usize = 10;
    pub const MAX_FIELDS: usize = 5;

    /// A card as a platform sent it, made safe to store and show: the name as a display
    /// name, at most [`Self::MAX_FIELDS`] phones and e-mails, each cleaned and clipped as a
    /// display name is (one line, at most [`MAX_DISPLAY_NAME`] characters).
    pub fn new(
        name: &str,
        phones: impl IntoIterator<Item = String>,
        emails: impl IntoIterator<Item = String>,
    ) -> Self {
        let field = |v: String| display_name(&v);
        ContactCard {
            name: display_name(name).unwrap_or_default(),
            phones: phones
                .into_iter()
                .filter_map(field)
                .take(Self::MAX_FIELDS)
                .collect(),
            emails: emails
                .into_iter()
                .filter_map(field)
                .take(Self::MAX_FIELDS)
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let details: Vec<&str> = self
            .phones
            .iter()
            .chain(&self.emails)
            .map(String::as_str)
            .collect();
        let name = if self.name.is_empty() {
            "(no name)"
        } else {
            &self.name
        };
        if details.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", details.join(", "))
        }
    }
}

/// Cuts a text to `max` characters, marking the cut with an ellipsis (counted in `max`).
pub fn clip_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The most characters a customer's display name keeps (see [`display_name`]).
pub const MAX_DISPLAY_NAME: usize = 64;

/// A display name the platform or the visitor chose, made safe to store, show and quote:
/// control and invisible formatting characters (bidi overrides, zero-width spaces) removed,
/// every run of whitespace (newlines included) one space, trimmed, and at most
/// [`MAX_DISPLAY_NAME`] characters (cut on a character, the cut marked with an ellipsis).
/// `None` when nothing is left. Reads no further than it needs, however long the input.
pub fn display_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    let (mut kept, mut space) = (0usize, false);
    for c in raw.chars() {
        if c.is_whitespace() {
            space = kept > 0;
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        if space {
            out.push(' ');
            kept += 1;
            space = false;
        }
        out.push(c);
        kept += 1;
        if kept > MAX_DISPLAY_NAME {
            break;
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(clip_text(out.trim_end(), MAX_DISPLAY_NAME))
}

/// Format characters that change how text around them reads without showing themselves:
/// bidirectional overrides and isolates, zero-width spaces and marks, the byte order mark.
/// The zero-width joiner stays (emoji sequences need it).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A location's name and address as one label (`Maison Lumière, 14 rue Auguste Comte`).
pub fn place_label(name: Option<&str>, address: Option<&str>) -> String {
    [name, address]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Content {
    pub fn text(body: impl Into<String>) -> Self {
        Content::Text { body: body.into() }
    }

    /// The plain text a responder can read, when the content has any.
    pub fn plain_text(&self) -> Option<&str> {
        match self {
            Content::Text { body }
            | Content::Choices { body, .. }
            | Content::Products { body, .. }
            | Content::PaymentLink { body, .. }
            | Content::Flow { body, .. } => Some(body),
            // A notification's words as the customer read them (never its context).
            Content::Template { text: Some(t), .. } => Some(t),
            Content::Media {
                caption: Some(c), ..
            } => Some(c),
            // A voice note's words, once transcribed.
            Content::Media {
                kept:
                    Some(KeptMedia::Stored(StoredMedia {
                        transcript: Some(words),
                        ..
                    })),
                ..
            } => Some(words),
            Content::Choice(choice) => Some(&choice.title),
            _ => None,
        }
    }

    /// The content as a short line for a list a person scans (the console's queue): media
    /// by what it is to the customer ("Voice note: …", "Photo: …"), the rest as
    /// [`Content::describe`] says it.
    pub fn preview(&self) -> String {
        let Content::Media {
            kind,
            caption,
            kept,
            ..
        } = self
        else {
            return self.describe();
        };
        let what = match kind {
            MediaKind::Image => "Photo",
            MediaKind::Audio => "Voice note",
            MediaKind::Video => "Video",
            MediaKind::Document => "File",
            MediaKind::Sticker => "Sticker",
        };
        let stored = match kept {
            Some(KeptMedia::Stored(stored)) => Some(stored),
            _ => None,
        };
        let words = stored
            .and_then(|s| s.transcript.as_deref())
            .map(|w| format!("“{w}”"))
            .or_else(|| caption.clone())
            .or_else(|| stored.and_then(|s| s.name.clone()));
        match words {
            Some(words) => format!("{what}: {words}"),
            None => what.to_string(),
        }
    }

    /// The content as one line of text a person or an LLM can read.
    pub fn describe(&self) -> String {
        match self {
            Content::Text { body } => body.clone(),
            Content::Media {
                kind,
                caption,
                kept,
                ..
            } => {
                let what = match kept {
                    Some(KeptMedia::Stored(stored)) => {
                        match (&stored.transcript, &stored.transcript_problem) {
                            (Some(words), _) => format!(
                                "[{} attached, {}, its words:] {words}",
                                kind.name(),
                                stored.describe()
                            ),
                            (None, Some(problem)) => format!(
                                "[{} attached, {}; it could not be put into words: {problem}]",
                                kind.name(),
                                stored.describe()
                            ),
                            (None, None) => {
                                format!("[{} attached, {}]", kind.name(), stored.describe())
                            }
                        }
                    }
                    Some(KeptMedia::Unavailable { reason }) => {
                        format!("[{} attached; it could not be read: {reason}]", kind.name())
                    }
                    None => format!("[{} attached]", kind.name()),
                };
                match caption {
                    Some(caption) => format!("{what} {caption}"),
                    None => what,
                }
            }
            Content::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let place = place_label(name.as_deref(), address.as_deref());
                format!("[location {latitude:.5}, {longitude:.5}] {place}")
                    .trim_end()
                    .to_string()
            }
            Content::Choice(choice) => format!("[picked] {}", choice.title),
            Content::Choices { body, choices, .. } => {
                let options: Vec<&str> = choices.iter().map(|c| c.title.as_str()).collect();
                format!("{body}\n[options: {}]", options.join(" | "))
            }
            Content::Reaction { emoji, .. } => format!("[reacted {emoji}]"),
            Content::Template {
                name,
                text,
                context,
                ..
            } => {
                let mut said = match text {
                    Some(text) if name.is_empty() => format!("{text}\n[sent as a notification]"),
                    Some(text) => format!("{text}\n[sent as the notification {name}]"),
                    None => format!("[template {name}]"),
                };
                if let Some(context) = context {
                    said.push_str(&format!("\n[what our systems said about it: {context}]"));
                }
                said
            }
            Content::Contacts { contacts } => {
                let cards: Vec<String> = contacts.iter().map(ContactCard::describe).collect();
                format!("[contact card] {}", cards.join("; "))
            }
            Content::Order {
                catalog_id,
                items,
                text,
            } => {
                let lines: Vec<String> = items.iter().map(OrderItem::describe).collect();
                let note = text
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(|t| format!(" \"{t}\""))
                    .unwrap_or_default();
                format!(
                    "[order from catalogue {catalog_id}] {}{note}",
                    lines.join("; ")
                )
            }
            Content::FormReply { answers, .. } => {
                let fields: Vec<String> = answers
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => format!("{k}: {s}"),
                        other => format!("{k}: {other}"),
                    })
                    .collect();
                format!("[form answered] {}", fields.join("; "))
            }
            Content::Deleted => "[deleted by the customer]".to_string(),
            Content::Products { body, products } => {
                let lines: Vec<String> = products.iter().map(Product::line).collect();
                format!("{body}\n[products shown: {}]", lines.join(" | "))
            }
            Content::PaymentLink { body, label, .. } => {
                format!("{body}\n[payment button: {label}]")
            }
            Content::Flow { body, flow, .. } => format!("{body}\n[form sent: {flow}]"),
            Content::Event {
                name,
                service,
                data,
                ..
            } => {
                if data.is_null() {
                    format!("[event from our systems ({service})] {name}")
                } else {
                    format!("[event from our systems ({service})] {name}: {data}")
                }
            }
            Content::Unsupported { kind } => format!("[a {kind} message the gateway cannot read]"),
        }
    }

    /// A template with numbered parameters, and nothing else said about it.
    pub fn template(
        name: impl Into<String>,
        language: impl Into<String>,
        params: Vec<String>,
    ) -> Self {
        Content::Template {
            name: name.into(),
            language: language.into(),
            params,
            names: Vec::new(),
            text: None,
            context: None,
        }
    }

    /// The content as a channel sends it: a notification written as text (a template
    /// without a name), or a template on a channel without templates, goes as its text.
    pub fn as_sent(&self, templates: bool) -> std::borrow::Cow<'_, Content> {
        match self {
            Content::Template {
                name,
                text: Some(text),
                ..
            } if name.is_empty() || !templates => {
                std::borrow::Cow::Owned(Content::text(text.clone()))
            }
            other => std::borrow::Cow::Borrowed(other),
        }
    }

    /// Who wrote an inbound message of this content: the customer, except an event the
    /// merchant's systems posted, which is the gateway's (it opens no reply window, and no
    /// typing or read receipt goes to the platform for it).
    pub fn inbound_author(&self) -> crate::Author {
        match self {
            Content::Event { .. } => crate::Author::System,
            _ => crate::Author::Customer,
        }
    }

    /// Whether this is a platform-approved template (allowed outside a reply window).
    pub fn is_template(&self) -> bool {
        matches!(self, Content::Template { .. })
    }

    /// A short name of the kind, for logs and metrics (never the body).
    pub fn kind_name(&self) -> &str {
        match self {
            Content::Text { .. } => "text",
            Content::Media { .. } => "media",
            Content::Location { .. } => "location",
            Content::Choice(_) => "choice",
            Content::Reaction { .. } => "reaction",
            Content::Choices { .. } => "choices",
            Content::Template { .. } => "template",
            Content::Contacts { .. } => "contacts",
            Content::Order { .. } => "order",
            Content::FormReply { .. } => "form_reply",
            Content::Deleted => "deleted",
            Content::Products { .. } => "products",
            Content::PaymentLink { .. } => "payment_link",
            Content::Flow { .. } => "flow",
            Content::Event { .. } => "event",
            Content::Unsupported { .. } => "unsupported",
        }
    }
}

/// How long a text is as the strictest platforms count it: in UTF-16 units (Telegram's 4,096
/// and Twilio's 1,600 are such units; an emoji takes two). Never less than its characters.
pub fn text_units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Splits a text into parts of at most `max` [`text_units`], cutting at a paragraph, then a
/// line, then a word boundary when one falls in the second half of the part.
///
/// ```
/// use concierge_domain::split_text;
///
/// let parts = split_text("Opening hours.\n\nDelivery takes two days.", 20);
/// assert_eq!(parts, ["Opening hours.", "Delivery takes two", "days."]);
/// // An emoji counts twice, as Telegram counts it.
/// assert_eq!(split_text("😀😀😀", 4), ["😀😀", "😀"]);
/// ```
pub fn split_text(body: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut chunks = Vec::new();
    let mut rest = body;
    while text_units(rest) > max {
        // The longest prefix within `max` units.
        let mut units = 0;
        let mut limit = rest.len();
        for (i, c) in rest.char_indices() {
            units += c.len_utf16();
            if units > max {
                limit = i;
                break;
            }
        }
        let window = &rest[..limit];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .filter_map(|sep| window.rfind(sep).map(|i| i + sep.len()))
            .find(|i| *i > limit / 2)
            .unwrap_or(limit);
        chunks.push(rest[..cut].trim_end().to_string());
        rest = &rest[cut..];
    }
    chunks.push(rest.to_string());
    chunks
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub title: String,
    /// A second line, where the platform shows one (list rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The group the choice belongs to, where the platform groups them (list sections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

impl Choice {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            description: None,
            section: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaKind {
    /// The kind's name, as it is serialised (`image`, `audio`, …).
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }

    /// The kind a file of type `mime` is sent as: a picture, a sound, a film, else a document.
    pub fn for_mime(mime: &str) -> MediaKind {
        match mime.split('/').next().unwrap_or_default() {
            "image" => MediaKind::Image,
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => MediaKind::Document,
        }
    }
}

/// A reference the channel adapter that produced it can resolve into bytes on demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef(pub String);

impl MediaRef {
    const KEPT: &'static str = "kept:";

    /// A reference to media the gateway already keeps (a web chat visitor's upload): the
    /// intake takes it from the store, and only if the conversation holds it.
    pub fn kept(id: &MediaId) -> MediaRef {
        MediaRef(format!("{}{id}", Self::KEPT))
    }

    /// The kept media this reference names, if it names one.
    pub fn kept_id(&self) -> Option<MediaId> {
        MediaId::parse(self.0.strip_prefix(Self::KEPT)?).ok()
    }
}

impl Content {
    /// A media message as an adapter reads it: what the platform said, nothing fetched yet.
    pub fn media(
        kind: MediaKind,
        mime: Option<String>,
        caption: Option<String>,
        media: MediaRef,
    ) -> Content {
        Content::Media {
            kind,
            mime,
            caption,
            media,
            kept: None,
        }
    }
}

impl Content {
    /// The content as the adapter read it: a media message without what was kept of it.
    pub fn without_kept(&self) -> Content {
        self.replacing_kept(None).unwrap_or_else(|| self.clone())
    }

    /// This media content with what became of its bytes; `None` for any other content.
    pub fn with_kept(&self, outcome: KeptMedia) -> Option<Content> {
        self.replacing_kept(Some(outcome))
    }

    fn replacing_kept(&self, outcome: Option<KeptMedia>) -> Option<Content> {
        let mut content = self.clone();
        match &mut content {
            Content::Media { kept, .. } => {
                *kept = outcome;
                Some(content)
            }
            _ => None,
        }
    }
}

/// What became of a message's media once the gateway fetched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeptMedia {
    Stored(StoredMedia),
    /// Not kept, and why, in words a concierge (and the model) can read: too large, a kind
    /// not allowed, gone from the platform, unreadable.
    Unavailable {
        reason: String,
    },
}

/// Media bytes the gateway keeps: by the SHA-256 of the bytes, with what the bytes are (read
/// from them, not from what the sender claimed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMedia {
    pub id: MediaId,
    pub mime: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A voice note's words, from the transcription server (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// Why a voice note has no transcript (the server failed, or none is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_problem: Option<String>,
    /// The file's name as its sender gave it (a concierge's upload), for the platforms that
    /// show one; bounded and without a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl StoredMedia {
    /// `image/jpeg, 1600×1200, 412 KB`.
    pub fn describe(&self) -> String {
        let size = if self.bytes >= 1024 * 1024 {
            format!("{:.1} MB", self.bytes as f64 / (1024.0 * 1024.0))
        } else {
            format!("{} KB", self.bytes.div_ceil(1024))
        };
        match (self.width, self.height) {
            (Some(w), Some(h)) => format!("{}, {w}×{h}, {size}", self.mime),
            _ => format!("{}, {size}", self.mime),
        }
    }
}

/// The id of kept media: the SHA-256 of its bytes, 64 lowercase hex digits. Anything else
/// is refused, so an id can name a file and a URL path safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MediaId(String);

impl MediaId {
    pub fn parse(text: &str) -> Result<MediaId, String> {
        let ok = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(MediaId(text.to_string()))
        } else {
            Err(format!("`{}` is not a media id", clip_text(text, 80)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MediaId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        MediaId::parse(&text)
    }
}

impl From<MediaId> for String {
    fn from(id: MediaId) -> String {
        id.0
    }
}

impl std::fmt::Display for MediaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_preview_says_what_media_is_to_the_customer() {
        let voice = Content::media(MediaKind::Audio, None, None, MediaRef("1".into()));
        assert_eq!(voice.preview(), "Voice note");
        let heard = voice
            .with_kept(KeptMedia::Stored(StoredMedia {
                id: MediaId::parse(&"ab".repeat(32)).unwrap(),
                mime: "audio/ogg".into(),
                bytes: 4096,
                width: None,
                height: None,
                transcript: Some("The wick broke".into()),
                transcript_problem: None,
                name: None,
            }))
            .unwrap();
        assert_eq!(heard.preview(), "Voice note: “The wick broke”");
        let photo = Content::media(
            MediaKind::Image,
            None,
            Some("the crack".into()),
            MediaRef("2".into()),
        );
        assert_eq!(photo.preview(), "Photo: the crack");
        assert_eq!(Content::text("hello").preview(), "hello");
    }

    use super::{
        ContactCard, Content, KeptMedia, MAX_DISPLAY_NAME, MAX_FORM_BYTES, MediaId, MediaKind,
        MediaRef, OrderItem, StoredMedia, bounded_answers, display_name, split_text,
    };

    #[test]
    fn an_order_and_a_form_read_as_data_and_a_form_stays_bounded() {
        let order = Content::Order {
            catalog_id: "354160437058781".into(),
            items: vec![
                OrderItem {
                    product: "BOU-FIGUIER".into(),
                    quantity: 2,
                    unit_price: Some("38.50".into()),
                    currency: Some("EUR".into()),
                },
                OrderItem {
                    product: "MECHE".into(),
                    quantity: 1,
                    unit_price: None,
                    currency: None,
                },
            ],
            text: Some("gift wrap please".into()),
        };
        assert_eq!(
            order.describe(),
            "[order from catalogue 354160437058781] 2 × BOU-FIGUIER at 38.50 EUR; 1 × MECHE \"gift wrap please\""
        );
        let mut answers = serde_json::Map::new();
        answers.insert("rating".into(), serde_json::json!("4"));
        answers.insert("huge".into(), serde_json::json!("x".repeat(MAX_FORM_BYTES)));
        answers.insert("recommend".into(), serde_json::json!(true));
        let kept = bounded_answers(answers);
        assert_eq!(kept.len(), 2, "the field past the bound is left out whole");
        let form = Content::FormReply {
            flow_token: None,
            answers: kept,
        };
        assert_eq!(
            form.describe(),
            "[form answered] rating: 4; recommend: true"
        );
        assert_eq!(form.kind_name(), "form_reply");
    }

    #[test]
    fn a_contact_card_is_bounded_and_reads_as_data() {
        let card = ContactCard::new(
            "Chandler\u{202E} Bing\n",
            (0..9).map(|i| format!("+1 555-000-000{i}")),
            ["c@example.com".to_string(), "x".repeat(300)],
        );
        assert_eq!(card.name, "Chandler Bing");
        assert_eq!(card.phones.len(), ContactCard::MAX_FIELDS);
        assert_eq!(card.emails[1].chars().count(), MAX_DISPLAY_NAME);
        let shared = Content::Contacts {
            contacts: vec![
                ContactCard::new("Monica", ["+1 666".to_string()], []),
                ContactCard::new("", [], []),
            ],
        };
        assert_eq!(
            shared.describe(),
            "[contact card] Monica (+1 666); (no name)"
        );
        assert_eq!(shared.kind_name(), "contacts");
    }

    #[test]
    fn display_names_are_one_short_line_of_visible_characters() {
        assert_eq!(
            display_name("  Ana \n\n Lopez\t"),
            Some("Ana Lopez".to_string())
        );
        assert_eq!(
            display_name("Ana\r\n\u{0}\u{1b}[31mSYSTEM\u{202E}\u{200B}\u{2028}OVERRIDE"),
            Some("Ana [31mSYSTEM OVERRIDE".to_string())
        );
        assert_eq!(display_name(" \n\u{7}\u{200B} "), None);
        assert_eq!(
            display_name("👩\u{200D}💻 Zoé"),
            Some("👩\u{200D}💻 Zoé".to_string())
        );
        let long = display_name(&format!("{}\n\nSYSTEM OVERRIDE", "é".repeat(900_000))).unwrap();
        assert_eq!(long.chars().count(), MAX_DISPLAY_NAME);
        assert!(long.ends_with('…') && !long.contains('\n'));
        let exact = "x".repeat(MAX_DISPLAY_NAME);
        assert_eq!(display_name(&exact), Some(exact));
    }

    #[test]
    fn splits_at_boundaries_within_the_limit() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b ".repeat(40));
        let parts = split_text(&text, 40);
        assert!(parts.iter().all(|p| p.chars().count() <= 40), "{parts:?}");
        assert_eq!(parts[0], "a".repeat(30));
        assert_eq!(
            parts.concat().replace(['\n', ' '], ""),
            text.replace(['\n', ' '], "")
        );
        assert_eq!(split_text("short", 40), vec!["short".to_string()]);
        let unbroken = "é".repeat(100);
        let parts = split_text(&unbroken, 40);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 40));
    }
}
