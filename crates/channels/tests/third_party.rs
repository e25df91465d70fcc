//! The 96 webhooks of `fixtures/inbound-samples.json`, taken from outside this project (other
//! libraries' fixtures, the platforms' docs, recordings; see `fixtures/inbound-samples.md`),
//! each signed for its channel as the platform signs, verified and parsed by the real
//! adapter: what each becomes is checked against what it must become.

use std::collections::BTreeMap;

use bytes::Bytes;
use concierge_channels::{ChannelAdapter, ChannelConfig, Registry, WebhookRequest};
use concierge_domain::{ChannelId, Content, EventKind, InboundEvent};

const SAMPLES: &str = include_str!("fixtures/inbound-samples.json");

/// The channels the samples were posted to, as the README names them.
fn registry() -> Registry {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let files = [
        (
            "wa",
            "kind = \"whatsapp\"\nphone_number_id = \"1122334455667\"\naccess_token = \"t\"\napp_secret = \"app-secret\"\nverify_token = \"v\"\n",
        ),
        (
            "wameta",
            "kind = \"whatsapp\"\nphone_number_id = \"106540352242922\"\naccess_token = \"t\"\napp_secret = \"app-secret\"\nverify_token = \"v\"\n",
        ),
        (
            "twilio",
            "kind = \"twilio_whatsapp\"\naccount_sid = \"ACtesttesttesttesttesttesttest0001\"\nauth_token = \"auth\"\nfrom = \"whatsapp:+201035460160\"\npublic_url = \"https://gateway.example.com/webhooks/twilio\"\n",
        ),
        (
            "twilio2",
            "kind = \"twilio_whatsapp\"\naccount_sid = \"ACtesttesttesttesttesttesttest0000\"\nauth_token = \"auth\"\nfrom = \"whatsapp:+14123456789\"\npublic_url = \"https://gateway.example.com/webhooks/twilio2\"\n",
        ),
        (
            "tg",
            "kind = \"telegram\"\nbot_token = \"123:abc\"\nsecret_token = \"tg-secret\"\n",
        ),
        (
            "imessage",
            "kind = \"bluebubbles\"\nserver_url = \"http://mac.local:1234\"\npassword = \"pw\"\nwebhook_secret = \"bb-secret\"\n",
        ),
    ];
    let channels: Vec<(ChannelId, ChannelConfig)> = files
        .iter()
        .map(|(id, text)| {
            let mut table: toml::Table = toml::from_str(text).unwrap();
            let kind = table.remove("kind").unwrap();
            let config = match kind.as_str().unwrap() {
                "whatsapp" => ChannelConfig::Whatsapp(table.try_into().unwrap()),
                "twilio_whatsapp" => ChannelConfig::TwilioWhatsapp(table.try_into().unwrap()),
                "telegram" => ChannelConfig::Telegram(table.try_into().unwrap()),
                "bluebubbles" => ChannelConfig::Bluebubbles(table.try_into().unwrap()),
                other => panic!("{other}"),
            };
            (ChannelId::parse(*id).unwrap(), config)
        })
        .collect();
    Registry::build(&channels, &reqwest::Client::new())
}

/// The sample as the platform posts it, signed for the adapter's secrets.
fn request(adapter: &dyn ChannelAdapter, sample: &serde_json::Value) -> WebhookRequest {
    let (body, content_type) = match sample.get("form") {
        Some(form) => {
            let pairs: Vec<(String, String)> = form
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let text = |i: usize| pair[i].as_str().unwrap_or_default().to_string();
                    (text(0), text(1))
                })
                .collect();
            (
                serde_urlencoded::to_string(&pairs).unwrap(),
                "application/x-www-form-urlencoded",
            )
        }
        None => (sample["body"].to_string(), "application/json"),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
    let mut request = WebhookRequest {
        headers,
        query: BTreeMap::new(),
        raw_query: None,
        body: Bytes::from(body),
    };
    adapter.sign(&mut request).unwrap();
    request
}

/// One line for what the events are: their kinds, and a message's content kind.
fn summary(events: &[InboundEvent]) -> String {
    if events.is_empty() {
        return "nothing".to_string();
    }
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Message(m) => format!("message:{}", content(&m.content)),
            EventKind::Edit { content: c, .. } => format!("edit:{}", content(c)),
            EventKind::Status { status, .. } => {
                format!("status:{}", format!("{status:?}").to_lowercase())
            }
            other => other.name().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn content(content: &Content) -> String {
    match content {
        Content::Text { .. } => "text".to_string(),
        Content::Media { kind, .. } => format!("media:{}", format!("{kind:?}").to_lowercase()),
        Content::Location { name: Some(_), .. } => "venue".to_string(),
        Content::Location { .. } => "location".to_string(),
        Content::Choice(_) => "choice".to_string(),
        Content::Reaction { emoji, .. } if emoji.is_empty() => "unreaction".to_string(),
        Content::Reaction { .. } => "reaction".to_string(),
        Content::Unsupported { kind } => format!("unsupported:{kind}"),
        Content::Contacts { contacts } => format!("contacts:{}", contacts.len()),
        Content::Deleted => "deleted".to_string(),
        Content::Order { items, .. } => format!("order:{}", items.len()),
        Content::FormReply { flow_token, .. } => {
            format!(
                "form_reply:{}",
                if flow_token.is_some() {
                    "token"
                } else {
                    "no token"
                }
            )
        }
        other => format!("{other:?}"),
    }
}

/// What each sample must become, in the file's order (see [`summary`]; a failed status shows
/// its code and reason, in lower case).
const EXPECTED: [&str; 96] = [
    /* 0 pywa/message.json:text */ "message:text",
    /* 1 pywa/message.json:image */ "message:media:image",
    /* 2 pywa/message.json:media_with_url */ "message:media:image",
    /* 3 pywa/message.json:video */ "message:media:video",
    /* 4 pywa/message.json:document */ "message:media:document",
    /* 5 pywa/message.json:audio */ "message:media:audio",
    /* 6 pywa/message.json:voice */ "message:media:audio",
    /* 7 pywa/message.json:static_sticker */ "message:media:sticker",
    /* 8 pywa/message.json:animated_sticker */ "message:media:sticker",
    /* 9 pywa/message.json:reaction */ "message:reaction",
    /* 10 pywa/message.json:unreaction_empty */ "message:unreaction",
    /* 11 pywa/message.json:unreaction_no_emoji */ "message:unreaction",
    /* 12 pywa/message.json:current_location */ "message:location",
    /* 13 pywa/message.json:chosen_location */ "message:venue",
    /* 14 pywa/message.json:contacts */ "message:contacts:3",
    /* 15 pywa/message.json:order */ "message:order:3",
    /* 16 pywa/message.json:unsupported */ "message:unsupported:unsupported",
    /* 17 pywa/message.json:unsupported_with_type */ "message:unsupported:unsupported",
    /* 18 pywa/message.json:reply */ "message:text",
    /* 19 pywa/message.json:forwarded */ "message:text",
    /* 20 pywa/message.json:forwarded_many_times */ "message:text",
    /* 21 pywa/message.json:interactive_message_with_err */
    "message:unsupported:interactive",
    /* 22 pywa/message.json:referral */ "message:text",
    /* 23 pywa/message_status.json:sent */ "status:sent",
    /* 24 pywa/message_status.json:delivered */ "status:delivered",
    /* 25 pywa/message_status.json:read */ "status:read",
    /* 26 pywa/message_status.json:played */ "status:read",
    /* 27 pywa/message_status.json:failed */
    "status:failed { code: some(\"130472\"), reason: \"user's number is part of an experiment\" }",
    /* 28 pywa/message_status.json:with_tracker */ "status:sent",
    /* 29 pywa/message_status.json:group */ "status:read",
    /* 30 pywa/callback_button.json:button */ "message:choice",
    /* 31 pywa/callback_button.json:quick_reply */ "message:choice",
    /* 32 pywa/callback_button.json:quick_reply_without_context */ "message:choice",
    /* 33 pywa/callback_selection.json:callback */ "message:choice",
    /* 34 pywa/callback_selection.json:description */ "message:choice",
    /* 35 pywa/flow_completion.json:completion */ "message:form_reply:token",
    /* 36 pywa/flow_completion.json:without_flow_token */ "message:form_reply:no token",
    /* 37 pywa/system.json:phone_number_change */ "contact_changed",
    /* 38 pywa/system.json:identity_change */ "identity_changed",
    /* 39 pywa/edited_message.json:image */ "edit:media:image",
    /* 40 pywa/deleted_message.json:revoke */ "edit:deleted",
    /* 41 meta-docs:webhooks/reference/messages/errors */ "channel_error",
    /* 42 meta-docs:webhooks/reference/messages/interactive(list_reply) */ "message:choice",
    /* 43 composed:status failed 131047 */
    "status:failed { code: some(\"131047\"), reason: \"re-engagement message\" }, window_closed",
    /* 44 eventpro:button reply (ButtonPayload) */ "message:choice",
    /* 45 botbuilder-community:text */ "message:text",
    /* 46 botbuilder-community:image */ "message:media:image",
    /* 47 botbuilder-community:location */ "message:venue",
    /* 48 botbuilder-community:delivered */ "status:delivered",
    /* 49 botbuilder-community:sent */ "status:sent",
    /* 50 composed:status undelivered 63016 */
    "status:failed { code: some(\"63016\"), reason: \"failed to send freeform message because you are outside the allowed window.\" }, window_closed",
    /* 51 composed:list reply (ListId/ListTitle) */ "message:choice",
    /* 52 teloxide:update:message:0 */ "message:text",
    /* 53 teloxide:update:issue_1107:0 */ "message:unsupported:story",
    /* 54 teloxide:update:issue_1107:1 */ "message:text",
    /* 55 teloxide:update:de_private_chat_text_message:0 */ "message:text",
    /* 56 teloxide:update:pinned_message_works:0 */ "nothing",
    /* 57 teloxide:update:dice_works:0 */ "message:text",
    /* 58 teloxide:update:new_update_kind_error:0 */ "nothing",
    /* 59 teloxide:update:issue_523:0 */ "nothing",
    /* 60 teloxide:update:message_reaction_updated:0 */ "message:reaction",
    /* 61 teloxide:update:message_reaction_updated:1 */ "message:unreaction",
    /* 62 teloxide:update:message_reaction_count_updated:0 */ "nothing",
    /* 63 teloxide:message:de_media_forwarded:0 */ "message:media:video",
    /* 64 teloxide:message:de_text:0 */ "message:text",
    /* 65 teloxide:message:de_sticker:0 */ "message:media:sticker",
    /* 66 teloxide:message:de_image:0 */ "message:media:image",
    /* 67 teloxide:message:issue_481:0 */ "message:venue",
    /* 68 teloxide:message:parse_caption_entities:0 */ "message:media:image",
    /* 69 teloxide:message:topic_message:0 */ "message:text",
    /* 70 teloxide:message:empty_message:0 */ "nothing",
    /* 71 teloxide:message:de_text:0 as edited_message */ "edit:text",
    /* 72 teloxide:cbq:deserialize:0 */ "nothing + answerCallbackQuery",
    /* 73 composed:callback_query with message+reply_markup */ "message:choice",
    /* 74 cxabot-2018:sticker */ "message:media:sticker",
    /* 75 cxabot-2018:voice */ "message:media:audio",
    /* 76 cxabot-2018:location */ "message:location",
    /* 77 cxabot-2018:contact */ "message:contacts:1",
    /* 78 cxabot-2018:document */ "message:media:document",
    /* 79 ptb-2024:document */ "message:media:document",
    /* 80 ptb-2024:voice */ "message:media:audio",
    /* 81 ptb-2024:photo */ "message:media:image",
    /* 82 recorded:my_chat_member administrator */ "nothing",
    /* 83 bb:new-message text (DM) */ "message:text",
    /* 84 bb:new-message with attachment */ "message:media:image",
    /* 85 bb:new-message group chat */ "message:text",
    /* 86 bb:new-message tapback love */ "message:reaction",
    /* 87 bb:new-message isFromMe echo */ "nothing",
    /* 88 bb:updated-message read (server webhook shape, no chats) */ "status:read",
    /* 89 bb:updated-message delivered (with chats, socket shape) */ "status:delivered",
    /* 90 bb:message-send-error */
    "status:failed { code: some(\"4\"), reason: \"the mac could not send the message (error 4)\" }, status:failed { code: some(\"4\"), reason: \"the mac could not send the message (error 4)\" }",
    /* 91 bb:typing-indicator display=true */ "typing",
    /* 92 bb:typing-indicator display=false */ "nothing",
    /* 93 bb:group-name-change */ "nothing",
    /* 94 thirdparty-doc:bluebubbles-webhook README curl */ "message:text",
    /* 95 thirdparty-doc:rust adapter docstring */ "message:text",
];

/// Samples whose expected form needs what is not built yet, each with what it needs. The test
/// fails when one of them starts to conform (move it out of this list) or when any other
/// sample stops conforming.
const PENDING: &[(usize, &str)] = &[
    (
        37,
        "a changed number re-links the contact (new wa_id the id, old one an alias); no reply",
    ),
    (
        38,
        "an identity change is noted on the contact and shown to concierges; no reply",
    ),
    (
        41,
        "value.errors is kept, counted and applied (a rate limit slows the number's pacing)",
    ),
    (
        72,
        "a callback_query with only inline_message_id is answered so the button stops spinning",
    ),
];

/// What every sample becomes today, in the file's order.
fn outcomes() -> Vec<(String, String)> {
    let samples: Vec<serde_json::Value> = serde_json::from_str(SAMPLES).unwrap();
    assert_eq!(samples.len(), 96);
    let registry = registry();
    samples
        .iter()
        .map(|sample| {
            let channel = sample["channel"].as_str().unwrap();
            let adapter = registry.get(channel).unwrap();
            let request = request(adapter.as_ref(), sample);
            adapter
                .verify(&request)
                .unwrap_or_else(|e| panic!("{}: {e}", sample["name"]));
            let got = match adapter.parse(&request) {
                Ok(events) => summary(&events),
                Err(e) => format!("error: {e}"),
            };
            (
                sample["name"].as_str().unwrap().to_string(),
                got.to_lowercase(),
            )
        })
        .collect()
}

#[test]
fn every_third_party_sample_becomes_what_it_must() {
    let outcomes = outcomes();
    let mut wrong = Vec::new();
    let mut conforming = 0;
    for (i, (name, got)) in outcomes.iter().enumerate() {
        let pending = PENDING.iter().find(|(p, _)| *p == i);
        let conforms = got == &EXPECTED[i].to_lowercase();
        match (conforms, pending) {
            (true, None) => conforming += 1,
            (false, Some(_)) => {}
            (true, Some(_)) => {
                wrong.push(format!("{i} {name} now conforms: take it out of PENDING"))
            }
            (false, None) => wrong.push(format!(
                "{i} {name}: became `{got}`, must become `{}`",
                EXPECTED[i]
            )),
        }
    }
    println!("{conforming}/96 inbound samples conform; pending:");
    for (i, needs) in PENDING {
        println!("  {i} {}: {needs}", outcomes[*i].0);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Nothing a platform sends that is not the customer saying something (a status, a receipt,
/// typing, an edit, a system message) becomes a message the agents would answer.
#[test]
fn no_status_receipt_typing_or_edit_sample_becomes_a_message() {
    let outcomes = outcomes();
    for (i, (name, got)) in outcomes.iter().enumerate() {
        let says = EXPECTED[i].starts_with("message:");
        if !says {
            assert!(
                !got.contains("message:"),
                "{i} {name}: `{got}` would be answered"
            );
        }
    }
}
