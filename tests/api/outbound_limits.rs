//! Outbound conformance: every request the WhatsApp, Telegram, Twilio and BlueBubbles adapters
//! send to their platform, driven through a running gateway as real replies are (the engine's
//! shaping of long replies included), is checked against the platforms' published limits, and
//! no part of a question or its options may be lost on the way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use concierge::app::Parts;
use concierge::domain::{
    Author, Choice, Content, DeliveryStatus, Direction, MediaKind, MediaRef, clip_text,
};
use concierge::orchestrator::{DecidedBy, Decision, Responder, ResponderError, Turn};
use hmac::{Hmac, Mac};
use http::Method;
use serde_json::{Map, Value, json};

use crate::fake_api::{FakeApi, Recorded, answer};
use crate::helpers::{Deployment, TestApp, conversation_in, eventually, spawn_in};

/// Violations this test finds in the adapters as they are, each left for a fix in product
/// code: (case, rule, why). A violation listed here is reported but does not fail the test; a
/// listed one that no longer happens does, so the list stays true.
const KNOWN_VIOLATIONS: &[(&str, &str, &str)] = &[];

// ---------------------------------------------------------------------------------------------
// The rule table. Figures confirmed from the platforms' published references (or, where noted,
// from the SDKs that transcribe them), looked up for this test:
//
// WhatsApp Cloud API (POST /{phone-number-id}/messages):
//   - every send: `messaging_product: "whatsapp"`, `recipient_type: "individual"`, `to` (or
//     the business-scoped `recipient`), `type`, and the object named by `type`; optional
//     `context.message_id`, `biz_opaque_callback_data` (≤ 512: the whatsapp-business typings
//     "Maximum 512 characters", whatsapp-api-js "an arbitrary 512B string"). Meta's syntax,
//     developers.facebook.com/documentation/business-messaging/whatsapp/messages/
//     interactive-reply-buttons-messages and …/interactive-list-messages.
//   - text: `text.body` 1–4096 chars, `preview_url` a boolean (whatsapp-api-js `Text`, the
//     api-evangelist Cloud API JSON schema `maxLength: 4096`, 360dialog's Cloud API docs).
//   - reply buttons: 1–3 buttons of `type: "reply"`, `reply.title` 1–20 chars and unique in
//     the message, `reply.id` ≤ 256 chars; `body.text` ≤ 1024; header/footer text ≤ 60
//     (Meta's reply-buttons page: "up to three"; whatsapp-api-js `Button`: "must be unique
//     within the message. Maximum length: 20 characters", id "Maximum length: 256"; Exotel's
//     spec table: body 1,024, footer 60, title 20, id 256).
//   - lists: `action.button` 1–20 chars, 1–10 sections, 1–10 rows across all sections, a
//     title on every section when there are several, section title ≤ 24, row `id` ≤ 200,
//     row `title` ≤ 24, `description` ≤ 72, `body.text` ≤ 4096, header text ≤ 60 (Meta's list
//     page: "up to 10 sections, with up to 10 rows for all sections combined";
//     whatsapp-api-js `ActionList`; botonic WHATSAPP_MAX_BUTTON_LIST_{CHARS=24,
//     DESCRIPTION_CHARS=72, ID_CHARS=200}; whatsapp-business typings "Maximum length: 200 /
//     24 / 72"). Row ids unique (a pick must say which row).
//   - media: exactly one of `id`/`link`; `caption` ≤ 1024 ("Maximum 1024 characters", Meta's
//     …/messages/image-messages page; the Cloud API media-object schema) and only on image,
//     video, document.
//   - location: `latitude` in ±90, `longitude` in ±180; `name`, `address` optional.
//   - reaction: `reaction.message_id` and `reaction.emoji` (empty: the reaction removed).
//   - template: `template.name`, `template.language.code`, `components[].parameters[]`.
//   - read receipt with typing: `messaging_product`, `status: "read"`, `message_id`,
//     `typing_indicator.type: "text"` (the project's fixture whatsapp_mark_read_typing.json,
//     Meta's typing-indicators page [M6] in shared/protocols/PROTOCOLS.md).
//   Lengths are counted in Unicode scalar values (Meta documents characters).
//
// Telegram Bot API (POST /bot<token>/<method>), core.telegram.org/bots/api:
//   - sendMessage: `chat_id`, `text` "1-4096 characters after entities parsing" (the Bot API
//     page for sendMessage; teloxide-core's generated payload says the same). Telegram
//     counts UTF-16 code units: counted here exactly that way, not approximated.
//   - InlineKeyboardButton: `text` non-empty, exactly one action field, `callback_data`
//     "1-64 bytes" (grammY's and telegram.bot's transcriptions of the Bot API). Callback
//     data unique within a keyboard (a tap must say which button).
//   - captions (sendPhoto, sendDocument, sendAudio, sendVideo) 0–1024 characters after
//     entities parsing; sendSticker takes none.
//   - sendLocation: `latitude` ±90, `longitude` ±180.
//   - setMessageReaction: `chat_id`, integer `message_id`, `reaction` an array of
//     ReactionType; a bot sets at most one (`{type:"emoji", emoji}`).
//   - sendChatAction: `action` one of typing, upload_photo, record_video, upload_video,
//     record_voice, upload_voice, upload_document, choose_sticker, find_location,
//     record_video_note, upload_video_note (the Bot API text as transcribed by the
//     telegram-bot-api Haskell package and teloxide-core).
//   - answerCallbackQuery: `callback_query_id`; `text` 0–200 characters.
//
// Twilio Messages resource (POST /2010-04-01/Accounts/{Sid}/Messages.json, a form),
// twilio.com/docs/messaging/api/message-resource: `To` required (a channel address,
// `whatsapp:+E164`), `From` or `MessagingServiceSid`, one of `Body`, `MediaUrl`,
// `ContentSid`; `Body` ≤ 1600 characters (Twilio's message schema `maxLength: 1600`, the
// Bot Framework Twilio adapter docs "up to 1,600 characters"); `StatusCallback` a URL;
// `ContentSid` an `HX` + 32 hex SID and `ContentVariables` a JSON object of strings. Body is
// counted in Unicode scalar values. Typing indicator (POST /v2/Indicators/Typing.json):
// `channel=whatsapp`, `messageId` an SM/MM SID (PROTOCOLS.md [T5]).
//
// BlueBubbles server REST API (BlueBubblesApp/bluebubbles-server
// packages/server/src/server/api/http/api/v1/validators/messageValidator.ts @1c8ca80, and
// MessageInterface.possibleReactions; PROTOCOLS.md [BB-routes] for the chat routes):
// POST /api/v1/message/text takes `chatGuid` (required), `tempGuid` (required for
// apple-script; always sent here), `message`, `method` apple-script | private-api,
// `effectId`, `subject`, `selectedMessageGuid` (implies private-api), `partIndex`, `ddScan`;
// POST /api/v1/message/react takes `chatGuid`, `selectedMessageGuid`, `reaction` one of
// love|like|dislike|laugh|emphasize|question (a `-` prefix removes), `partIndex`;
// POST /api/v1/message/attachment (multipart) takes `chatGuid`, `name` and the `attachment`
// file (required), `tempGuid`, `method`, `isAudioMessage`, `effectId`, `subject`,
// `selectedMessageGuid`, `partIndex`; POST /api/v1/chat/:guid/read and /typing.
// iMessage publishes no text limit: none is checked.
// ---------------------------------------------------------------------------------------------

const WA_SECRET: &str = "outbound-limits-app-secret";
const TG_SECRET: &str = "outbound-limits-secret-token";
const TW_TOKEN: &str = "outbound-limits-auth-token";
const TW_URL: &str = "https://gateway.example.test/webhooks/twilio";
const TW_ACCOUNT: &str = "ACtesttesttesttesttesttesttest0000";
const TW_TEMPLATE: &str = "HX00000000000000000000000000000001";
const BB_SECRET: &str = "outbound-limits-bb-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Platform {
    Whatsapp,
    Telegram,
    Twilio,
    BlueBubbles,
}

impl Platform {
    const ALL: [Platform; 4] = [
        Platform::Whatsapp,
        Platform::Telegram,
        Platform::Twilio,
        Platform::BlueBubbles,
    ];

    fn name(self) -> &'static str {
        match self {
            Platform::Whatsapp => "whatsapp",
            Platform::Telegram => "telegram",
            Platform::Twilio => "twilio",
            Platform::BlueBubbles => "bluebubbles",
        }
    }

    /// The channel id (the channel file's name).
    fn channel(self) -> &'static str {
        match self {
            Platform::Whatsapp => "whatsapp",
            Platform::Telegram => "telegram",
            Platform::Twilio => "twilio",
            Platform::BlueBubbles => "imessage",
        }
    }
}

/// How the customer's message that the case answers arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inbound {
    Text,
    /// Written 25 hours ago: the WhatsApp reply window is closed.
    Old,
    /// Telegram: a tap on an inline button (a callback query).
    Tap,
    /// WhatsApp: from a customer known only by a business-scoped user id (a username user).
    BusinessScoped,
}

/// What the agent answers.
#[derive(Clone, Debug)]
enum Answer {
    Say(Box<Content>),
    /// A reaction with this emoji on the customer's message.
    React(&'static str),
}

#[derive(Clone, Debug)]
struct Case {
    platform: Platform,
    name: &'static str,
    /// Unique over all cases: it makes the contact's ids.
    index: usize,
    answer: Answer,
    quote: bool,
    inbound: Inbound,
    /// Twilio: the first send is refused with 63016 (window closed): the template follows.
    refuse_first: bool,
}

impl Case {
    fn label(&self) -> String {
        format!("{}/{}", self.platform.name(), self.name)
    }

    /// What the customer writes: the responder answers by it.
    fn key(&self) -> String {
        self.label()
    }

    /// The contact id the gateway keeps the customer by.
    fn contact(&self) -> String {
        let i = self.index;
        match self.platform {
            Platform::Whatsapp if self.inbound == Inbound::BusinessScoped => {
                format!("US.13491208655302{i:04}")
            }
            Platform::Whatsapp => format!("1555030{i:04}"),
            Platform::Telegram => tg_chat(i).to_string(),
            Platform::Twilio => format!("1555020{i:04}"),
            Platform::BlueBubbles => format!("iMessage;-;+1555040{i:04}"),
        }
    }

    fn inbound_id(&self) -> String {
        let i = self.index;
        match self.platform {
            Platform::Whatsapp => format!("wamid.LIMITS-{i:04}"),
            Platform::Telegram => format!("{}:{}", tg_chat(i), 600 + i),
            Platform::Twilio => format!("SM{i:032}"),
            Platform::BlueBubbles => format!("BBIN-{i:04}"),
        }
    }

    /// The texts that must arrive whole, and the options that must each arrive.
    fn expected(&self) -> (Vec<String>, Vec<String>) {
        if self.name == "reengagement_template" {
            // The reply window is closed: the template goes instead, by design.
            return (Vec::new(), Vec::new());
        }
        let Answer::Say(content) = &self.answer else {
            return (Vec::new(), Vec::new());
        };
        match content.as_ref() {
            Content::Text { body } => (vec![body.clone()], Vec::new()),
            Content::Choices { body, choices, .. } => (
                vec![body.clone()],
                choices.iter().map(|c| c.title.clone()).collect(),
            ),
            Content::Choice(choice) => (vec![choice.title.clone()], Vec::new()),
            _ => (Vec::new(), Vec::new()),
        }
    }
}

fn tg_chat(i: usize) -> i64 {
    2_000_000_000 + i as i64
}

fn options(n: usize) -> Vec<Choice> {
    (1..=n)
        .map(|i| Choice::new(format!("opt_{i}"), format!("Option {i}")))
        .collect()
}

fn asking(body: impl Into<String>, choices: Vec<Choice>) -> Content {
    Content::Choices {
        body: body.into(),
        choices,
        header: None,
        footer: None,
        button: None,
    }
}

/// A text of about `chars` characters, in sentences and paragraphs, each sentence numbered
/// so a lost part shows.
fn prose(chars: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    while out.chars().count() < chars {
        n += 1;
        out.push_str(&format!(
            "Sentence {n} of the long answer about opening hours and delivery times. "
        ));
        if n % 7 == 0 {
            out.push_str("\n\n");
        }
    }
    out.trim_end().to_string()
}

/// About `chars` characters of emoji (two UTF-16 units each) in words of four.
fn emoji_prose(chars: usize) -> String {
    let mut out = String::new();
    while out.chars().count() < chars {
        out.push_str("🍷🕯️🌹 ");
    }
    out.trim_end().to_string()
}

/// Every case, for every platform, with what the agent answers.
fn cases(media_base: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for platform in Platform::ALL {
        let mut add = |name: &'static str, answer: Answer| {
            out.push(Case {
                platform,
                name,
                index: 0,
                answer,
                quote: false,
                inbound: Inbound::Text,
                refuse_first: false,
            });
        };
        let say = |content: Content| Answer::Say(Box::new(content));
        add(
            "text",
            say(Content::text("Your table for 2 at 7:00 PM is confirmed.")),
        );
        add("long_text", say(Content::text(prose(12_000))));
        add("long_emoji_text", say(Content::text(emoji_prose(5_000))));
        add(
            "quoted_text",
            say(Content::text("Sure — checking availability now.")),
        );
        for (name, n) in [
            ("choices_2", 2),
            ("choices_3", 3),
            ("choices_4", 4),
            ("choices_10", 10),
            ("choices_11", 11),
            ("choices_15", 15),
        ] {
            add(
                name,
                say(asking("Which option would you like?", options(n))),
            );
        }
        add(
            "choices_duplicate_titles",
            say(asking(
                "Shall I book it?",
                vec![
                    Choice::new("yes_1", "Yes"),
                    Choice::new("yes_2", "Yes"),
                    Choice::new("no", "No"),
                ],
            )),
        );
        add(
            "choices_long_titles",
            say(asking(
                "Which table would you like?",
                vec![
                    Choice::new("terrace", "Terrace table by the fountain"),
                    Choice::new("window", "Window seat facing the old harbour"),
                    Choice::new("bar", "Bar counter with a view of the kitchen"),
                ],
            )),
        );
        add(
            "choices_long_titles_shared_prefix",
            say(asking(
                "Which room would you like?",
                vec![
                    Choice::new("room_bb", "Deluxe room with sea view and breakfast"),
                    Choice::new("room_hb", "Deluxe room with sea view and half board"),
                ],
            )),
        );
        add(
            "choices_long_ids",
            say(asking(
                "Which slot suits you?",
                (1..=4)
                    .map(|i| Choice::new(format!("{}-{i}", "slot".repeat(52)), format!("Slot {i}")))
                    .collect(),
            )),
        );
        add(
            "long_question_3_choices",
            say(asking(
                format!("{} Which size would you like?", prose(5_000)),
                options(3),
            )),
        );
        add(
            "long_question_5_choices",
            say(asking(
                format!("{} Which size would you like?", prose(5_000)),
                options(5),
            )),
        );
        add(
            "choices_decorated_long",
            say(Content::Choices {
                body: "Pick a time for tonight.".into(),
                choices: (1..=4)
                    .map(|i| Choice {
                        id: format!("slot_{i}"),
                        title: format!("{}:00 PM", 6 + i),
                        description: Some(format!(
                            "Terrace table {i} for two, heated, with a view of the harbour and the old lighthouse"
                        )),
                        section: Some(if i <= 2 {
                            "Early evening, before the sunset concert".into()
                        } else {
                            "Late evening, after the sunset concert".into()
                        }),
                    })
                    .collect(),
                header: Some("Available times at Maison Lumière for tonight's dinner service, terrace and main room".into()),
                footer: Some("Concierge (test) — replies within a minute, every day of the week, holidays included".into()),
                button: Some("Choose a time for tonight".into()),
            }),
        );
        add(
            "choice_echo",
            say(Content::Choice(Choice::new("confirm", "Confirm"))),
        );
        add(
            "location",
            say(Content::Location {
                latitude: 48.8448,
                longitude: 2.3400,
                name: Some("Maison Lumière".into()),
                address: Some("14 rue Auguste Comte, Paris".into()),
            }),
        );
        // Twilio's adapter sends no reactions (it refuses them): no request to check.
        if platform != Platform::Twilio {
            add("reaction", Answer::React("👍"));
        }
        let media = |kind: MediaKind, media: String, caption: Option<String>| {
            say(Content::Media {
                kind,
                mime: None,
                caption,
                media: MediaRef(media),
                kept: None,
            })
        };
        let long_caption = Some(prose(1_500));
        match platform {
            Platform::Whatsapp => {
                add(
                    "image_long_caption",
                    media(MediaKind::Image, "400000000000004".into(), long_caption),
                );
                add(
                    "document_link",
                    media(
                        MediaKind::Document,
                        "https://media.example.test/menu.pdf".into(),
                        Some("Our menu".into()),
                    ),
                );
                add(
                    "audio",
                    media(
                        MediaKind::Audio,
                        "400000000000005".into(),
                        Some("A caption audio cannot carry".into()),
                    ),
                );
                add(
                    "video_link",
                    media(
                        MediaKind::Video,
                        "https://media.example.test/tour.mp4".into(),
                        None,
                    ),
                );
                add(
                    "sticker",
                    media(
                        MediaKind::Sticker,
                        "400000000000006".into(),
                        Some("A caption a sticker cannot carry".into()),
                    ),
                );
                add("reaction_removed", Answer::React(""));
                add(
                    "template",
                    say(Content::template(
                        "booking_reminder_fake",
                        "en_US",
                        vec!["Test User".into(), "7:00 PM".into()],
                    )),
                );
            }
            Platform::Telegram => {
                add(
                    "image_long_caption",
                    media(MediaKind::Image, "file-photo-1".into(), long_caption),
                );
                add(
                    "document",
                    media(
                        MediaKind::Document,
                        "file-document-1".into(),
                        Some("Our menu".into()),
                    ),
                );
                add(
                    "audio",
                    media(MediaKind::Audio, "file-audio-1".into(), None),
                );
                add(
                    "video",
                    media(
                        MediaKind::Video,
                        "file-video-1".into(),
                        Some("A tour".into()),
                    ),
                );
                add(
                    "sticker",
                    media(MediaKind::Sticker, "file-sticker-1".into(), None),
                );
                add("reaction_removed", Answer::React(""));
            }
            Platform::Twilio => {
                add(
                    "image_long_caption",
                    media(
                        MediaKind::Image,
                        "https://media.example.test/menu.jpg".into(),
                        long_caption,
                    ),
                );
                add(
                    "document",
                    media(
                        MediaKind::Document,
                        "https://media.example.test/menu.pdf".into(),
                        None,
                    ),
                );
                add(
                    "template",
                    say(Content::template(
                        TW_TEMPLATE,
                        String::new(),
                        vec!["Test User".into(), "7:00 PM".into()],
                    )),
                );
            }
            Platform::BlueBubbles => {
                add(
                    "image_captioned",
                    media(
                        MediaKind::Image,
                        format!("{media_base}/download/menu.jpg"),
                        Some("Our new menu".into()),
                    ),
                );
            }
        }
    }
    // Cases whose inbound or platform answer differs.
    for case in out.iter_mut() {
        if case.name == "quoted_text" {
            case.quote = true;
        }
    }
    out.push(Case {
        platform: Platform::Whatsapp,
        name: "reengagement_template",
        index: 0,
        answer: Answer::Say(Box::new(Content::text("Your table is ready."))),
        quote: false,
        inbound: Inbound::Old,
        refuse_first: false,
    });
    out.push(Case {
        platform: Platform::Whatsapp,
        name: "text_to_business_scoped_id",
        index: 0,
        answer: Answer::Say(Box::new(Content::text("Hello! How can I help?"))),
        quote: false,
        inbound: Inbound::BusinessScoped,
        refuse_first: false,
    });
    out.push(Case {
        platform: Platform::Telegram,
        name: "button_tap",
        index: 0,
        answer: Answer::Say(Box::new(Content::text("Noted: see you at seven."))),
        quote: false,
        inbound: Inbound::Tap,
        refuse_first: false,
    });
    out.push(Case {
        platform: Platform::Twilio,
        name: "reengagement_template",
        index: 0,
        answer: Answer::Say(Box::new(Content::text("Your table is ready."))),
        quote: false,
        inbound: Inbound::Text,
        refuse_first: true,
    });
    for (i, case) in out.iter_mut().enumerate() {
        case.index = i + 1;
    }
    out
}

/// Answers each case's message with that case's reply.
struct Scripted(HashMap<String, Case>);

#[async_trait]
impl Responder for Scripted {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let Some(case) = turn.text().and_then(|text| self.0.get(text.trim())) else {
            return Ok(None);
        };
        let content = match &case.answer {
            Answer::Say(content) => content.as_ref().clone(),
            Answer::React(emoji) => Content::Reaction {
                target: turn.message.platform_id.as_str().to_string(),
                emoji: emoji.to_string(),
            },
        };
        let mut decision = Decision::new(
            DecidedBy::Other("outbound_limits"),
            vec![(Author::Agent("test".into()), content)],
        );
        decision.quote = case.quote;
        Ok(Some(decision))
    }
}

// ---- the gateway and the customers' messages ----

struct Gateway {
    app: TestApp,
    api: FakeApi,
}

async fn start(api: FakeApi, responder: Scripted) -> Gateway {
    let deployment = Deployment::new("");
    let channels = deployment.path().join("channels");
    let write = |file: &str, body: String| {
        std::fs::write(channels.join(file), body).expect("channel file");
    };
    write(
        "whatsapp.toml",
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"test-access-token\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"outbound-limits-verify\"\napi_base = \"{}\"\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\nreengagement_template = {{ name = \"reconnect_fake\", language = \"en_US\", params = [\"Maison Lumière\"] }}\n",
            api.graph_api_base()
        ),
    );
    write(
        "telegram.toml",
        format!(
            "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{TG_SECRET}\"\napi_base = \"{}\"\nmessages_per_second_per_chat = 50\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\n",
            api.url
        ),
    );
    write(
        "twilio.toml",
        format!(
            "kind = \"twilio_whatsapp\"\naccount_sid = \"{TW_ACCOUNT}\"\nauth_token = \"{TW_TOKEN}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"{TW_URL}\"\napi_base = \"{0}\"\nmessaging_api_base = \"{0}\"\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\nreengagement_template = {{ content_sid = \"{TW_TEMPLATE}\", variables = {{ \"1\" = \"Maison Lumière\" }} }}\n",
            api.url
        ),
    );
    write(
        "imessage.toml",
        format!(
            "kind = \"bluebubbles\"\nserver_url = \"{}\"\npassword = \"bb-password\"\nwebhook_secret = \"{BB_SECRET}\"\nmethod = \"private-api\"\nnew_conversations_per_minute = 0\n",
            api.url
        ),
    );
    let app = spawn_in(
        deployment,
        Parts {
            responder: Some(Arc::new(responder)),
            ..Parts::default()
        },
    )
    .await;
    Gateway { app, api }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Gateway {
    /// Posts the customer's message of `case` through the platform's webhook, signed.
    async fn post_inbound(&self, case: &Case) {
        let i = case.index;
        let key = case.key();
        let request = match case.platform {
            Platform::Whatsapp => {
                let (wa_id, user_id) = if case.inbound == Inbound::BusinessScoped {
                    (String::new(), case.contact())
                } else {
                    (case.contact(), String::new())
                };
                let age = if case.inbound == Inbound::Old {
                    25 * 3600
                } else {
                    0
                };
                let body = serde_json::to_vec(&json!({
                    "object": "whatsapp_business_account",
                    "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
                        "contacts": [{ "profile": { "name": "Test User" }, "wa_id": wa_id, "user_id": user_id }],
                        "messages": [{ "from": wa_id, "from_user_id": user_id, "id": case.inbound_id(),
                                       "timestamp": (now_secs() - age).to_string(),
                                       "type": "text", "text": { "body": key } }]
                    }}]}]
                }))
                .unwrap();
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                self.app
                    .client
                    .post(self.app.url("/webhooks/whatsapp"))
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
            }
            Platform::Telegram => {
                let chat = tg_chat(i);
                let from = json!({ "id": chat, "is_bot": false, "first_name": "Test" });
                let update = if case.inbound == Inbound::Tap {
                    json!({ "update_id": 900_100_000 + i, "callback_query": {
                        "id": format!("43{i:017}"),
                        "from": from,
                        "chat_instance": "-100",
                        "data": "tapped",
                        "message": {
                            "message_id": 600 + i,
                            "from": { "id": 2000000002u64, "is_bot": true, "first_name": "Concierge Test Bot" },
                            "chat": { "id": chat, "type": "private" },
                            "date": now_secs(),
                            "text": "Shall I confirm?",
                            "reply_markup": { "inline_keyboard": [[{ "text": key, "callback_data": "tapped" }]] }
                        }
                    }})
                } else {
                    json!({ "update_id": 900_100_000 + i, "message": {
                        "message_id": 600 + i,
                        "from": from,
                        "chat": { "id": chat, "type": "private" },
                        "date": now_secs(),
                        "text": key,
                    }})
                };
                self.app
                    .client
                    .post(self.app.url("/webhooks/telegram"))
                    .header("content-type", "application/json")
                    .header("x-telegram-bot-api-secret-token", TG_SECRET)
                    .body(update.to_string())
                    .send()
            }
            Platform::Twilio => {
                let from = format!("whatsapp:+{}", case.contact());
                let sid = case.inbound_id();
                let params: Vec<(&str, &str)> = vec![
                    ("SmsMessageSid", &sid),
                    ("NumMedia", "0"),
                    ("ProfileName", "Test User"),
                    ("MessageType", "text"),
                    ("SmsSid", &sid),
                    ("WaId", &from[10..]),
                    ("SmsStatus", "received"),
                    ("Body", &key),
                    ("To", "whatsapp:+15550100000"),
                    ("NumSegments", "1"),
                    ("MessageSid", &sid),
                    ("AccountSid", TW_ACCOUNT),
                    ("From", &from),
                    ("ApiVersion", "2010-04-01"),
                ];
                let body = serde_urlencoded::to_string(&params).unwrap();
                let mut sorted = params.clone();
                sorted.sort();
                let mut data = TW_URL.to_string();
                for (k, v) in sorted {
                    data.push_str(k);
                    data.push_str(v);
                }
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TW_TOKEN.as_bytes()).unwrap();
                mac.update(data.as_bytes());
                use base64::Engine;
                let signature =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                self.app
                    .client
                    .post(self.app.url("/webhooks/twilio"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", signature)
                    .body(body)
                    .send()
            }
            Platform::BlueBubbles => {
                let chat = case.contact();
                let address = chat.rsplit(';').next().unwrap_or_default().to_string();
                let body = json!({ "type": "new-message", "data": {
                    "guid": case.inbound_id(),
                    "text": key,
                    "handle": { "address": address, "service": "iMessage" },
                    "attachments": [],
                    "dateCreated": now_secs() * 1000,
                    "isFromMe": false,
                    "associatedMessageGuid": null,
                    "associatedMessageType": null,
                    "chats": [{ "guid": chat, "style": 45, "chatIdentifier": address, "displayName": "" }],
                }});
                self.app
                    .client
                    .post(
                        self.app
                            .url(&format!("/webhooks/imessage?secret={BB_SECRET}")),
                    )
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
            }
        };
        let status = request.await.expect("the webhook answers").status();
        assert_eq!(
            status,
            200,
            "{}: the webhook takes the message",
            case.label()
        );
    }

    /// Whether every reply of the case has left the outbox (sent, or failed for good).
    async fn settled(&self, case: &Case) -> bool {
        let store = self.app.store();
        let conversation = conversation_in(store, case.platform.channel(), &case.contact()).await;
        let messages = store.messages(&conversation, 0, 1000).await.unwrap();
        let replies: Vec<_> = messages
            .iter()
            .filter(|m| m.direction == Direction::Outbound)
            .collect();
        !replies.is_empty()
            && replies
                .iter()
                .all(|m| !matches!(m.status, DeliveryStatus::Pending))
    }

    /// The reasons of the case's replies that failed.
    async fn failures(&self, case: &Case) -> Vec<String> {
        let store = self.app.store();
        let conversation = conversation_in(store, case.platform.channel(), &case.contact()).await;
        store
            .messages(&conversation, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| match m.status {
                DeliveryStatus::Failed { code, reason } if m.direction == Direction::Outbound => {
                    Some(format!("{code:?}: {reason}"))
                }
                _ => None,
            })
            .collect()
    }

    /// Runs cases at once, until every reply of each has left the outbox.
    async fn run(&self, cases: &[&Case]) {
        for case in cases {
            self.post_inbound(case).await;
        }
        for case in cases {
            let label = case.label();
            eventually(&format!("{label}: every reply leaves the outbox"), || {
                self.settled(case)
            })
            .await;
        }
    }

    /// Waits until no request has come for a while (receipts and typing indicators are best
    /// effort, sent beside the replies).
    async fn quiet(&self) {
        let mut seen = self.api.requests().len();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.api.requests().len();
            if now == seen {
                return;
            }
            seen = now;
        }
    }
}

// ---- which case each request belongs to ----

fn form(request: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&request.body).unwrap_or_default()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The named text fields of a multipart body.
fn multipart(request: &Recorded) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(&request.body);
    let mut fields = BTreeMap::new();
    for part in text.split("\r\n--") {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = if head.contains("filename=") {
            format!("<file of {} bytes>", value.len())
        } else {
            value.to_string()
        };
        fields.insert(name.to_string(), value);
    }
    fields
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The platform of a request, and the customer identifier that names its case.
fn identify(request: &Recorded) -> Option<(Platform, String)> {
    let path = request.path.as_str();
    if path.starts_with("/bot") {
        let body = request.json();
        if let Some(query) = body["callback_query_id"].as_str() {
            return Some((Platform::Telegram, format!("cbq:{query}")));
        }
        return Some((Platform::Telegram, body["chat_id"].to_string()));
    }
    if path.ends_with("/messages") {
        let body = request.json();
        if let Some(to) = body["to"].as_str().or(body["recipient"].as_str()) {
            return Some((Platform::Whatsapp, to.to_string()));
        }
        return Some((
            Platform::Whatsapp,
            format!("msg:{}", body["message_id"].as_str().unwrap_or_default()),
        ));
    }
    if path.ends_with("/Messages.json") {
        let to = field(&form(request), "To")?
            .trim_start_matches("whatsapp:+")
            .to_string();
        return Some((Platform::Twilio, to));
    }
    if path.ends_with("/Indicators/Typing.json") {
        let id = field(&form(request), "messageId")?.to_string();
        return Some((Platform::Twilio, format!("msg:{id}")));
    }
    if let Some(rest) = path.strip_prefix("/api/v1/chat/") {
        let guid = rest.split('/').next().unwrap_or_default();
        return Some((Platform::BlueBubbles, percent_decode(guid)));
    }
    if path == "/api/v1/message/attachment" {
        return Some((
            Platform::BlueBubbles,
            multipart(request).remove("chatGuid")?,
        ));
    }
    if path.starts_with("/api/v1/") {
        let chat = request.json()["chatGuid"].as_str()?.to_string();
        return Some((Platform::BlueBubbles, chat));
    }
    None
}

// ---- the rules ----

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn utf16(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Collects the rules one request breaks.
#[derive(Default)]
struct Check {
    broken: Vec<String>,
}

impl Check {
    fn rule(&mut self, holds: bool, rule: impl FnOnce() -> String) {
        if !holds {
            self.broken.push(rule());
        }
    }

    /// No key but these (the spec lists every field).
    fn closed(&mut self, value: &Value, at: &str, allowed: &[&str]) {
        match value.as_object() {
            Some(object) => {
                for key in object.keys() {
                    self.rule(allowed.contains(&key.as_str()), || {
                        format!("{at}: `{key}` is not a field of the spec (allowed: {allowed:?})")
                    });
                }
            }
            None => self.broken.push(format!("{at}: must be an object")),
        }
    }

    /// A string of `min..=max` units counted by `count`.
    fn text(
        &mut self,
        value: &Value,
        at: &str,
        min: usize,
        max: usize,
        count: fn(&str) -> usize,
        unit: &str,
    ) {
        match value.as_str() {
            Some(s) => {
                let n = count(s);
                self.rule((min..=max).contains(&n), || {
                    format!("{at}: {n} {unit}, must be {min}–{max}")
                });
            }
            None => self.broken.push(format!("{at}: a string is required")),
        }
    }

    fn optional_text(
        &mut self,
        value: &Value,
        at: &str,
        max: usize,
        count: fn(&str) -> usize,
        unit: &str,
    ) {
        if !value.is_null() {
            self.text(value, at, 0, max, count, unit);
        }
    }

    /// A non-empty string.
    fn present(&mut self, value: &Value, at: &str) {
        self.text(value, at, 1, usize::MAX, chars, "chars");
    }

    /// A string of `min..=max` characters (Unicode scalar values).
    fn chars(&mut self, value: &Value, at: &str, min: usize, max: usize) {
        self.text(value, at, min, max, chars, "chars");
    }

    /// Absent, or a string of at most `max` characters.
    fn optional_chars(&mut self, value: &Value, at: &str, max: usize) {
        self.optional_text(value, at, max, chars, "chars");
    }

    fn one_of(&mut self, value: &Value, at: &str, allowed: &[&str]) {
        let s = value.as_str().unwrap_or("<missing>");
        self.rule(allowed.contains(&s), || {
            format!("{at}: `{s}` is not one of {allowed:?}")
        });
    }

    fn unique<'a>(&mut self, values: impl IntoIterator<Item = &'a str>, at: &str) {
        let mut seen = HashSet::new();
        for value in values {
            self.rule(seen.insert(value), || {
                format!("{at}: `{value}` appears twice (must be unique)")
            });
        }
    }

    fn range(&mut self, value: &Value, at: &str, limit: f64) {
        let ok = value
            .as_f64()
            .is_some_and(|v| (-limit..=limit).contains(&v));
        self.rule(ok, || format!("{at}: must be a number within ±{limit}"));
    }
}

const WA_TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "template",
    "reaction",
    "interactive",
    "contacts",
];

fn whatsapp_rules(request: &Recorded, check: &mut Check) {
    check.rule(
        request.path.ends_with("/messages") && request.method == Method::POST,
        || "POST /{phone-number-id}/messages".into(),
    );
    let body = request.json();
    if body.get("status").is_some() {
        check.closed(
            &body,
            "receipt",
            &[
                "messaging_product",
                "status",
                "message_id",
                "typing_indicator",
            ],
        );
        check.one_of(
            &body["messaging_product"],
            "receipt.messaging_product",
            &["whatsapp"],
        );
        check.one_of(&body["status"], "receipt.status", &["read"]);
        check.present(&body["message_id"], "receipt.message_id");
        if !body["typing_indicator"].is_null() {
            check.closed(
                &body["typing_indicator"],
                "receipt.typing_indicator",
                &["type"],
            );
            check.one_of(
                &body["typing_indicator"]["type"],
                "receipt.typing_indicator.type",
                &["text"],
            );
        }
        return;
    }
    let kind = body["type"].as_str().unwrap_or_default().to_string();
    check.one_of(&body["type"], "type", WA_TYPES);
    let mut allowed = vec![
        "messaging_product",
        "recipient_type",
        "to",
        "recipient",
        "type",
        "context",
        "biz_opaque_callback_data",
    ];
    allowed.push(kind.as_str());
    check.closed(&body, "message", &allowed);
    check.one_of(
        &body["messaging_product"],
        "messaging_product",
        &["whatsapp"],
    );
    check.one_of(&body["recipient_type"], "recipient_type", &["individual"]);
    let recipients = [&body["to"], &body["recipient"]]
        .iter()
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        .count();
    check.rule(recipients == 1, || {
        "exactly one of `to` and `recipient`".into()
    });
    if let Some(to) = body["to"].as_str() {
        check.rule(to.bytes().all(|b| b.is_ascii_digit()), || {
            format!("to: `{to}` must be a phone number in digits")
        });
    }
    if !body["context"].is_null() {
        check.closed(&body["context"], "context", &["message_id"]);
        check.present(&body["context"]["message_id"], "context.message_id");
    }
    check.optional_chars(
        &body["biz_opaque_callback_data"],
        "biz_opaque_callback_data",
        512,
    );
    let part = &body[kind.as_str()];
    match kind.as_str() {
        "text" => {
            check.closed(part, "text", &["body", "preview_url"]);
            check.chars(&part["body"], "text.body", 1, 4096);
            check.rule(
                part["preview_url"].is_null() || part["preview_url"].is_boolean(),
                || "text.preview_url: a boolean".into(),
            );
        }
        "image" | "video" | "document" | "audio" | "sticker" => {
            let mut fields = vec!["id", "link"];
            if matches!(kind.as_str(), "image" | "video" | "document") {
                fields.push("caption");
            }
            if kind == "document" {
                fields.push("filename");
            }
            check.closed(part, &kind, &fields);
            let sources = ["id", "link"]
                .iter()
                .filter(|k| part[**k].is_string())
                .count();
            check.rule(sources == 1, || {
                format!("{kind}: exactly one of `id` and `link`")
            });
            check.optional_chars(&part["caption"], &format!("{kind}.caption"), 1024);
        }
        "location" => {
            check.closed(
                part,
                "location",
                &["latitude", "longitude", "name", "address"],
            );
            check.range(&part["latitude"], "location.latitude", 90.0);
            check.range(&part["longitude"], "location.longitude", 180.0);
        }
        "reaction" => {
            check.closed(part, "reaction", &["message_id", "emoji"]);
            check.present(&part["message_id"], "reaction.message_id");
            check.rule(part["emoji"].is_string(), || {
                "reaction.emoji: a string (empty removes)".into()
            });
        }
        "template" => {
            check.closed(part, "template", &["name", "language", "components"]);
            check.chars(&part["name"], "template.name", 1, 512);
            check.closed(&part["language"], "template.language", &["code", "policy"]);
            check.chars(&part["language"]["code"], "template.language.code", 1, 15);
            for (i, component) in part["components"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("template.components[{i}]");
                check.one_of(
                    &component["type"],
                    &format!("{at}.type"),
                    &["header", "body", "button"],
                );
                for (j, parameter) in component["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let at = format!("{at}.parameters[{j}]");
                    check.one_of(
                        &parameter["type"],
                        &format!("{at}.type"),
                        &[
                            "text",
                            "currency",
                            "date_time",
                            "image",
                            "document",
                            "video",
                            "payload",
                        ],
                    );
                    if parameter["type"] == "text" {
                        check.chars(&parameter["text"], &format!("{at}.text"), 1, 32_768);
                    }
                }
            }
        }
        "interactive" => whatsapp_interactive(part, check),
        _ => {}
    }
}

fn whatsapp_interactive(part: &Value, check: &mut Check) {
    let kind = part["type"].as_str().unwrap_or_default();
    check.one_of(&part["type"], "interactive.type", &["button", "list"]);
    check.closed(
        part,
        "interactive",
        &["type", "header", "body", "footer", "action"],
    );
    if !part["header"].is_null() {
        check.one_of(
            &part["header"]["type"],
            "interactive.header.type",
            &["text"],
        );
        check.chars(&part["header"]["text"], "interactive.header.text", 1, 60);
    }
    if !part["footer"].is_null() {
        check.closed(&part["footer"], "interactive.footer", &["text"]);
        check.chars(&part["footer"]["text"], "interactive.footer.text", 1, 60);
    }
    check.closed(&part["body"], "interactive.body", &["text"]);
    let action = &part["action"];
    if kind == "button" {
        check.chars(
            &part["body"]["text"],
            "interactive.body.text (buttons)",
            1,
            1024,
        );
        check.closed(action, "interactive.action", &["buttons"]);
        let buttons = action["buttons"].as_array().cloned().unwrap_or_default();
        check.rule((1..=3).contains(&buttons.len()), || {
            format!(
                "interactive.action.buttons: {} buttons, must be 1–3",
                buttons.len()
            )
        });
        for (i, button) in buttons.iter().enumerate() {
            let at = format!("interactive.action.buttons[{i}]");
            check.closed(button, &at, &["type", "reply"]);
            check.one_of(&button["type"], &format!("{at}.type"), &["reply"]);
            check.closed(&button["reply"], &format!("{at}.reply"), &["id", "title"]);
            check.chars(&button["reply"]["id"], &format!("{at}.reply.id"), 1, 256);
            check.chars(
                &button["reply"]["title"],
                &format!("{at}.reply.title"),
                1,
                20,
            );
        }
        let reply = |key: &'static str| {
            buttons
                .iter()
                .filter_map(move |b| b["reply"][key].as_str())
                .collect::<Vec<_>>()
        };
        check.unique(reply("id"), "interactive.action.buttons[].reply.id");
        check.unique(reply("title"), "interactive.action.buttons[].reply.title");
    } else if kind == "list" {
        check.chars(
            &part["body"]["text"],
            "interactive.body.text (list)",
            1,
            4096,
        );
        check.closed(action, "interactive.action", &["button", "sections"]);
        check.chars(&action["button"], "interactive.action.button", 1, 20);
        let sections = action["sections"].as_array().cloned().unwrap_or_default();
        check.rule((1..=10).contains(&sections.len()), || {
            format!(
                "interactive.action.sections: {} sections, must be 1–10",
                sections.len()
            )
        });
        let mut ids = Vec::new();
        let mut rows_total = 0;
        for (i, section) in sections.iter().enumerate() {
            let at = format!("interactive.action.sections[{i}]");
            check.closed(section, &at, &["title", "rows"]);
            if sections.len() > 1 || !section["title"].is_null() {
                check.chars(&section["title"], &format!("{at}.title"), 1, 24);
            }
            let rows = section["rows"].as_array().cloned().unwrap_or_default();
            check.rule(!rows.is_empty(), || format!("{at}.rows: at least one row"));
            rows_total += rows.len();
            for (j, row) in rows.iter().enumerate() {
                let at = format!("{at}.rows[{j}]");
                check.closed(row, &at, &["id", "title", "description"]);
                check.chars(&row["id"], &format!("{at}.id"), 1, 200);
                check.chars(&row["title"], &format!("{at}.title"), 1, 24);
                check.optional_chars(&row["description"], &format!("{at}.description"), 72);
                if let Some(id) = row["id"].as_str() {
                    ids.push(id.to_string());
                }
            }
        }
        check.rule((1..=10).contains(&rows_total), || {
            format!("interactive.action.sections: {rows_total} rows in all, must be 1–10")
        });
        check.unique(
            ids.iter().map(String::as_str),
            "interactive.action.sections[].rows[].id",
        );
    }
}

const TG_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// Fields every send method takes besides its own.
const TG_COMMON: &[&str] = &[
    "chat_id",
    "business_connection_id",
    "message_thread_id",
    "disable_notification",
    "protect_content",
    "allow_paid_broadcast",
    "message_effect_id",
    "reply_parameters",
    "reply_markup",
];

fn telegram_rules(request: &Recorded, check: &mut Check) {
    let method = request.path.rsplit('/').next().unwrap_or_default();
    let body = request.json();
    let chat_ok =
        body["chat_id"].is_i64() || body["chat_id"].as_str().is_some_and(|s| !s.is_empty());
    let sends = [
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendAudio",
        "sendVideo",
        "sendSticker",
        "sendLocation",
    ];
    let with = |own: &[&'static str]| -> Vec<&'static str> {
        TG_COMMON
            .iter()
            .copied()
            .chain(own.iter().copied())
            .collect()
    };
    match method {
        "sendMessage" => {
            check.closed(
                &body,
                method,
                &with(&["text", "parse_mode", "entities", "link_preview_options"]),
            );
            check.text(
                &body["text"],
                "sendMessage.text",
                1,
                4096,
                utf16,
                "UTF-16 units",
            );
        }
        "sendPhoto" | "sendDocument" | "sendAudio" | "sendVideo" | "sendSticker" => {
            let file = match method {
                "sendPhoto" => "photo",
                "sendDocument" => "document",
                "sendAudio" => "audio",
                "sendVideo" => "video",
                _ => "sticker",
            };
            let own: &[&'static str] = if method == "sendSticker" {
                &["sticker", "emoji"]
            } else {
                &[
                    "photo",
                    "document",
                    "audio",
                    "video",
                    "caption",
                    "parse_mode",
                    "caption_entities",
                ]
            };
            check.closed(&body, method, &with(own));
            check.rule(body[file].as_str().is_some_and(|s| !s.is_empty()), || {
                format!("{method}.{file}: a file id or URL is required")
            });
            check.optional_text(
                &body["caption"],
                &format!("{method}.caption"),
                1024,
                utf16,
                "UTF-16 units",
            );
        }
        "sendLocation" => {
            check.closed(
                &body,
                method,
                &with(&[
                    "latitude",
                    "longitude",
                    "horizontal_accuracy",
                    "live_period",
                    "heading",
                    "proximity_alert_radius",
                ]),
            );
            check.range(&body["latitude"], "sendLocation.latitude", 90.0);
            check.range(&body["longitude"], "sendLocation.longitude", 180.0);
        }
        "setMessageReaction" => {
            check.closed(
                &body,
                method,
                &["chat_id", "message_id", "reaction", "is_big"],
            );
            check.rule(body["message_id"].is_i64(), || {
                "setMessageReaction.message_id: an integer".into()
            });
            let reactions = body["reaction"].as_array().cloned().unwrap_or_default();
            check.rule(body["reaction"].is_array() && reactions.len() <= 1, || {
                "setMessageReaction.reaction: an array of at most one reaction (bots)".into()
            });
            for (i, reaction) in reactions.iter().enumerate() {
                let at = format!("setMessageReaction.reaction[{i}]");
                check.closed(reaction, &at, &["type", "emoji"]);
                check.one_of(&reaction["type"], &format!("{at}.type"), &["emoji"]);
                check.chars(&reaction["emoji"], &format!("{at}.emoji"), 1, 16);
            }
        }
        "sendChatAction" => {
            check.closed(
                &body,
                method,
                &[
                    "chat_id",
                    "action",
                    "message_thread_id",
                    "business_connection_id",
                ],
            );
            check.one_of(&body["action"], "sendChatAction.action", TG_ACTIONS);
        }
        "answerCallbackQuery" => {
            check.closed(
                &body,
                method,
                &[
                    "callback_query_id",
                    "text",
                    "show_alert",
                    "url",
                    "cache_time",
                ],
            );
            check.present(
                &body["callback_query_id"],
                "answerCallbackQuery.callback_query_id",
            );
            check.optional_chars(&body["text"], "answerCallbackQuery.text", 200);
        }
        other => check.broken.push(format!(
            "`{other}`: not a method this test knows the rules of"
        )),
    }
    if method != "answerCallbackQuery" {
        check.rule(chat_ok, || {
            format!("{method}.chat_id: an integer or a non-empty string")
        });
    }
    if sends.contains(&method) {
        if !body["reply_parameters"].is_null() {
            let at = format!("{method}.reply_parameters");
            check.closed(
                &body["reply_parameters"],
                &at,
                &[
                    "message_id",
                    "chat_id",
                    "allow_sending_without_reply",
                    "quote",
                    "quote_parse_mode",
                    "quote_entities",
                    "quote_position",
                ],
            );
            check.rule(body["reply_parameters"]["message_id"].is_i64(), || {
                format!("{at}.message_id: an integer")
            });
        }
        if !body["reply_markup"].is_null() {
            telegram_keyboard(&body["reply_markup"], method, check);
        }
    }
}

fn telegram_keyboard(markup: &Value, method: &str, check: &mut Check) {
    let at = format!("{method}.reply_markup");
    check.closed(markup, &at, &["inline_keyboard"]);
    let rows = markup["inline_keyboard"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    check.rule(!rows.is_empty(), || {
        format!("{at}.inline_keyboard: an array of button rows")
    });
    let mut data = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let buttons = row.as_array().cloned().unwrap_or_default();
        check.rule(!buttons.is_empty(), || {
            format!("{at}.inline_keyboard[{i}]: a non-empty row")
        });
        for (j, button) in buttons.iter().enumerate() {
            let at = format!("{at}.inline_keyboard[{i}][{j}]");
            check.closed(button, &at, &["text", "callback_data", "url"]);
            check.text(
                &button["text"],
                &format!("{at}.text"),
                1,
                usize::MAX,
                utf16,
                "UTF-16 units",
            );
            let actions = ["callback_data", "url"]
                .iter()
                .filter(|k| !button[**k].is_null())
                .count();
            check.rule(actions == 1, || format!("{at}: exactly one action field"));
            if !button["callback_data"].is_null() {
                check.text(
                    &button["callback_data"],
                    &format!("{at}.callback_data"),
                    1,
                    64,
                    str::len,
                    "bytes",
                );
                if let Some(d) = button["callback_data"].as_str() {
                    data.push(d.to_string());
                }
            }
        }
    }
    check.unique(
        data.iter().map(String::as_str),
        &format!("{at} callback_data"),
    );
}

const TW_FIELDS: &[&str] = &[
    "To",
    "From",
    "MessagingServiceSid",
    "Body",
    "MediaUrl",
    "ContentSid",
    "ContentVariables",
    "StatusCallback",
    "ApplicationSid",
    "MaxPrice",
    "ProvideFeedback",
    "Attempt",
    "ValidityPeriod",
    "ForceDelivery",
    "ContentRetention",
    "AddressRetention",
    "SmartEncoded",
    "PersistentAction",
    "ShortenUrls",
    "ScheduleType",
    "SendAt",
    "SendAsMms",
    "RiskCheck",
];

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "https://".len()
}

fn whatsapp_address(s: &str) -> bool {
    s.strip_prefix("whatsapp:+")
        .is_some_and(|d| (6..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn twilio_rules(request: &Recorded, check: &mut Check) {
    let form = form(request);
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    check.rule(
        content_type.starts_with("application/x-www-form-urlencoded"),
        || format!("content-type: `{content_type}`, must be a form"),
    );
    if request.path.ends_with("/Indicators/Typing.json") {
        for (key, _) in &form {
            check.rule(key == "channel" || key == "messageId", || {
                format!("typing: `{key}` is not a field of the spec")
            });
        }
        check.rule(field(&form, "channel") == Some("whatsapp"), || {
            "typing.channel: `whatsapp`".into()
        });
        let id = field(&form, "messageId").unwrap_or_default();
        check.rule(id.starts_with("SM") || id.starts_with("MM"), || {
            format!("typing.messageId: `{id}` must be an SM or MM sid")
        });
        return;
    }
    check.rule(
        request.path.starts_with("/2010-04-01/Accounts/AC")
            && request.path.ends_with("/Messages.json"),
        || "POST /2010-04-01/Accounts/{AccountSid}/Messages.json".into(),
    );
    let mut seen = HashSet::new();
    for (key, _) in &form {
        check.rule(TW_FIELDS.contains(&key.as_str()), || {
            format!("`{key}` is not a parameter of the Messages resource")
        });
        check.rule(key == "MediaUrl" || seen.insert(key.clone()), || {
            format!("`{key}` is given twice")
        });
    }
    let to = field(&form, "To").unwrap_or_default();
    check.rule(whatsapp_address(to), || {
        format!("To: `{to}` must be whatsapp:+E164")
    });
    match (field(&form, "From"), field(&form, "MessagingServiceSid")) {
        (Some(from), None) => check.rule(whatsapp_address(from), || {
            format!("From: `{from}` must be whatsapp:+E164")
        }),
        (None, Some(_)) => {}
        _ => check
            .broken
            .push("exactly one of From and MessagingServiceSid".into()),
    }
    check.rule(
        ["Body", "MediaUrl", "ContentSid"]
            .iter()
            .any(|k| field(&form, k).is_some()),
        || "one of Body, MediaUrl, ContentSid is required".into(),
    );
    if let Some(body) = field(&form, "Body") {
        let n = chars(body);
        check.rule((1..=1600).contains(&n), || {
            format!("Body: {n} chars, must be 1–1600")
        });
    }
    let media: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "MediaUrl")
        .map(|(_, v)| v.as_str())
        .collect();
    check.rule(media.len() <= 10, || "MediaUrl: at most 10".into());
    for url in media {
        check.rule(is_url(url), || {
            format!("MediaUrl: `{url}` must be an http(s) URL")
        });
    }
    if let Some(url) = field(&form, "StatusCallback") {
        check.rule(is_url(url), || {
            format!("StatusCallback: `{url}` must be an http(s) URL")
        });
    }
    if let Some(sid) = field(&form, "ContentSid") {
        let ok = sid.len() == 34
            && sid.starts_with("HX")
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        check.rule(ok, || {
            format!("ContentSid: `{sid}` must be HX and 32 hex digits")
        });
    }
    if let Some(variables) = field(&form, "ContentVariables") {
        let parsed: Option<Map<String, Value>> = serde_json::from_str(variables).ok();
        check.rule(
            parsed.is_some_and(|m| m.values().all(Value::is_string)),
            || format!("ContentVariables: `{variables}` must be a JSON object of strings"),
        );
    }
}

const BB_REACTIONS: &[&str] = &["love", "like", "dislike", "laugh", "emphasize", "question"];

fn chat_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split(';').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && matches!(parts[1], "-" | "+")
        && !parts[2].is_empty()
}

fn bluebubbles_rules(request: &Recorded, check: &mut Check) {
    let path = request.path.as_str();
    check.rule(request.method == Method::POST, || "POST".into());
    if let Some(rest) = path.strip_prefix("/api/v1/chat/") {
        let mut parts = rest.split('/');
        let guid = percent_decode(parts.next().unwrap_or_default());
        check.rule(chat_guid(&guid), || {
            format!("chat route: `{guid}` must be a chat guid")
        });
        let action = parts.next().unwrap_or_default();
        check.rule(
            matches!(action, "read" | "typing") && parts.next().is_none(),
            || format!("chat route: `/{action}` is not /read or /typing"),
        );
        return;
    }
    match path {
        "/api/v1/message/text" => {
            let body = request.json();
            check.closed(
                &body,
                "message/text",
                &[
                    "chatGuid",
                    "tempGuid",
                    "message",
                    "method",
                    "selectedMessageGuid",
                    "subject",
                    "effectId",
                    "partIndex",
                    "ddScan",
                ],
            );
            check.rule(body["chatGuid"].as_str().is_some_and(chat_guid), || {
                "message/text.chatGuid: a chat guid".into()
            });
            check.present(&body["tempGuid"], "message/text.tempGuid");
            check.present(&body["message"], "message/text.message");
            check.one_of(
                &body["method"],
                "message/text.method",
                &["apple-script", "private-api"],
            );
            if !body["selectedMessageGuid"].is_null() {
                check.rule(body["method"] == "private-api", || {
                    "message/text.selectedMessageGuid: private-api only".into()
                });
                check.present(
                    &body["selectedMessageGuid"],
                    "message/text.selectedMessageGuid",
                );
            }
        }
        "/api/v1/message/react" => {
            let body = request.json();
            check.closed(
                &body,
                "message/react",
                &["chatGuid", "selectedMessageGuid", "reaction", "partIndex"],
            );
            check.rule(body["chatGuid"].as_str().is_some_and(chat_guid), || {
                "message/react.chatGuid: a chat guid".into()
            });
            check.present(
                &body["selectedMessageGuid"],
                "message/react.selectedMessageGuid",
            );
            let reaction = body["reaction"].as_str().unwrap_or_default();
            check.rule(
                BB_REACTIONS.contains(&reaction.trim_start_matches('-')),
                || format!("message/react.reaction: `{reaction}` is not one of {BB_REACTIONS:?}"),
            );
        }
        "/api/v1/message/attachment" => {
            let fields = multipart(request);
            for key in fields.keys() {
                check.rule(
                    [
                        "chatGuid",
                        "tempGuid",
                        "name",
                        "method",
                        "attachment",
                        "selectedMessageGuid",
                        "isAudioMessage",
                        "effectId",
                        "subject",
                        "partIndex",
                    ]
                    .contains(&key.as_str()),
                    || format!("message/attachment: `{key}` is not a field of the route"),
                );
            }
            for key in ["chatGuid", "tempGuid", "name", "method", "attachment"] {
                check.rule(fields.get(key).is_some_and(|v| !v.is_empty()), || {
                    format!("message/attachment: `{key}` is required")
                });
            }
            let method = fields.get("method").map(String::as_str).unwrap_or_default();
            check.rule(["apple-script", "private-api"].contains(&method), || {
                format!("message/attachment.method: `{method}`")
            });
        }
        other => check.broken.push(format!(
            "`{other}`: not a route this test knows the rules of"
        )),
    }
}

fn rules(platform: Platform, request: &Recorded) -> Vec<String> {
    let mut check = Check::default();
    match platform {
        Platform::Whatsapp => whatsapp_rules(request, &mut check),
        Platform::Telegram => telegram_rules(request, &mut check),
        Platform::Twilio => twilio_rules(request, &mut check),
        Platform::BlueBubbles => bluebubbles_rules(request, &mut check),
    }
    check.broken
}

// ---- what the customer sees ----

/// What a request shows the customer: its texts in order, and the titles of the buttons or
/// rows of one message (for the uniqueness of clipped titles).
fn visible(platform: Platform, request: &Recorded) -> (Vec<String>, Vec<String>) {
    let mut texts = Vec::new();
    let mut titles = Vec::new();
    let push = |v: &Value, into: &mut Vec<String>| {
        if let Some(s) = v.as_str() {
            into.push(s.to_string());
        }
    };
    match platform {
        Platform::Whatsapp => {
            let body = request.json();
            push(&body["text"]["body"], &mut texts);
            for kind in ["image", "video", "document"] {
                push(&body[kind]["caption"], &mut texts);
            }
            let interactive = &body["interactive"];
            push(&interactive["header"]["text"], &mut texts);
            push(&interactive["body"]["text"], &mut texts);
            push(&interactive["footer"]["text"], &mut texts);
            for button in interactive["action"]["buttons"]
                .as_array()
                .into_iter()
                .flatten()
            {
                push(&button["reply"]["title"], &mut titles);
            }
            for section in interactive["action"]["sections"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for row in section["rows"].as_array().into_iter().flatten() {
                    push(&row["title"], &mut titles);
                    push(&row["description"], &mut texts);
                }
            }
        }
        Platform::Telegram => {
            let body = request.json();
            push(&body["text"], &mut texts);
            push(&body["caption"], &mut texts);
            for row in body["reply_markup"]["inline_keyboard"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for button in row.as_array().into_iter().flatten() {
                    push(&button["text"], &mut titles);
                }
            }
        }
        Platform::Twilio => {
            if let Some(body) = field(&form(request), "Body") {
                texts.push(body.to_string());
            }
        }
        Platform::BlueBubbles => push(&request.json()["message"], &mut texts),
    }
    (texts, titles)
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// What of the case's question and options did not reach the customer.
fn lost(case: &Case, requests: &[&Recorded]) -> Vec<String> {
    let (whole, options) = case.expected();
    if case.name == "reengagement_template" {
        let template = requests.iter().any(|r| match case.platform {
            Platform::Twilio => field(&form(r), "ContentSid").is_some(),
            _ => r.json()["type"] == "template",
        });
        if !template {
            return vec!["the re-engagement template is not sent".into()];
        }
    }
    let mut texts = Vec::new();
    let mut messages_titles = Vec::new();
    for request in requests {
        let (t, titles) = visible(case.platform, request);
        texts.extend(t);
        messages_titles.push(titles);
    }
    let all = squeeze(&texts.join(""));
    let mut out = Vec::new();
    for text in whole {
        if !all.contains(&squeeze(&text)) {
            out.push(format!(
                "the text ({} chars, starting `{}`) does not arrive whole across the case's requests",
                chars(&text),
                clip_text(&text, 40)
            ));
        }
    }
    for option in options {
        let in_text = texts.iter().any(|t| t.contains(&option));
        let as_title = messages_titles.iter().any(|titles| {
            titles.iter().any(|title| {
                let clipped = title
                    .strip_suffix('…')
                    .is_some_and(|prefix| !prefix.is_empty() && option.starts_with(prefix));
                (title == &option || clipped)
                    && titles.iter().filter(|other| *other == title).count() == 1
            })
        });
        let exact_title = messages_titles
            .iter()
            .flatten()
            .any(|title| title == &option);
        if !(in_text || as_title || exact_title) {
            out.push(format!(
                "the option `{option}` is not sent, nor as a clipped title unique in its message"
            ));
        }
    }
    out
}

// ---- the test ----

struct Violation {
    case: String,
    rule: String,
    request: String,
}

fn describe(request: &Recorded) -> String {
    let body = String::from_utf8_lossy(&request.body);
    format!(
        "{} {} {}",
        request.method,
        request.path,
        clip_text(&body, 600)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outbound_request_conforms_to_its_platforms_limits() {
    // The cases need the fake platform's address (BlueBubbles downloads an attachment from
    // it to send it), and the responder needs the cases.
    let api = FakeApi::start().await.expect("the fake platform");
    let all = cases(&api.url);
    let by_key: HashMap<String, Case> = all.iter().map(|c| (c.key(), c.clone())).collect();
    let gateway = start(api, Scripted(by_key)).await;

    let (scripted, plain): (Vec<&Case>, Vec<&Case>) = all.iter().partition(|c| c.refuse_first);
    gateway.run(&plain).await;
    gateway.quiet().await;
    for case in scripted {
        gateway.api.script([answer(
            400,
            r#"{"code":63016,"message":"Failed to send freeform message because you are outside the allowed window.","status":400}"#,
        )]);
        gateway.run(&[case]).await;
    }
    gateway.quiet().await;

    // Every request, to the case it belongs to.
    let mut owner: HashMap<(Platform, String), usize> = HashMap::new();
    for (i, case) in all.iter().enumerate() {
        owner.insert((case.platform, case.contact()), i);
        owner.insert((case.platform, format!("msg:{}", case.inbound_id())), i);
        owner.insert((case.platform, format!("cbq:43{:017}", case.index)), i);
    }
    let requests = gateway.api.requests();
    let mut by_case: Vec<Vec<&Recorded>> = vec![Vec::new(); all.len()];
    let mut violations = Vec::new();
    let mut checked = 0;
    let mut conforming = 0;
    let mut downloads = 0;
    for request in &requests {
        if request.method == Method::GET {
            // The gateway fetching an attachment to upload it (BlueBubbles): not a send.
            downloads += 1;
            continue;
        }
        checked += 1;
        let Some((platform, id)) = identify(request) else {
            violations.push(Violation {
                case: "(no case)".into(),
                rule: "a request to a route of no platform".into(),
                request: describe(request),
            });
            continue;
        };
        let case = owner.get(&(platform, id.clone())).copied();
        let label = match case {
            Some(i) => {
                by_case[i].push(request);
                all[i].label()
            }
            None => format!("{}/(no case: {id})", platform.name()),
        };
        let broken = rules(platform, request);
        if broken.is_empty() {
            conforming += 1;
        }
        for rule in broken {
            violations.push(Violation {
                case: label.clone(),
                rule,
                request: describe(request),
            });
        }
    }
    for (i, case) in all.iter().enumerate() {
        let failures = gateway.failures(case).await;
        for failure in &failures {
            println!("note: {}: a reply failed: {failure}", case.label());
        }
        let kinds: Vec<String> = by_case[i]
            .iter()
            .map(|r| kind_of(case.platform, r))
            .collect();
        println!(
            "case {}: {} request(s): {}",
            case.label(),
            kinds.len(),
            kinds.join(", ")
        );
        let sends: Vec<&Recorded> = by_case[i]
            .iter()
            .copied()
            .filter(|r| !is_indicator(r))
            .collect();
        if sends.is_empty() {
            violations.push(Violation {
                case: case.label(),
                rule: "the case produced no send at all".into(),
                request: format!("(none; failures: {failures:?})"),
            });
            continue;
        }
        for rule in lost(case, &sends) {
            violations.push(Violation {
                case: case.label(),
                rule: format!("content lost: {rule}"),
                request: format!("{} request(s)", sends.len()),
            });
        }
    }

    println!(
        "{conforming}/{checked} outbound requests conform ({} cases on {} platforms; {downloads} attachment downloads not counted)",
        all.len(),
        Platform::ALL.len()
    );
    let known = |v: &Violation| {
        KNOWN_VIOLATIONS
            .iter()
            .any(|(case, rule, _)| v.case == *case && v.rule.contains(rule))
    };
    let mut unexpected = Vec::new();
    for v in &violations {
        let tag = if known(v) { "known" } else { "NEW" };
        println!("[{tag}] {}: {}\n        {}", v.case, v.rule, v.request);
        if !known(v) {
            unexpected.push(format!("{}: {}", v.case, v.rule));
        }
    }
    let stale: Vec<&(&str, &str, &str)> = KNOWN_VIOLATIONS
        .iter()
        .filter(|(case, rule, _)| {
            !violations
                .iter()
                .any(|v| v.case == *case && v.rule.contains(rule))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "KNOWN_VIOLATIONS lists violations that no longer happen (remove them): {stale:?}"
    );
    assert!(
        unexpected.is_empty(),
        "{} outbound violation(s) not in KNOWN_VIOLATIONS:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

/// A receipt, typing indicator or callback answer: not a message the customer reads.
fn is_indicator(request: &Recorded) -> bool {
    let path = request.path.as_str();
    path.ends_with("/Indicators/Typing.json")
        || path.starts_with("/api/v1/chat/")
        || path.ends_with("/sendChatAction")
        || path.ends_with("/answerCallbackQuery")
        || (path.ends_with("/messages") && request.json().get("status").is_some())
}

/// A short name of a request's kind, for the coverage lines.
fn kind_of(platform: Platform, request: &Recorded) -> String {
    let last = request.path.rsplit('/').next().unwrap_or_default();
    match platform {
        Platform::Whatsapp => {
            let body = request.json();
            if body.get("status").is_some() {
                return "read+typing".into();
            }
            let kind = body["type"].as_str().unwrap_or("?");
            match body["interactive"]["type"].as_str() {
                Some(sub) => format!("interactive/{sub}"),
                None => kind.to_string(),
            }
        }
        Platform::Telegram => last.to_string(),
        Platform::Twilio => {
            let form = form(request);
            if last == "Typing.json" {
                "typing".into()
            } else if field(&form, "ContentSid").is_some() {
                "content-template".into()
            } else if field(&form, "MediaUrl").is_some() {
                "media".into()
            } else {
                format!(
                    "body({} chars)",
                    field(&form, "Body").map(chars).unwrap_or(0)
                )
            }
        }
        Platform::BlueBubbles => request
            .path
            .trim_start_matches("/api/v1/")
            .rsplit_once('/')
            .map_or(request.path.clone(), |(a, b)| {
                if a.starts_with("chat") {
                    format!("chat/{b}")
                } else {
                    format!("{a}/{b}")
                }
            }),
    }
}
