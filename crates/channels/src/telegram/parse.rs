//! From a Telegram `Update` (our own wire types, [`super::wire`]) to normalised events. The
//! conversation is the chat; a message's platform id is `<chat>:<message id>` (ids are per
//! chat).

use super::super::ParseError;
use super::wire::{FileKind, FileRef, Message, MessageContent, ReactionType, Update, UpdateKind};
use concierge_domain::{
    ChannelId, Choice, ContactCard, ContactId, Content, EventId, EventKind, InboundEvent,
    InboundMessage, MediaKind, MediaRef, PlatformMessageId, now_millis,
};

/// Our id of a Telegram message.
pub fn message_id(chat: i64, message: i64) -> String {
    format!("{chat}:{message}")
}

/// The events of a webhook body, read once.
pub fn parse(channel: &ChannelId, body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    Ok(events(channel, &read_update(body)?))
}

/// Reads an `Update` from its JSON text, in one pass.
pub fn read_update(body: &[u8]) -> Result<Update, ParseError> {
    serde_json::from_slice(body).map_err(|e| {
        ParseError(format!(
            "not a Telegram update ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// The id of a button tap that no event carries (a button of an inline message, which the
/// gateway never sends): answered all the same, so its spinner stops.
pub fn stray_callback(update: &Update) -> Option<&str> {
    match &update.kind {
        UpdateKind::CallbackQuery(query) if query.message.is_none() => Some(&query.id),
        _ => None,
    }
}

/// The events of one update (shared by the webhook and polling).
pub fn events(channel: &ChannelId, update: &Update) -> Vec<InboundEvent> {
    let event_id = format!("u{}", update.update_id);
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
            message.chat.id.to_string(),
            millis(message.date),
            EventKind::Started {
                source: start_parameter(message).flatten(),
            },
        ),
        UpdateKind::Message(message) if !message.is_said() => {
            // Service messages (members joined, title changed, pinned…): nothing said.
            tracing::debug!(%channel, update = update.update_id, "a Telegram service message");
            None
        }
        UpdateKind::Message(message) => {
            let inbound = inbound(message);
            event(
                message.chat.id.to_string(),
                millis(message.date),
                EventKind::Message(inbound),
            )
        }
        UpdateKind::EditedMessage(message) => {
            let inbound = inbound(message);
            event(
                message.chat.id.to_string(),
                message
                    .edit_date
                    .filter(|_| message.is_said())
                    .map(millis)
                    .unwrap_or_else(now_millis),
                EventKind::Edit {
                    target: inbound.platform_id,
                    content: inbound.content,
                },
            )
        }
        UpdateKind::CallbackQuery(query) => {
            let data = query.data.clone().unwrap_or_default();
            let Some(message) = &query.message else {
                tracing::debug!(%channel, update = update.update_id, "a tap on a button of an inline message; answered, not stored");
                return Vec::new();
            };
            let (chat, tapped) = (message.chat.id, message.message_id);
            // The title the customer saw: the button's text on the message they tapped
            // (none on a message too old for Telegram to show us: the tap still counts).
            let title = message
                .reply_markup
                .as_ref()
                .filter(|_| message.date != 0 && message.is_said())
                .and_then(|markup| {
                    markup
                        .inline_keyboard
                        .iter()
                        .flatten()
                        .find(|button| button.callback_data.as_deref() == Some(data.as_str()))
                        .map(|button| button.text.clone())
                })
                .unwrap_or_else(|| data.clone());
            let Ok(platform_id) = PlatformMessageId::parse(format!("cbq:{}", query.id)) else {
                return Vec::new();
            };
            event(
                chat.to_string(),
                now_millis(),
                EventKind::Message(InboundMessage {
                    platform_id,
                    content: Content::Choice(Choice::new(data, title)),
                    reply_to: PlatformMessageId::parse(message_id(chat, tapped)).ok(),
                    display_name: concierge_domain::display_name(&query.from.full_name()),
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
                    ReactionType::Other => None,
                })
                .or_else(|| (!reaction.new_reaction.is_empty()).then(|| "★".to_string()))
                .unwrap_or_default();
            let Ok(platform_id) =
                PlatformMessageId::parse(format!("reaction:{}", update.update_id))
            else {
                return Vec::new();
            };
            event(
                reaction.chat.id.to_string(),
                millis(reaction.date),
                EventKind::Message(InboundMessage {
                    platform_id,
                    content: Content::Reaction {
                        target: message_id(reaction.chat.id, reaction.message_id),
                        emoji,
                    },
                    reply_to: None,
                    display_name: reaction
                        .user
                        .as_ref()
                        .and_then(|u| concierge_domain::display_name(&u.full_name())),
                    over_budget: None,
                }),
            )
        }
        UpdateKind::Unsupported { kind, .. }
            if super::wire::KNOWN_UNUSED.contains(&kind.as_str()) =>
        {
            tracing::debug!(%channel, update = update.update_id, %kind, "a Telegram update kind we do not use");
            None
        }
        UpdateKind::Unsupported { kind, raw } => {
            tracing::warn!(%channel, update = update.update_id, kind = %kind.chars().take(40).collect::<String>(), "a Telegram update kind we do not know (or cannot read); acknowledged");
            tracing::debug!(%channel, raw = %raw, "the unknown update");
            None
        }
    };
    found.into_iter().collect()
}

/// Unix seconds to milliseconds.
/// A Bot API date in milliseconds; a date of 0 (what Telegram puts on a message it no longer
/// gives, and what some recordings hold) is no date: the time we received it.
fn millis(seconds: i64) -> i64 {
    if seconds <= 0 {
        return now_millis();
    }
    seconds.saturating_mul(1000)
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

/// A file message as media the agents are told about: its kind, and what the customer wrote
/// with it, else what describes it (a sticker's emoji, a sound's or video's length).
fn file_content(kind: FileKind, file: &FileRef, caption: Option<String>) -> Content {
    let media_kind = match kind {
        FileKind::Audio | FileKind::Voice => MediaKind::Audio,
        FileKind::Sticker => MediaKind::Sticker,
        FileKind::Animation | FileKind::Video | FileKind::VideoNote => MediaKind::Video,
    };
    let described = match kind {
        FileKind::Sticker => file.emoji.clone(),
        FileKind::Voice => file.duration.map(|d| format!("voice note, {d} s")),
        FileKind::VideoNote => file.duration.map(|d| format!("video note, {d} s")),
        FileKind::Animation => Some("GIF".to_string()),
        FileKind::Audio | FileKind::Video => file
            .file_name
            .clone()
            .or_else(|| file.duration.map(|d| format!("{d} s"))),
    };
    Content::Media {
        kind: media_kind,
        mime: file.mime_type.clone(),
        caption: caption.or(described).filter(|c| !c.is_empty()),
        media: MediaRef(file.file_id.clone()),
        kept: None,
    }
}

fn inbound(message: &Message) -> InboundMessage {
    let caption = message.caption.clone();
    let content = match message.content() {
        MessageContent::Text(text) => Content::text(text),
        // The largest size the customer sent.
        MessageContent::Photo(photos) => {
            match photos
                .iter()
                .max_by_key(|p| p.width.saturating_mul(p.height))
            {
                Some(photo) => Content::Media {
                    kind: MediaKind::Image,
                    mime: Some("image/jpeg".to_string()),
                    caption,
                    media: MediaRef(photo.file_id.clone()),
                    kept: None,
                },
                None => Content::Unsupported {
                    kind: "photo".to_string(),
                },
            }
        }
        MessageContent::Document(document) => Content::Media {
            kind: MediaKind::Document,
            mime: document.mime_type.clone(),
            caption: caption.or_else(|| document.file_name.clone()),
            media: MediaRef(document.file_id.clone()),
            kept: None,
        },
        MessageContent::Location(location) => Content::Location {
            latitude: location.latitude,
            longitude: location.longitude,
            name: None,
            address: None,
        },
        MessageContent::Venue(venue) => Content::Location {
            latitude: venue.location.latitude,
            longitude: venue.location.longitude,
            name: concierge_domain::display_name(&venue.title),
            address: venue
                .address
                .as_deref()
                .and_then(concierge_domain::display_name),
        },
        MessageContent::File(kind, file) => file_content(kind, file, caption),
        MessageContent::Contact(contact) => Content::Contacts {
            contacts: vec![ContactCard::new(
                &[
                    Some(contact.first_name.as_str()),
                    contact.last_name.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
                [contact.phone_number.clone()],
                [],
            )],
        },
        // What the customer threw shows as its emoji and the value it landed on.
        MessageContent::Dice(dice) => Content::text(format!(
            "{} {}",
            concierge_domain::clip_text(&dice.emoji, 8),
            dice.value
        )),
        MessageContent::Other(kind) => Content::Unsupported {
            kind: kind.to_string(),
        },
        MessageContent::Service => Content::Unsupported {
            kind: "message".to_string(),
        },
    };
    let chat = message.chat.id;
    InboundMessage {
        platform_id: PlatformMessageId::parse(message_id(chat, message.message_id))
            .unwrap_or_else(|_| PlatformMessageId::parse("invalid").expect("a valid literal")),
        content,
        reply_to: message
            .reply_to_message
            .as_ref()
            .filter(|_| message.is_said())
            .and_then(|r| PlatformMessageId::parse(message_id(chat, r.message_id)).ok()),
        display_name: message
            .from
            .as_ref()
            .and_then(|u| concierge_domain::display_name(&u.full_name())),
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
    /// teloxide-core (whose types we used before our own) panicked on a reaction whose actor
    /// is missing; it stays an error, refused by the one decode.
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

    /// One line per event: what the adapter made of it, without the time of a tap (ours).
    fn summary(event: &InboundEvent) -> String {
        let content = |content: &Content| match content {
            Content::Text { body } => format!("text {body:?}"),
            Content::Media {
                kind,
                mime,
                caption,
                media,
                ..
            } => format!("{kind:?} {mime:?} {caption:?} {}", media.0),
            Content::Location {
                latitude,
                longitude,
                ..
            } => format!("location {latitude},{longitude}"),
            Content::Choice(choice) => format!("choice {} {:?}", choice.id, choice.title),
            Content::Reaction { target, emoji } => format!("reaction {target} {emoji:?}"),
            Content::Unsupported { kind } => format!("unsupported {kind}"),
            other => format!("{other:?}"),
        };
        let kind = match &event.kind {
            EventKind::Message(m) => format!(
                "message {} {} reply={:?} from={:?}",
                m.platform_id.as_str(),
                content(&m.content),
                m.reply_to.as_ref().map(|r| r.as_str().to_string()),
                m.display_name
            ),
            EventKind::Started { source } => format!("started {source:?}"),
            EventKind::Edit { target, content: c } => {
                format!("edit {} {}", target.as_str(), content(c))
            }
            other => format!("{other:?}"),
        };
        let tap = matches!(&event.kind, EventKind::Message(m) if m.platform_id.as_str().starts_with("cbq:"));
        // A tap, or a message of no date (0), is dated when it was read.
        let at = if tap {
            String::new()
        } else if event.at > 1_700_000_000_000 && event.at >= now_millis() - 60_000 {
            " at=received".to_string()
        } else {
            format!(" at={}", event.at)
        };
        format!(
            "{} {}{at} {kind}",
            event.event_id.as_str(),
            event.contact.as_str()
        )
    }

    /// Telegram bodies recorded or published by others (teloxide's fixtures, python-telegram-bot
    /// serialisations, a 2018 bot's log; see tests/fixtures/third-party/inbound-samples.md),
    /// each read without error into the events below: media kinds (stickers, voice notes,
    /// videos, GIFs) as media with their file id, a venue as a location with its name and
    /// address, a contact as a contact card, a dice as its emoji and value; the three 2018
    /// bodies whose files lack `file_unique_id` (required since Bot API 4.5, never read
    /// here) arrive all the same.
    #[test]
    fn third_party_samples_read_as_before() {
        let samples: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("third_party_samples.json")).unwrap();
        let expected = EXPECTED_SAMPLES;
        assert_eq!(samples.len(), expected.len());
        for (sample, (name, want)) in samples.iter().zip(expected) {
            assert_eq!(sample["name"], *name);
            let body = serde_json::to_vec(&sample["body"]).unwrap();
            let got: Vec<String> = parse(&ChannelId::parse("tg").unwrap(), &body)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .iter()
                .map(summary)
                .collect();
            assert_eq!(got, *want, "{name}");
        }
    }

    /// What each sample gives, in the file's order (see [`summary`]).
    const EXPECTED_SAMPLES: &[(&str, &[&str])] = &[
        (
            "teloxide:update:message:0",
            &[
                "u892252934 218485655 at=1569518342000 message 218485655:6557 text \"hello there\" reply=None from=Some(\"Waffle\")",
            ],
        ),
        (
            "teloxide:update:issue_1107:0",
            &[
                "u439432599 -1001293752024 at=1721592028000 message -1001293752024:134545 unsupported story reply=None from=Some(\"Wert\")",
            ],
        ),
        (
            "teloxide:update:issue_1107:1",
            &[
                "u439432600 -1001293752024 at=1721592580000 message -1001293752024:134546 text \"/report\" reply=Some(\"-1001293752024:134545\") from=Some(\"the Cable Guy\")",
            ],
        ),
        (
            "teloxide:update:de_private_chat_text_message:0",
            &[
                "u306197398 408258968 at=1581448857000 message 408258968:154 text \"4\" reply=None from=Some(\"Hirrolot\")",
            ],
        ),
        ("teloxide:update:pinned_message_works:0", &[]),
        (
            "teloxide:update:dice_works:0",
            &[
                "u573255266 -1001276785818 at=1596014550000 message -1001276785818:35410 text \"🎲 2\" reply=None from=Some(\"Hirrolot\")",
            ],
        ),
        ("teloxide:update:new_update_kind_error:0", &[]),
        ("teloxide:update:issue_523:0", &[]),
        (
            "teloxide:update:message_reaction_updated:0",
            &[
                "u71651249 -1002184233434 at=1721306082000 message reaction:71651249 reaction -1002184233434:35 \"🌭\" reply=None from=Some(\"shadowchain\")",
            ],
        ),
        (
            "teloxide:update:message_reaction_updated:1",
            &[
                "u767844136 -1002199793788 at=1723798597000 message reaction:767844136 reaction -1002199793788:2 \"\" reply=None from=None",
            ],
        ),
        ("teloxide:update:message_reaction_count_updated:0", &[]),
        (
            "teloxide:message:de_media_forwarded:0",
            &[
                "u700001 250918540 at=1567927221000 message 250918540:198283 Video Some(\"video/mp4\") Some(\"13 s\") BAADAgADpgQAAgX9qEud6QcgPiOAlhYE reply=None from=Some(\"Андрей Власов\")",
            ],
        ),
        (
            "teloxide:message:de_text:0",
            &[
                "u700002 250918540 at=1568289890000 message 250918540:199785 text \"Лол кек 😂\" reply=None from=Some(\"Андрей Власов\")",
            ],
        ),
        (
            "teloxide:message:de_sticker:0",
            &[
                "u700003 250918540 at=1568290188000 message 250918540:199787 Sticker None Some(\"😡\") CAACAgIAAxkBAAESLdBjMImep-J0W8XaTN6S_Lz1-j1QIQACIwADsND4DGmmygHGlyggKQQ reply=None from=Some(\"Андрей Власов\")",
            ],
        ),
        (
            "teloxide:message:de_image:0",
            &[
                "u700004 250918540 at=1568290622000 message 250918540:199791 Image Some(\"image/jpeg\") None AgADAgAD36sxG-PX0UvQSXIn9rccdw-ACA4ABAEAAwIAA3kAAyTcBAABFgQ reply=None from=Some(\"Андрей Власов\")",
            ],
        ),
        (
            "teloxide:message:issue_481:0",
            &["u700005 0 at=received message 0:0 location 0,0 reply=None from=None"],
        ),
        (
            "teloxide:message:parse_caption_entities:0",
            &[
                "u700006 27433968 at=1655671349000 message 27433968:3460 Image Some(\"image/jpeg\") Some(\"www.example.com\") AgACAgQAAxkBAAINhGKvijUVSn2i3980bQIIc1fqWGNCAAJpvDEbEmaBUfuA43fR-BnlAQADAgADeQADJAQ reply=None from=Some(\"Crax | rats addict\")",
            ],
        ),
        (
            "teloxide:message:topic_message:0",
            &[
                "u700007 -1001847508954 at=1675229140000 message -1001847508954:5 text \"blah\" reply=Some(\"-1001847508954:4\") from=Some(\"вафель'\")",
            ],
        ),
        ("teloxide:message:empty_message:0", &[]),
        (
            "teloxide:message:de_text:0 as edited_message",
            &["u700009 250918540 at=1568289950000 edit 250918540:199785 text \"Лол кек 😂\""],
        ),
        ("teloxide:cbq:deserialize:0", &[]),
        (
            "composed:callback_query with message+reply_markup",
            &[
                "u700011 1111111 message cbq:4382bfdwdsb323b2d9 choice approve:run-17 \"Approve\" reply=Some(\"1111111:4242\") from=Some(\"Ada\")",
            ],
        ),
        (
            "cxabot-2018:sticker",
            &[
                "u271683412 -1001319789908 at=1529560890000 message -1001319789908:193 Sticker None Some(\"💪\") CAADBQADHAADyIsGAAFzjQavel2uswI reply=None from=Some(\"Worakorn CXA\")",
            ],
        ),
        (
            "cxabot-2018:voice",
            &[
                "u271683418 -1001319789908 at=1529561021000 message -1001319789908:205 Audio Some(\"audio/ogg\") Some(\"voice note, 1 s\") AwADBQADJgADsdhYVfc01ObqFg9_Ag reply=None from=Some(\"Worakorn CXA\")",
            ],
        ),
        (
            "cxabot-2018:location",
            &[
                "u271683424 -1001319789908 at=1529561866000 message -1001319789908:217 location 13.67455,100.534625 reply=None from=Some(\"Worakorn CXA\")",
            ],
        ),
        (
            "cxabot-2018:contact",
            &[
                "u271683426 -1001319789908 at=1529561907000 message -1001319789908:221 Contacts { contacts: [ContactCard { name: \"Wundzen 💎\", phones: [\"0815432345\"], emails: [] }] } reply=None from=Some(\"Worakorn CXA\")",
            ],
        ),
        (
            "cxabot-2018:document",
            &[
                "u271683425 -1001319789908 at=1529561885000 message -1001319789908:219 Document Some(\"application/pdf\") Some(\"หน\\u{e31}งส\\u{e37}อ.pdf\") BQADBQADKQADsdhYVe_conWOrBsAAQI reply=None from=Some(\"Worakorn CXA\")",
            ],
        ),
        (
            "ptb-2024:document",
            &[
                "u880001 220428984 at=1714123014000 message 220428984:38 Document Some(\"image/jpeg\") Some(\"1119-0-4.jpg\") BQACAgIAAxkBAAMmZitxBqk6QbxSEqfSOFrsy1EeYFoAAjVNAAJoImFJ05fgBFlIMTU0BA reply=None from=Some(\"D\")",
            ],
        ),
        (
            "ptb-2024:voice",
            &[
                "u880002 220428984 at=1714121016000 message 220428984:19 Audio Some(\"audio/ogg\") Some(\"voice note, 2 s\") AwACAgIAAxkBAAMTZitpN09G4YxVXg5swK80bQK1CtYAAtBMAAJoImFJOs0IfBYLJw00BA reply=None from=Some(\"D\")",
            ],
        ),
        (
            "ptb-2024:photo",
            &[
                "u880003 220428984 at=1714215365000 message 220428984:136 Image Some(\"image/jpeg\") Some(\"asda\") AgACAgIAAxkBAAOIZizZxaWHjFlvzUaPp17Usx_0GvoAAhjcMRtcW2hJykncucOBkuwBAAMCAAN5AAM0BA reply=None from=Some(\"D\")",
            ],
        ),
        ("recorded:my_chat_member administrator", &[]),
    ];

    #[test]
    fn unknown_update_kinds_are_acknowledged_without_events() {
        for body in [
            serde_json::json!({ "update_id": 5, "future_kind": { "anything": [1, 2] } }),
            serde_json::json!({ "update_id": 6, "business_connection": {
                "id": "bc1", "user": { "id": 1, "is_bot": false, "first_name": "T" },
                "user_chat_id": 1, "date": 1767226200, "can_reply": true, "is_enabled": true } }),
            serde_json::json!({ "update_id": 7, "message": "not a message" }),
        ] {
            let events = parse(&channel(), &serde_json::to_vec(&body).unwrap());
            assert_eq!(events.map(|e| e.len()).ok(), Some(0), "{body}");
        }
    }

    /// No pre-parse: the one decode of the body (`Update`'s own `Deserialize`) is what
    /// refuses a reaction nobody made, and a getUpdates answer is read from its bytes
    /// straight into updates, an unreadable one keeping its id for the offset.
    #[test]
    fn each_body_is_decoded_in_one_pass() {
        let actorless = br#"{"update_id":1,"message_reaction":{"chat":{"id":3,"type":"private"},"message_id":7,"date":1,"old_reaction":[],"new_reaction":[]}}"#;
        assert!(serde_json::from_slice::<super::super::wire::Update>(actorless).is_err());
        let answer = br#"{"ok":true,"result":[
            {"update_id":10,"message":{"message_id":1,"date":1767226200,"chat":{"id":3,"type":"private"},"text":"hi"}},
            {"update_id":11,"message_reaction":{"chat":{"id":3},"message_id":1,"date":1,"new_reaction":[]}},
            {"no_id":true}
        ]}"#;
        let answer: super::super::wire::Answer<Vec<super::super::wire::Polled>> =
            serde_json::from_slice(answer).unwrap();
        let polled = answer.result.unwrap();
        use super::super::wire::Polled;
        assert!(
            matches!(&polled[0], Polled::Read(u) if u.update_id == 10 && events(&channel(), u).len() == 1)
        );
        assert!(matches!(
            polled[1],
            Polled::Unreadable {
                update_id: Some(11)
            }
        ));
        assert!(matches!(polled[2], Polled::Unreadable { update_id: None }));
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
