//! From a BlueBubbles webhook to normalised events. The conversation is the chat (a direct
//! chat or a group); our own messages echoed back (`isFromMe`) are dropped, never answered.

use serde::Deserialize;

use super::super::{ParseError, status_report};
use concierge_domain::{
    ChannelId, ContactId, Content, DeliveryStatus, EventId, EventKind, InboundEvent,
    InboundMessage, MediaKind, MediaRef, PlatformMessageId, now_millis,
};

#[derive(Debug, Deserialize)]
struct Webhook {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    guid: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    handle: Option<Handle>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    error: Option<i64>,
    #[serde(default)]
    date_created: Option<i64>,
    #[serde(default)]
    date_read: Option<i64>,
    #[serde(default)]
    date_delivered: Option<i64>,
    #[serde(default)]
    is_from_me: bool,
    #[serde(default)]
    associated_message_guid: Option<String>,
    #[serde(default)]
    associated_message_type: Option<serde_json::Value>,
    #[serde(default)]
    thread_originator_guid: Option<String>,
    #[serde(default)]
    chats: Vec<Chat>,
    #[serde(default)]
    temp_guid: Option<String>,
    /// Not 0 for group events (members added, renamed…), which say nothing.
    #[serde(default)]
    item_type: Option<i64>,
    #[serde(default)]
    group_action_type: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Handle {
    #[serde(default)]
    address: Option<String>,
    /// `iMessage` or `SMS`: the first part of a one-to-one chat's guid.
    #[serde(default)]
    service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    guid: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    transfer_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    guid: String,
}

#[derive(Debug, Deserialize)]
struct Typing {
    guid: String,
    /// `false` when the customer stopped typing: nothing to show.
    #[serde(default = "shown")]
    display: bool,
}

fn shown() -> bool {
    true
}

/// The emoji of a tapback, by BlueBubbles' name for it.
fn tapback_emoji(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "love" => "❤️",
        "like" => "👍",
        "dislike" => "👎",
        "laugh" => "😂",
        "emphasize" => "‼️",
        "question" => "❓",
        _ => return None,
    })
}

/// BlueBubbles' name for a reaction we send, from its emoji.
pub fn tapback_name(emoji: &str) -> Option<&'static str> {
    ["love", "like", "dislike", "laugh", "emphasize", "question"]
        .into_iter()
        .find(|name| tapback_emoji(name) == Some(emoji))
}

fn media_kind(mime: Option<&str>) -> MediaKind {
    match mime.and_then(|m| m.split('/').next()) {
        Some("image") => MediaKind::Image,
        Some("audio") => MediaKind::Audio,
        Some("video") => MediaKind::Video,
        _ => MediaKind::Document,
    }
}

pub fn parse(channel: &ChannelId, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    let webhook: Webhook = serde_json::from_slice(body).map_err(|e| {
        ParseError(format!(
            "not a BlueBubbles webhook ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let data = webhook.data;
    let message = || {
        serde_json::from_value::<Message>(data.clone())
            .map_err(|_| ParseError(format!("a {} without a readable message", webhook.kind)))
    };
    match webhook.kind.as_str() {
        "new-message" => new_message(channel, message()?),
        "updated-message" => Ok(updated_message(channel, message()?)),
        "message-send-error" => Ok(send_error(channel, message()?)),
        "typing-indicator" => {
            let typing: Typing = serde_json::from_value(data)
                .map_err(|_| ParseError("a typing indicator without a chat".to_string()))?;
            if !typing.display {
                return Ok(Vec::new());
            }
            let Ok(contact) = ContactId::parse(typing.guid) else {
                return Ok(Vec::new());
            };
            let at = now_millis();
            let Ok(event_id) = EventId::parse(format!("typing:{}:{at}", contact)) else {
                return Ok(Vec::new());
            };
            Ok(vec![InboundEvent {
                channel: channel.clone(),
                event_id,
                contact,
                aliases: Vec::new(),
                at,
                kind: EventKind::Typing,
            }])
        }
        other => {
            tracing::debug!(%channel, kind = %other.chars().take(40).collect::<String>(), "a BlueBubbles event we do not use");
            Ok(Vec::new())
        }
    }
}

/// The chat of a message: the conversation.
fn chat(message: &Message) -> Option<ContactId> {
    message
        .chats
        .first()
        .and_then(|c| ContactId::parse(c.guid.clone()).ok())
}

fn new_message(channel: &ChannelId, message: Message) -> Result<Vec<InboundEvent>, ParseError> {
    if message.is_from_me {
        // Our own send, echoed back by the server: already stored, never answered.
        return Ok(Vec::new());
    }
    if message.item_type.unwrap_or(0) != 0 || message.group_action_type.unwrap_or(0) != 0 {
        // A group event (someone added, the chat renamed): nothing to answer.
        return Ok(Vec::new());
    }
    let contact = chat(&message).ok_or_else(|| ParseError("a message without a chat".into()))?;
    let at = message.date_created.unwrap_or_else(now_millis);
    let text = message.text.clone().filter(|t| !t.is_empty());
    let tapback = message
        .associated_message_type
        .as_ref()
        .and_then(|t| t.as_str())
        .map(str::to_string);
    let mut contents = Vec::new();
    if let (Some(target), Some(kind)) = (&message.associated_message_guid, &tapback) {
        // "p:0/<guid>" (part 0 of the message) or "bp:<guid>"; "-love" removes a love.
        let target = target.rsplit('/').next().unwrap_or(target);
        let target = target.strip_prefix("bp:").unwrap_or(target).to_string();
        let removed = kind.starts_with('-');
        match tapback_emoji(kind.trim_start_matches('-')) {
            Some(emoji) => contents.push(Content::Reaction {
                target,
                emoji: if removed {
                    String::new()
                } else {
                    emoji.to_string()
                },
            }),
            None => contents.push(Content::Unsupported {
                kind: format!("tapback:{}", kind.chars().take(30).collect::<String>()),
            }),
        }
    } else {
        for (i, attachment) in message.attachments.iter().enumerate() {
            contents.push(Content::Media {
                kind: media_kind(attachment.mime_type.as_deref()),
                mime: attachment.mime_type.clone(),
                caption: if i == 0 {
                    text.clone().or_else(|| attachment.transfer_name.clone())
                } else {
                    attachment.transfer_name.clone()
                },
                media: MediaRef(attachment.guid.clone()),
                kept: None,
            });
        }
        if contents.is_empty() {
            contents.push(match &text {
                Some(text) => Content::text(text.clone()),
                None => Content::Unsupported {
                    kind: "empty".to_string(),
                },
            });
        }
    }
    let reply_to = message
        .thread_originator_guid
        .clone()
        .and_then(|g| PlatformMessageId::parse(g).ok());
    let display_name = message
        .handle
        .as_ref()
        .and_then(|h| h.address.as_deref())
        .and_then(concierge_domain::display_name);
    let mut events = Vec::with_capacity(contents.len());
    for (n, content) in contents.into_iter().enumerate() {
        let id = if n == 0 {
            message.guid.clone()
        } else {
            format!("{}:{n}", message.guid)
        };
        events.push(InboundEvent {
            channel: channel.clone(),
            event_id: EventId::parse(id.clone()).map_err(|e| ParseError(e.to_string()))?,
            contact: contact.clone(),
            aliases: Vec::new(),
            at,
            kind: EventKind::Message(InboundMessage {
                platform_id: PlatformMessageId::parse(id).map_err(|e| ParseError(e.to_string()))?,
                content,
                reply_to: reply_to.clone(),
                display_name: display_name.clone(),
                over_budget: None,
            }),
        });
    }
    Ok(events)
}

/// Delivered and read receipts for our own messages.
fn updated_message(channel: &ChannelId, message: Message) -> Vec<InboundEvent> {
    // The server's webhooks leave `chats` out of an updated message (its socket events carry
    // them): a one-to-one chat's guid is then `service;-;address` of the handle.
    let (Some(contact), Ok(target)) = (
        chat(&message).or_else(|| direct_chat(&message)),
        PlatformMessageId::parse(message.guid.clone()),
    ) else {
        return Vec::new();
    };
    if !message.is_from_me {
        return Vec::new();
    }
    let (name, status, at) = match (message.date_read, message.date_delivered) {
        (Some(at), _) => ("read", DeliveryStatus::Read, at),
        (None, Some(at)) => ("delivered", DeliveryStatus::Delivered, at),
        _ => return Vec::new(),
    };
    status_report(
        channel,
        contact,
        Vec::new(),
        target,
        name,
        status,
        at,
        false,
    )
}

/// The one-to-one chat of a message that names only its handle.
fn direct_chat(message: &Message) -> Option<ContactId> {
    let handle = message.handle.as_ref()?;
    let address = handle.address.as_deref().filter(|a| !a.is_empty())?;
    let service = handle.service.as_deref().unwrap_or("iMessage");
    ContactId::parse(format!("{service};-;{address}")).ok()
}

/// One of our messages failed; reported under its guid and the temporary guid we sent it with.
fn send_error(channel: &ChannelId, message: Message) -> Vec<InboundEvent> {
    let Some(contact) = chat(&message) else {
        return Vec::new();
    };
    let code = message.error.map(|e| e.to_string());
    let failed = DeliveryStatus::Failed {
        reason: format!(
            "the Mac could not send the message (error {})",
            code.as_deref().unwrap_or("unknown")
        ),
        code,
    };
    let at = message.date_created.unwrap_or_else(now_millis);
    let mut events = Vec::new();
    for id in std::iter::once(&message.guid).chain(message.temp_guid.as_ref()) {
        if let Ok(target) = PlatformMessageId::parse(id.clone()) {
            events.extend(status_report(
                channel,
                contact.clone(),
                Vec::new(),
                target,
                "failed",
                failed.clone(),
                at,
                false,
            ));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn channel() -> ChannelId {
        ChannelId::parse("imessage").unwrap()
    }

    #[test]
    fn tapback_names_and_emoji_round_trip() {
        for name in ["love", "like", "dislike", "laugh", "emphasize", "question"] {
            let emoji = tapback_emoji(name).unwrap();
            assert_eq!(tapback_name(emoji), Some(name));
        }
        assert_eq!(tapback_name("🦄"), None);
    }

    #[test]
    fn unknown_events_are_ignored_not_errors() {
        let body = br#"{"type":"group-name-change","data":{"guid":"x"}}"#;
        assert!(parse(&channel(), body).unwrap().is_empty());
        assert!(parse(&channel(), b"nope").is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&channel(), &bytes);
        }

        #[test]
        fn random_data_never_panics(
            kind in prop_oneof![
                Just("new-message".to_string()),
                Just("updated-message".to_string()),
                Just("message-send-error".to_string()),
                Just("typing-indicator".to_string()),
                "[a-z-]{0,12}",
            ],
            guid in ".{0,20}",
            text in proptest::option::of(".{0,40}"),
            from_me in any::<bool>(),
            associated in proptest::option::of(".{0,20}"),
            tapback in proptest::option::of(prop_oneof![Just("love".to_string()), Just("-like".to_string()), ".{0,8}"]),
            chat in proptest::option::of(".{0,30}"),
            read in proptest::option::of(any::<i64>()),
        ) {
            let body = serde_json::json!({
                "type": kind,
                "data": {
                    "guid": guid, "text": text, "isFromMe": from_me,
                    "associatedMessageGuid": associated, "associatedMessageType": tapback,
                    "chats": chat.map(|c| vec![serde_json::json!({ "guid": c })]).unwrap_or_default(),
                    "dateRead": read, "attachments": [{ "guid": "a", "mimeType": null }],
                }
            });
            let _ = parse(&channel(), &serde_json::to_vec(&body).unwrap());
        }
    }
}
