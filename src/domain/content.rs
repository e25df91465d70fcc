//! What a message carries. Non-exhaustive: a kind a platform adds tomorrow becomes
//! `Unsupported` at the adapter, never an error further in.

use serde::{Deserialize, Serialize};

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
    /// An outbound text offering choices; channels without buttons render them as a list.
    Choices {
        body: String,
        choices: Vec<Choice>,
    },
    /// A kind we do not understand yet, kept so nothing is dropped silently.
    Unsupported {
        kind: String,
    },
}

impl Content {
    pub fn text(body: impl Into<String>) -> Self {
        Content::Text { body: body.into() }
    }

    /// The plain text a responder can read, when the content has any.
    pub fn plain_text(&self) -> Option<&str> {
        match self {
            Content::Text { body } | Content::Choices { body, .. } => Some(body),
            Content::Media {
                caption: Some(c), ..
            } => Some(c),
            Content::Choice(choice) => Some(&choice.title),
            _ => None,
        }
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
            Content::Unsupported { .. } => "unsupported",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub title: String,
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

/// A reference the channel adapter that produced it can resolve into bytes on demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef(pub String);
