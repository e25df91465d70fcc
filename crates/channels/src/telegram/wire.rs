//! The Bot API's `Update`, as Telegram sends it: only the fields the adapter reads, each
//! optional where the Bot API says it is, and an update kind we do not read (or cannot read)
//! kept raw as `Unsupported` instead of failing the body.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One update: its id and the one kind of thing that happened.
#[derive(Debug)]
pub struct Update {
    pub update_id: i64,
    pub kind: UpdateKind,
}

#[derive(Debug)]
pub enum UpdateKind {
    Message(Message),
    EditedMessage(Message),
    CallbackQuery(CallbackQuery),
    MessageReaction(MessageReaction),
    /// A kind we do not read, or one we read that does not have the shape we expect: its
    /// key (empty when the update has none) and its value, as sent.
    Unsupported {
        kind: String,
        raw: Value,
    },
}

/// The update kinds the Bot API documents that we do not read: acknowledged quietly. Any
/// other key is one we do not know (a newer Bot API), which is worth a warning.
pub const KNOWN_UNUSED: &[&str] = &[
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
];

impl<'de> Deserialize<'de> for Update {
    /// Read in one pass: `update_id`, then the first other key decides the kind (Telegram
    /// sends exactly one). Its value is read as JSON and then typed, so that a value of the
    /// wrong shape is kept as `Unsupported` rather than failing the whole body.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UpdateVisitor)
    }
}

struct UpdateVisitor;

impl<'de> Visitor<'de> for UpdateVisitor {
    type Value = Update;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Telegram update")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Update, A::Error> {
        let mut update_id = None;
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "update_id" {
                update_id = Some(map.next_value::<i64>()?);
            } else if kind.is_some() {
                map.next_value::<IgnoredAny>()?;
            } else {
                let raw = map.next_value::<Value>()?;
                kind = Some(UpdateKind::read(key, raw).map_err(de::Error::custom)?);
            }
        }
        Ok(Update {
            update_id: update_id.ok_or_else(|| de::Error::missing_field("update_id"))?,
            kind: kind.unwrap_or(UpdateKind::Unsupported {
                kind: String::new(),
                raw: Value::Null,
            }),
        })
    }
}

impl UpdateKind {
    /// Types the value of one kind. An error only for what must not be acknowledged as
    /// read: a reaction nobody made.
    fn read(key: String, raw: Value) -> Result<Self, &'static str> {
        fn typed<T: serde::de::DeserializeOwned>(raw: &Value) -> Option<T> {
            T::deserialize(raw).ok()
        }
        let read = match key.as_str() {
            "message" => typed(&raw).map(UpdateKind::Message),
            "edited_message" => typed(&raw).map(UpdateKind::EditedMessage),
            "callback_query" => typed(&raw).map(UpdateKind::CallbackQuery),
            "message_reaction" => match typed::<MessageReaction>(&raw) {
                Some(r) if r.user.is_none() && r.actor_chat.is_none() => {
                    return Err("a message_reaction without a user or an actor_chat");
                }
                other => other.map(UpdateKind::MessageReaction),
            },
            _ => None,
        };
        Ok(read.unwrap_or(UpdateKind::Unsupported { kind: key, raw }))
    }
}

#[derive(Debug, Deserialize)]
pub struct Chat {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
}

impl User {
    /// "First Last", or the first name alone.
    pub fn full_name(&self) -> String {
        match &self.last_name {
            Some(last) => format!("{} {last}", self.first_name),
            None => self.first_name.clone(),
        }
    }
}

/// A message. Its content fields are all optional; which one is present says what it is
/// (see [`Message::content`]).
#[derive(Debug, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// Unix seconds; 0 for a message Telegram no longer shows us (in a callback query).
    pub date: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    #[serde(default)]
    pub edit_date: Option<i64>,
    #[serde(default)]
    pub reply_to_message: Option<Replied>,
    #[serde(default)]
    pub reply_markup: Option<InlineKeyboardMarkup>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub photo: Option<Vec<PhotoSize>>,
    #[serde(default)]
    pub document: Option<Document>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub animation: Option<FileRef>,
    #[serde(default)]
    pub audio: Option<FileRef>,
    #[serde(default)]
    pub contact: Option<SharedContact>,
    #[serde(default)]
    pub paid_media: Option<IgnoredAny>,
    #[serde(default)]
    pub game: Option<IgnoredAny>,
    #[serde(default)]
    pub venue: Option<Venue>,
    #[serde(default)]
    pub poll: Option<IgnoredAny>,
    #[serde(default)]
    pub checklist: Option<IgnoredAny>,
    #[serde(default)]
    pub sticker: Option<FileRef>,
    #[serde(default)]
    pub story: Option<IgnoredAny>,
    #[serde(default)]
    pub video: Option<FileRef>,
    #[serde(default)]
    pub video_note: Option<FileRef>,
    #[serde(default)]
    pub voice: Option<FileRef>,
    #[serde(default)]
    pub migrate_to_chat_id: Option<IgnoredAny>,
    #[serde(default)]
    pub dice: Option<Dice>,
    #[serde(default)]
    pub migrate_from_chat_id: Option<IgnoredAny>,
}

/// What a message carries, for the kinds we read.
#[derive(Debug)]
pub enum MessageContent<'a> {
    Text(&'a str),
    Photo(&'a [PhotoSize]),
    Document(&'a Document),
    Location(&'a Location),
    /// A file the Bot API serves by id: a voice note, a sticker, a video…
    File(FileKind, &'a FileRef),
    Venue(&'a Venue),
    Contact(&'a SharedContact),
    Dice(&'a Dice),
    /// Something said that we do not read, by its kind (a poll, a game, a story…).
    Other(&'static str),
    /// Nothing said: a service message (members joined, title changed, pinned, a dice…).
    Service,
}

impl Message {
    /// What this message carries. When Telegram sets two fields for compatibility (an
    /// animation is also a document, a venue also a location) the first in this order wins.
    pub fn content(&self) -> MessageContent<'_> {
        let other =
            |kind: &'static str, present: bool| present.then_some(MessageContent::Other(kind));
        fn file(kind: FileKind, file: &Option<FileRef>) -> Option<MessageContent<'_>> {
            file.as_ref().map(|f| MessageContent::File(kind, f))
        }
        file(FileKind::Animation, &self.animation)
            .or_else(|| file(FileKind::Audio, &self.audio))
            .or_else(|| self.contact.as_ref().map(MessageContent::Contact))
            .or_else(|| self.document.as_ref().map(MessageContent::Document))
            .or_else(|| other("paid media", self.paid_media.is_some()))
            .or_else(|| other("game", self.game.is_some()))
            .or_else(|| self.venue.as_ref().map(MessageContent::Venue))
            .or_else(|| self.location.as_ref().map(MessageContent::Location))
            .or_else(|| self.photo.as_deref().map(MessageContent::Photo))
            .or_else(|| other("poll", self.poll.is_some()))
            .or_else(|| other("checklist", self.checklist.is_some()))
            .or_else(|| file(FileKind::Sticker, &self.sticker))
            .or_else(|| other("story", self.story.is_some()))
            .or_else(|| self.text.as_deref().map(MessageContent::Text))
            .or_else(|| file(FileKind::Video, &self.video))
            .or_else(|| file(FileKind::VideoNote, &self.video_note))
            .or_else(|| file(FileKind::Voice, &self.voice))
            .or_else(|| self.dice.as_ref().map(MessageContent::Dice))
            .or_else(|| {
                other(
                    "group migration",
                    self.migrate_to_chat_id.is_some() || self.migrate_from_chat_id.is_some(),
                )
            })
            .unwrap_or(MessageContent::Service)
    }

    /// Something said (not a service message): only then do replies and buttons count.
    pub fn is_said(&self) -> bool {
        !matches!(self.content(), MessageContent::Service)
    }

    /// The text, for a text message only.
    pub fn text(&self) -> Option<&str> {
        match self.content() {
            MessageContent::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// The message replied to: only its id is read.
#[derive(Debug, Deserialize)]
pub struct Replied {
    pub message_id: i64,
}

#[derive(Debug, Deserialize)]
pub struct PhotoSize {
    pub file_id: String,
    pub width: u64,
    pub height: u64,
}

#[derive(Debug, Deserialize)]
pub struct Document {
    pub file_id: String,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// The kinds of file a message may carry besides photos and documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Animation,
    Audio,
    Sticker,
    Video,
    VideoNote,
    Voice,
}

/// A file by its id (older payloads have no `file_unique_id`; it is not read).
#[derive(Debug, Deserialize)]
pub struct FileRef {
    pub file_id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Seconds, for sound and video.
    #[serde(default)]
    pub duration: Option<u64>,
    /// A sticker's emoji.
    #[serde(default)]
    pub emoji: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Venue {
    pub location: Location,
    pub title: String,
    #[serde(default)]
    pub address: Option<String>,
}

/// A contact card shared in the chat.
#[derive(Debug, Deserialize)]
pub struct SharedContact {
    pub phone_number: String,
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
}

/// A die (or dart, ball…) thrown, with the value it showed.
#[derive(Debug, Deserialize)]
pub struct Dice {
    pub emoji: String,
    pub value: i64,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Deserialize)]
pub struct InlineKeyboardMarkup {
    pub inline_keyboard: Vec<Vec<InlineKeyboardButton>>,
}

#[derive(Debug, Deserialize)]
pub struct InlineKeyboardButton {
    pub text: String,
    #[serde(default)]
    pub callback_data: Option<String>,
}

/// A button tapped.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    /// The message with the button; absent for a button of an inline message.
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub data: Option<String>,
}

/// A reaction set or taken back by a user (`user`) or on behalf of a chat (`actor_chat`).
#[derive(Debug, Deserialize)]
pub struct MessageReaction {
    pub chat: Chat,
    pub message_id: i64,
    pub date: i64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub actor_chat: Option<Chat>,
    #[serde(default)]
    pub new_reaction: Vec<ReactionType>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReactionType {
    Emoji {
        emoji: String,
    },
    /// A custom emoji, a paid reaction, or a kind newer than this code.
    #[serde(other)]
    Other,
}

/// Every Bot API answer: `ok`, and the `result` or why not.
#[derive(Debug, Deserialize)]
pub struct Answer<T> {
    pub ok: bool,
    #[serde(default = "none")]
    pub result: Option<T>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Debug, Deserialize)]
pub struct Parameters {
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// One entry of getUpdates' `result`: an update, or only its id when the rest cannot be
/// read (so that the next poll's offset still moves past it).
#[derive(Debug)]
pub enum Polled {
    Read(Box<Update>),
    Unreadable { update_id: Option<i64> },
}

impl<'de> Deserialize<'de> for Polled {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        let update_id = raw.get("update_id").and_then(Value::as_i64);
        Ok(match Update::deserialize(raw) {
            Ok(update) => Polled::Read(Box::new(update)),
            Err(_) => Polled::Unreadable { update_id },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(body: serde_json::Value) -> Update {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn an_unknown_kind_is_unsupported_with_its_value_kept() {
        for (key, value) in [
            ("future_kind", serde_json::json!({ "x": 1 })),
            (
                "business_connection",
                serde_json::json!({ "id": "b", "user_chat_id": 1, "date": 1, "is_enabled": true }),
            ),
        ] {
            let parsed = update(serde_json::json!({ "update_id": 7, key: value.clone() }));
            assert_eq!(parsed.update_id, 7);
            match parsed.kind {
                UpdateKind::Unsupported { kind, raw } => {
                    assert_eq!(kind, key);
                    assert_eq!(raw, value);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_known_kind_of_the_wrong_shape_is_unsupported_too() {
        let parsed =
            update(serde_json::json!({ "update_id": 8, "message": { "text": "no chat" } }));
        assert!(matches!(parsed.kind, UpdateKind::Unsupported { kind, .. } if kind == "message"));
        let bare = update(serde_json::json!({ "update_id": 9 }));
        assert!(matches!(bare.kind, UpdateKind::Unsupported { kind, .. } if kind.is_empty()));
    }

    #[test]
    fn an_update_without_its_id_is_an_error() {
        assert!(serde_json::from_str::<Update>(r#"{"message":{}}"#).is_err());
        assert!(serde_json::from_str::<Update>("[]").is_err());
    }

    #[test]
    fn an_animation_is_read_as_an_animation_not_its_document_and_a_venue_not_its_location() {
        let message = |extra: serde_json::Value| -> Message {
            let mut m = serde_json::json!({ "message_id": 1, "date": 1, "chat": { "id": 1 } });
            if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
                m.extend(extra.clone());
            }
            serde_json::from_value(m).unwrap()
        };
        let document = serde_json::json!({ "file_id": "f" });
        let animation = message(serde_json::json!({ "animation": document, "document": document }));
        assert!(matches!(
            animation.content(),
            MessageContent::File(FileKind::Animation, _)
        ));
        let location = serde_json::json!({ "latitude": 1.0, "longitude": 2.0 });
        let venue = message(
            serde_json::json!({ "venue": { "location": location, "title": "Shop" }, "location": location }),
        );
        assert!(matches!(venue.content(), MessageContent::Venue(v) if v.title == "Shop"));
        assert!(matches!(
            message(serde_json::json!({ "location": location })).content(),
            MessageContent::Location(_)
        ));
        assert!(matches!(
            message(serde_json::json!({ "new_chat_title": "T" })).content(),
            MessageContent::Service
        ));
    }
}
