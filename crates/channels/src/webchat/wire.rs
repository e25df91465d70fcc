//! The web chat's own wire format: what the page posts, and the events its stream receives.

use serde::{Deserialize, Serialize};

use super::super::OutboundMessage;
use concierge_domain::{Author, Choice, Content, Direction, KeptMedia, Message};

/// A message posted by the page.
#[derive(Debug, Deserialize)]
pub struct Post {
    /// A random id the page makes for each message; a retried POST repeats it.
    pub id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub choice: Option<PostChoice>,
    #[serde(default)]
    pub name: Option<String>,
    /// A file the visitor uploaded to `/chat/{channel}/media` first; `text` is its caption.
    #[serde(default)]
    pub media: Option<PostMedia>,
}

#[derive(Debug, Deserialize)]
pub struct PostMedia {
    /// The id the upload answered.
    pub id: String,
    /// Its type as the upload answered it (the gateway reads it again from the bytes).
    #[serde(default)]
    pub mime: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PostChoice {
    pub id: String,
    pub title: String,
}

/// One message on the page's live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    /// Our message id; the page ignores ids it already shows.
    pub id: String,
    /// The order of the message in the conversation (also the SSE event id, for resuming).
    pub seq: i64,
    /// `in` for the visitor's own messages, `out` for replies.
    pub direction: String,
    /// `customer`, `bot`, `concierge` or `system`.
    pub author: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub choices: Vec<Choice>,
    /// A file the message carries, kept by the gateway; the page fetches it from
    /// `/chat/{channel}/media/{id}` with the visitor's cookie.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub media: Option<ChatMedia>,
    /// Products shown as cards, each with its "Add to cart" choice.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub products: Vec<ChatProduct>,
    /// A button that opens a page (a payment), in a new tab.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link: Option<ChatLink>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// A product card: the merchant's own words, and the choice that puts it in the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatProduct {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price: Option<String>,
    /// An https picture (the page shows no other).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<String>,
    pub available: bool,
    /// The choice to post to add it (absent when it cannot be bought now).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub add: Option<Choice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLink {
    pub url: String,
    pub label: String,
}

/// What the page needs to show a kept file: a picture, a player, or a link to download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMedia {
    pub id: String,
    /// `image`, `audio`, `video`, `document` or `sticker`.
    pub kind: String,
    pub mime: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub height: Option<u32>,
}

impl ChatMedia {
    fn of(content: &Content) -> Option<ChatMedia> {
        let Content::Media {
            kind,
            kept: Some(KeptMedia::Stored(stored)),
            ..
        } = content
        else {
            return None;
        };
        Some(ChatMedia {
            id: stored.id.to_string(),
            kind: kind.name().to_string(),
            mime: stored.mime.clone(),
            bytes: stored.bytes,
            name: stored.name.clone(),
            width: stored.width,
            height: stored.height,
        })
    }
}

impl ChatEvent {
    fn build(
        id: String,
        seq: i64,
        direction: Direction,
        author: &Author,
        content: &Content,
        at: i64,
    ) -> Self {
        let (author, name) = match author {
            Author::Customer => ("customer", None),
            Author::Agent(_) => ("bot", None),
            Author::Concierge(name) => ("concierge", Some(name.clone())),
            Author::System => ("system", None),
        };
        let media = ChatMedia::of(content);
        let products = match content {
            Content::Products { products, .. } => products
                .iter()
                .map(|p| {
                    let available = p.available != Some(false);
                    ChatProduct {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        price: p.price.clone(),
                        image: p.image.clone().filter(|i| i.starts_with("https://")),
                        available,
                        add: available
                            .then(|| Choice::new(p.add_choice_id(), format!("Add {}", p.name))),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let link = match content {
            Content::PaymentLink { url, label, .. } => Some(ChatLink {
                url: url.clone(),
                label: label.clone(),
            }),
            _ => None,
        };
        let (text, choices) = match content {
            Content::Choices { body, choices, .. } => (body.clone(), choices.clone()),
            Content::Media { caption, .. } if media.is_some() => {
                (caption.clone().unwrap_or_default(), Vec::new())
            }
            other => (
                other
                    .plain_text()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("[{}]", other.kind_name())),
                Vec::new(),
            ),
        };
        Self {
            id,
            seq,
            direction: match direction {
                Direction::Inbound => "in",
                Direction::Outbound => "out",
            }
            .to_string(),
            author: author.to_string(),
            name,
            text,
            choices,
            media,
            products,
            link,
            at,
        }
    }

    pub fn from_outbound(message: &OutboundMessage) -> Self {
        Self::build(
            message.message_id.to_string(),
            message.seq,
            Direction::Outbound,
            &message.author,
            &message.content,
            message.created_at,
        )
    }

    /// A stored message; the visitor's own messages keep the id their page gave them, so
    /// the page recognises them when they are replayed.
    pub fn from_message(message: &Message) -> Self {
        let id = match (&message.direction, &message.platform_id) {
            // Stored as "<contact>:<page id>"; the page knows its own id.
            (Direction::Inbound, Some(platform_id)) => platform_id
                .as_str()
                .split_once(':')
                .map_or(platform_id.as_str(), |(_, id)| id)
                .to_string(),
            _ => message.id.to_string(),
        };
        Self::build(
            id,
            message.seq,
            message.direction,
            &message.author,
            &message.content,
            message.created_at,
        )
    }
}
