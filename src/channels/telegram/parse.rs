//! From a Telegram `Update` (teloxide-core's types) to normalised events. The conversation
//! is the chat; a message's platform id is `<chat>:<message id>` (ids are per chat).

use serde::Deserialize;
use serde::de::IgnoredAny;
use teloxide_core::types::{
    MaybeInaccessibleMessage, Message, MessageKind, ReactionType, Update, UpdateKind,
};

use super::super::ParseError;
use crate::domain::{
    ChannelId, Choice, ContactId, Content, EventId, EventKind, InboundEvent, InboundMessage,
    MediaKind, MediaRef, PlatformMessageId, now_millis,
};

/// Our id of a Telegram message.
pub fn message_id(chat: i64, message: i32) -> String {
    format!("{chat}:{message}")
}

pub fn parse(channel: &ChannelId, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    Ok(events(channel, &read_update(body)?))
}

/// Reads an `Update` from its JSON text (shared by the webhook and polling).
pub fn read_update(body: &[u8]) -> Result<Update, ParseError> {
    let unreadable = |e: serde_json::Error| {
        ParseError(format!(
            "not a Telegram update ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    };
    // teloxide-core 0.13 panics (an `unwrap` in its deserializer) on a `message_reaction`
    // with neither `user` nor `actor_chat`: such an update is refused before it reads it.
    let check: ReactionCheck = serde_json::from_slice(body).map_err(unreadable)?;
    if check
        .message_reaction
        .is_some_and(|r| r.user.is_none() && r.actor_chat.is_none())
    {
        return Err(ParseError(
            "a message_reaction without a user or an actor_chat".to_string(),
        ));
    }
    serde_json::from_slice(body).map_err(unreadable)
}

/// The keys [`read_update`] checks before teloxide reads the update.
#[derive(Deserialize)]
struct ReactionCheck {
    #[serde(default)]
    message_reaction: Option<ReactionActor>,
}

#[derive(Deserialize)]
struct ReactionActor {
    #[serde(default)]
    user: Option<IgnoredAny>,
    #[serde(default)]
    actor_chat: Option<IgnoredAny>,
}

/// The events of one update (shared by the webhook and polling).
pub fn events(channel: &ChannelId, update: &Update) -> Vec<InboundEvent> {
    let event_id = format!("u{}", update.id.0);
    let event = |contact: String, at: i64, kind: EventKind| -> Option<InboundEvent> {
        Some(InboundEvent {
            channel: channel.clone(),
            event_id: EventId::parse(event_id.clone()).ok()?,
            contact: ContactId::parse(contact).ok()?,
            aliases: Vec::new(),
            at,
            kind,
        })
    };
    let found = match &update.kind {
        UpdateKind::Message(message) if start_parameter(message).is_some() => event(
            message.chat.id.0.to_string(),
            message.date.timestamp_millis(),
            EventKind::Started {
                source: start_parameter(message).flatten(),
            },
        ),
        UpdateKind::Message(message) if !matches!(message.kind, MessageKind::Common(_)) => {
            // Service messages (members joined, title changed, pinned…): nothing said.
            tracing::debug!(%channel, update = update.id.0, "a Telegram service message");
            None
        }
        UpdateKind::Message(message) => {
            let inbound = inbound(message);
            event(
                message.chat.id.0.to_string(),
                message.date.timestamp_millis(),
                EventKind::Message(inbound),
            )
        }
        UpdateKind::EditedMessage(message) => {
            let inbound = inbound(message);
            event(
                message.chat.id.0.to_string(),
                message
                    .edit_date()
                    .map(|d| d.timestamp_millis())
                    .unwrap_or_else(now_millis),
                EventKind::Edit {
                    target: inbound.platform_id,
                    content: inbound.content,
                },
            )
        }
        UpdateKind::CallbackQuery(query) => {
            let data = query.data.clone().unwrap_or_default();
            let (chat, tapped, markup) = match &query.message {
                Some(MaybeInaccessibleMessage::Regular(message)) => {
                    (message.chat.id.0, message.id.0, message.reply_markup())
                }
                // Too old for Telegram to show us: the tap still counts.
                Some(MaybeInaccessibleMessage::Inaccessible(message)) => {
                    (message.chat.id.0, message.message_id.0, None)
                }
                None => return Vec::new(),
            };
            // The title the customer saw: the button's text on the message they tapped.
            let title =
                markup
                    .and_then(|markup| {
                        markup.inline_keyboard.iter().flatten().find_map(|button| {
                            match &button.kind {
                                teloxide_core::types::InlineKeyboardButtonKind::CallbackData(d)
                                    if *d == data =>
                                {
                                    Some(button.text.clone())
                                }
                                _ => None,
                            }
                        })
                    })
                    .unwrap_or_else(|| data.clone());
            let Ok(platform_id) = PlatformMessageId::parse(format!("cbq:{}", query.id.0)) else {
                return Vec::new();
            };
            event(
                chat.to_string(),
                now_millis(),
                EventKind::Message(InboundMessage {
                    platform_id,
                    content: Content::Choice(Choice::new(data, title)),
                    reply_to: PlatformMessageId::parse(message_id(chat, tapped)).ok(),
                    display_name: crate::domain::display_name(&query.from.full_name()),
                    over_budget: None,
                }),
            )
        }
        UpdateKind::MessageReaction(reaction) => {
            // An empty emoji means the reaction was taken back; a custom or paid one is kept
            // as a marker rather than read as a removal.
            let emoji = reaction
                .new_reaction
                .iter()
                .find_map(|r| match r {
                    ReactionType::Emoji { emoji } => Some(emoji.clone()),
                    _ => None,
                })
                .or_else(|| (!reaction.new_reaction.is_empty()).then(|| "★".to_string()))
                .unwrap_or_default();
            let Ok(platform_id) = PlatformMessageId::parse(format!("reaction:{}", update.id.0))
            else {
                return Vec::new();
            };
            event(
                reaction.chat.id.0.to_string(),
                reaction.date.timestamp_millis(),
                EventKind::Message(InboundMessage {
                    platform_id,
                    content: Content::Reaction {
                        target: message_id(reaction.chat.id.0, reaction.message_id.0),
                        emoji,
                    },
                    reply_to: None,
                    display_name: reaction
                        .user()
                        .and_then(|u| crate::domain::display_name(&u.full_name())),
                    over_budget: None,
                }),
            )
        }
        UpdateKind::Error(raw) => {
            tracing::warn!(%channel, update = update.id.0, "a Telegram update kind we do not know; acknowledged");
            tracing::debug!(%channel, raw = %raw, "the unknown update");
            None
        }
        _ => {
            tracing::debug!(%channel, update = update.id.0, "a Telegram update kind we do not use");
            None
        }
    };
    found.into_iter().collect()
}

/// For a `/start` command: `Some(parameter)` (the deep link's payload, when any).
fn start_parameter(message: &Message) -> Option<Option<String>> {
    let text = message.text()?;
    let rest = text.strip_prefix("/start")?;
    // "/start", "/start@our_bot", "/start PAYLOAD"; not "/started".
    let rest = match rest.split_once(' ') {
        Some((bot, payload)) if bot.is_empty() || bot.starts_with('@') => payload,
        None if rest.is_empty() || rest.starts_with('@') => "",
        _ => return None,
    };
    let payload = rest.trim();
    Some((!payload.is_empty()).then(|| payload.chars().take(256).collect()))
}

fn inbound(message: &Message) -> InboundMessage {
    let caption = message.caption().map(str::to_string);
    let content = if let Some(text) = message.text() {
        Content::text(text)
    } else if let Some(photos) = message.photo() {
        // The largest size the customer sent.
        match photos.iter().max_by_key(|p| p.width * p.height) {
            Some(photo) => Content::Media {
                kind: MediaKind::Image,
                mime: Some("image/jpeg".to_string()),
                caption,
                media: MediaRef(photo.file.id.0.clone()),
            },
            None => Content::Unsupported {
                kind: "photo".to_string(),
            },
        }
    } else if let Some(document) = message.document() {
        Content::Media {
            kind: MediaKind::Document,
            mime: document.mime_type.as_ref().map(|m| m.to_string()),
            caption: caption.or_else(|| document.file_name.clone()),
            media: MediaRef(document.file.id.0.clone()),
        }
    } else if let Some(location) = message.location() {
        Content::Location {
            latitude: location.latitude,
            longitude: location.longitude,
            name: None,
            address: None,
        }
    } else {
        Content::Unsupported {
            kind: "message".to_string(),
        }
    };
    let chat = message.chat.id.0;
    InboundMessage {
        platform_id: PlatformMessageId::parse(message_id(chat, message.id.0))
            .unwrap_or_else(|_| PlatformMessageId::parse("invalid").expect("a valid literal")),
        content,
        reply_to: message
            .reply_to_message()
            .and_then(|r| PlatformMessageId::parse(message_id(chat, r.id.0)).ok()),
        display_name: message
            .from
            .as_ref()
            .and_then(|u| crate::domain::display_name(&u.full_name())),
        over_budget: None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn channel() -> ChannelId {
        ChannelId::parse("telegram").unwrap()
    }

    #[test]
    fn service_messages_say_nothing() {
        let body = serde_json::json!({
            "update_id": 1,
            "message": {
                "message_id": 9, "date": 1767226200,
                "chat": { "id": -100123, "type": "supergroup", "title": "Shop" },
                "from": { "id": 1, "is_bot": false, "first_name": "T" },
                "new_chat_members": [{ "id": 2, "is_bot": true, "first_name": "Concierge" }]
            }
        });
        assert!(
            parse(&channel(), &serde_json::to_vec(&body).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    /// Found by the `telegram` fuzz target (tests/fixtures/fuzz/telegram/crash-04988b6c…):
    /// teloxide-core panicked on a reaction whose actor is missing.
    #[test]
    fn a_reaction_without_an_actor_is_an_error_not_a_panic() {
        let reaction = |actor: serde_json::Value| {
            let mut reaction = serde_json::json!({
                "chat": { "id": 3, "type": "private", "first_name": "T" },
                "message_id": 77, "date": 1767226400,
                "old_reaction": [], "new_reaction": [{ "type": "emoji", "emoji": "👍" }],
            });
            if let (Some(reaction), Some(actor)) = (reaction.as_object_mut(), actor.as_object()) {
                reaction.extend(actor.clone());
            }
            serde_json::to_vec(&serde_json::json!({ "update_id": 1, "message_reaction": reaction }))
                .unwrap()
        };
        for actor in [
            serde_json::json!({}),
            serde_json::json!({ "user": null }),
            serde_json::json!({ "usr": { "id": 1, "is_bot": false, "first_name": "T" } }),
        ] {
            assert!(
                parse(&channel(), &reaction(actor.clone())).is_err(),
                "{actor}"
            );
        }
        let user = serde_json::json!({ "user": { "id": 1, "is_bot": false, "first_name": "T" } });
        assert_eq!(parse(&channel(), &reaction(user)).unwrap().len(), 1);
        let chat =
            serde_json::json!({ "actor_chat": { "id": -1001, "type": "channel", "title": "C" } });
        assert_eq!(parse(&channel(), &reaction(chat)).unwrap().len(), 1);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&channel(), &bytes);
        }

        #[test]
        fn random_updates_never_panic(
            update_id in any::<i64>(),
            kind in prop_oneof![
                Just("message".to_string()),
                Just("edited_message".to_string()),
                Just("callback_query".to_string()),
                Just("message_reaction".to_string()),
                "[a-z_]{1,12}",
            ],
            chat in any::<i64>(),
            text in proptest::option::of(".{0,40}"),
            data in proptest::option::of(".{0,20}"),
        ) {
            let message = serde_json::json!({
                "message_id": 1, "date": 1767226200, "text": text,
                "chat": { "id": chat, "type": "private" },
                "from": { "id": 1, "is_bot": false, "first_name": "T" },
            });
            let payload = match kind.as_str() {
                "callback_query" => serde_json::json!({
                    "id": "q", "from": { "id": 1, "is_bot": false, "first_name": "T" },
                    "message": message, "chat_instance": "c", "data": data,
                }),
                "message_reaction" => serde_json::json!({
                    "chat": { "id": chat, "type": "private" }, "message_id": 1, "date": 1,
                    "old_reaction": [], "new_reaction": [{ "type": "emoji", "emoji": text }],
                }),
                _ => message,
            };
            let body = serde_json::json!({ "update_id": update_id, kind: payload });
            let _ = parse(&channel(), &serde_json::to_vec(&body).unwrap());
        }
    }
}
