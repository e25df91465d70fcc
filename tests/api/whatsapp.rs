//! WhatsApp through the Cloud API: every fixture through the real webhook with its real
//! signature, outbound shapes checked against a fake Graph API, statuses, the reply window,
//! and platform faults.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierge::domain::{
    Author, ChannelId, Choice, Content, ConversationId, DeliveryStatus, Direction, MediaKind,
    MediaRef, Message,
};
use concierge::orchestrator::{Decision, Responder, ResponderError, Turn};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_api::{Answer, FakeApi, answer};
use crate::helpers::{TestApp, eventually, spawn_with_channel};

const SECRET: &str = "fake-app-secret-0001";
const VERIFY_TOKEN: &str = "fake-verify-token-0001";
const CUSTOMER: &str = "15550100001";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

pub fn signatures() -> Value {
    serde_json::from_slice(&fixture("SIGNATURES.json")).expect("signatures")
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Wa {
    app: TestApp,
    graph: FakeApi,
}

async fn start_with(template: bool, responder: Option<Arc<dyn Responder>>) -> Wa {
    let graph = FakeApi::start().await.expect("the fake platform");
    let template = if template {
        "reengagement_template = { name = \"reconnect_fake\", language = \"en_US\", params = [\"Maison Lumière\"] }\n"
    } else {
        ""
    };
    let app = spawn_with_channel(
        "whatsapp.toml",
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"test-access-token\"\napp_secret = \"{SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\napi_base = \"{}/v23.0\"\n{template}",
            graph.url
        ),
        responder,
    )
    .await;
    Wa { app, graph }
}

async fn start() -> Wa {
    start_with(true, None).await
}

async fn conversation_of(store: &concierge::store::SharedStore, contact: &str) -> ConversationId {
    crate::helpers::conversation_in(store, "whatsapp", contact).await
}

/// A text message from the customer, stamped `age` ago.
fn text_payload(wamid: &str, text: &str, age: Duration) -> Vec<u8> {
    let timestamp = (std::time::SystemTime::now() - age)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
            "contacts": [{ "profile": { "name": "Test User" }, "wa_id": CUSTOMER }],
            "messages": [{ "from": CUSTOMER, "id": wamid, "timestamp": timestamp.to_string(),
                           "type": "text", "text": { "body": text } }]
        }}]}]
    }))
    .unwrap()
}

fn status_payload(wamid: &str, status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
            "statuses": [{ "id": wamid, "status": status, "timestamp": "1767225690", "recipient_id": CUSTOMER }]
        }}]}]
    }))
    .unwrap()
}

impl Wa {
    async fn post_signed(&self, body: Vec<u8>, signature: Option<String>) -> u16 {
        let mut request = self
            .app
            .client
            .post(self.app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.body(body).send().await.unwrap().status().as_u16()
    }

    async fn post(&self, body: Vec<u8>) {
        let signature = sign(&body);
        assert_eq!(self.post_signed(body, Some(signature)).await, 200);
    }

    async fn post_fixture(&self, name: &str) {
        let signature = signatures()["whatsapp_x_hub_signature_256"][name]
            .as_str()
            .expect("a signature for the fixture")
            .to_string();
        assert_eq!(self.post_signed(fixture(name), Some(signature)).await, 200);
    }

    async fn messages(&self, contact: &str) -> Vec<Message> {
        self.app
            .store()
            .messages(&conversation_of(self.app.store(), contact).await, 0, 1000)
            .await
            .unwrap()
    }

    async fn inbound(&self, contact: &str) -> Vec<Message> {
        let mut messages = Vec::new();
        let store = self.app.store().clone();
        eventually("the message is stored", || {
            let store = store.clone();
            let contact = contact.to_string();
            async move {
                !store
                    .messages(&conversation_of(&store, &contact).await, 0, 10)
                    .await
                    .unwrap()
                    .is_empty()
            }
        })
        .await;
        for m in self.messages(contact).await {
            if m.direction == Direction::Inbound {
                messages.push(m);
            }
        }
        messages
    }

    async fn outbound(&self) -> Vec<Message> {
        self.messages(CUSTOMER)
            .await
            .into_iter()
            .filter(|m| m.direction == Direction::Outbound)
            .collect()
    }

    async fn wait_sends(&self, n: usize) -> Vec<Value> {
        let graph = self.graph.clone();
        eventually(&format!("{n} sends reach the Graph API"), || {
            let graph = graph.clone();
            async move { graph.sends().len() >= n }
        })
        .await;
        self.graph
            .sends()
            .into_iter()
            .map(without_callback_data)
            .collect()
    }
}

/// A send as the platform's examples show it: every send also names our reply in
/// `biz_opaque_callback_data` (checked here, then set aside), which Meta echoes in the
/// reply's status webhooks.
fn without_callback_data(mut send: Value) -> Value {
    if let Some(body) = send.as_object_mut()
        && body.contains_key("to")
    {
        let tag = body
            .remove("biz_opaque_callback_data")
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_default();
        assert!(
            tag.starts_with("cm=") && tag.contains(";p="),
            "every send names its reply: {send}"
        );
    }
    send
}

// ---- every inbound fixture becomes the expected events ----

async fn one_inbound(name: &str, contact: &str) -> Message {
    let wa = start_with(true, Some(Arc::new(Silent))).await;
    wa.post_fixture(name).await;
    let inbound = wa.inbound(contact).await;
    assert_eq!(inbound.len(), 1, "{name}");
    let message = inbound.into_iter().next().unwrap();
    assert_eq!(message.contact.as_str(), contact);
    assert_eq!(
        message.conversation,
        conversation_of(wa.app.store(), contact).await
    );
    assert_eq!(message.channel.as_str(), "whatsapp");
    assert_eq!(message.author, Author::Customer);
    message
}

/// Answers nothing, so fixture tests see only what came in.
struct Silent;

#[async_trait]
impl Responder for Silent {
    async fn respond(&self, _turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        Ok(None)
    }
}

#[tokio::test]
async fn fixture_text() {
    let m = one_inbound("whatsapp_text.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::text("Hi! Can you book a table for two at 7pm tonight?")
    );
    assert_eq!(
        m.platform_id.unwrap().as_str(),
        "wamid.RkFLRS1XQU1JRC1JTkJPVU5ELTAwMDEtVEVTVA=="
    );
    assert_eq!(m.created_at, 1_767_225_660_000);
}

#[tokio::test]
async fn fixture_image() {
    let m = one_inbound("whatsapp_image.json", CUSTOMER).await;
    assert_eq!(
        m.content.without_kept(),
        Content::Media {
            kind: MediaKind::Image,
            mime: Some("image/jpeg".into()),
            caption: Some("This is the dish I want to order".into()),
            media: MediaRef("300000000000003".into()),
            kept: None,
        }
    );
}

#[tokio::test]
async fn fixture_location() {
    let m = one_inbound("whatsapp_location.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::Location {
            latitude: 37.774929,
            longitude: -122.419416,
            name: Some("Example Cafe (fake)".into()),
            address: Some("1 Example Street, Testville, CA 00000".into()),
        }
    );
}

const OUR_FIRST: &str = "wamid.RkFLRS1XQU1JRC1PVVRCT1VORC0wMDAxLVRFU1Q=";

#[tokio::test]
async fn fixture_interactive_button_reply() {
    let m = one_inbound("whatsapp_interactive_reply.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::Choice(Choice::new("confirm_booking_42", "Confirm"))
    );
    assert_eq!(m.reply_to.unwrap().as_str(), OUR_FIRST);
}

#[tokio::test]
async fn fixture_interactive_list_reply() {
    let m = one_inbound("whatsapp_interactive_list_reply.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::Choice(Choice {
            id: "slot_1900".into(),
            title: "7:00 PM".into(),
            description: Some("Terrace, table for 2".into()),
            section: None,
        })
    );
    assert_eq!(m.reply_to.unwrap().as_str(), OUR_FIRST);
}

#[tokio::test]
async fn fixture_template_quick_reply() {
    let m = one_inbound("whatsapp_template_quick_reply.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::Choice(Choice::new("RESCHEDULE", "Reschedule"))
    );
    assert_eq!(m.reply_to.unwrap().as_str(), OUR_FIRST);
}

#[tokio::test]
async fn fixture_reaction() {
    let m = one_inbound("whatsapp_reaction.json", CUSTOMER).await;
    assert_eq!(
        m.content,
        Content::Reaction {
            target: OUR_FIRST.into(),
            emoji: "👍".into()
        }
    );
}

#[tokio::test]
async fn fixture_username_user_is_keyed_on_the_business_scoped_id() {
    let bsuid = "user.fa4efa4efa4efa4efa4efa4efa4efa4efa4efa4efa4efa4efa4efa4efa4e0001";
    let m = one_inbound("whatsapp_text_username_bsuid.json", bsuid).await;
    assert_eq!(m.content, Content::text("Hello from a username user"));
}

/// Sends one reply whose platform id is `wamid`, so status fixtures have a message to move.
async fn with_sent_reply(wamid: &str) -> Wa {
    let wa = start().await;
    wa.graph.script(vec![answer(
        200,
        &json!({ "messaging_product": "whatsapp", "messages": [{ "id": wamid }] }).to_string(),
    )]);
    wa.post(text_payload(
        "wamid.IN-1",
        "What are your opening hours?",
        Duration::ZERO,
    ))
    .await;
    wa.wait_sends(1).await;
    let store = wa.app.store().clone();
    eventually("the reply is marked sent", || {
        let store = store.clone();
        async move {
            let messages = store
                .messages(&conversation_of(&store, CUSTOMER).await, 0, 10)
                .await
                .unwrap();
            messages.iter().any(|m| m.status == DeliveryStatus::Sent)
        }
    })
    .await;
    wa
}

async fn reply_status(wa: &Wa) -> DeliveryStatus {
    wa.outbound().await[0].status.clone()
}

#[tokio::test]
async fn fixture_status_sent_and_read() {
    let wa = with_sent_reply(OUR_FIRST).await;
    wa.post_fixture("whatsapp_status_sent.json").await;
    wa.post_fixture("whatsapp_status_read.json").await;
    eventually("read", || async {
        reply_status(&wa).await == DeliveryStatus::Read
    })
    .await;
}

#[tokio::test]
async fn fixture_batched_status_and_text() {
    let wa = with_sent_reply(OUR_FIRST).await;
    wa.post_fixture("whatsapp_batched_status_and_text.json")
        .await;
    eventually("delivered", || async {
        reply_status(&wa).await == DeliveryStatus::Delivered
    })
    .await;
    let inbound = wa.inbound(CUSTOMER).await;
    assert!(
        inbound
            .iter()
            .any(|m| m.platform_id.as_ref().unwrap().as_str()
                == "wamid.RkFLRS1XQU1JRC1JTkJPVU5ELTAwMDEtVEVTVA==")
    );
}

#[tokio::test]
async fn fixture_status_failed_131047_keeps_the_code_and_re_engages() {
    let second = "wamid.RkFLRS1XQU1JRC1PVVRCT1VORC0wMDAyLVRFU1Q=";
    let wa = with_sent_reply(second).await;
    wa.post_fixture("whatsapp_status_failed.json").await;
    // The failed reply keeps Meta's code and title, and the re-engagement template goes out.
    let sends = wa.wait_sends(2).await;
    assert_eq!(sends[1]["type"], "template");
    assert_eq!(sends[1]["template"]["name"], "reconnect_fake");
    let outbound = wa.outbound().await;
    assert_eq!(
        outbound[0].status,
        DeliveryStatus::Failed {
            code: Some("131047".into()),
            reason: "Re-engagement message".into()
        }
    );
    // Once: the same failed status again re-engages nothing more.
    wa.post_fixture("whatsapp_status_failed.json").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wa.graph.sends().len(), 2);
}

#[tokio::test]
async fn statuses_out_of_order_leave_the_message_read() {
    let wa = with_sent_reply("wamid.OUT-A").await;
    for status in ["read", "delivered", "sent", "delivered"] {
        wa.post(status_payload("wamid.OUT-A", status)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reply_status(&wa).await, DeliveryStatus::Read);
}

// ---- signatures and the handshake ----

#[tokio::test]
async fn forged_changed_or_missing_signatures_get_401_and_store_nothing() {
    let wa = start().await;
    let body = fixture("whatsapp_text.json");
    let good = signatures()["whatsapp_x_hub_signature_256"]["whatsapp_text.json"]
        .as_str()
        .unwrap()
        .to_string();
    let mut changed = body.clone();
    let at = changed.iter().position(|b| *b == b'H').unwrap();
    changed[at] = b'h';
    let forged = format!("sha256={}", "0".repeat(64));
    for (body, signature) in [
        (body.clone(), Some(forged)),
        (changed, Some(good.clone())),
        (body.clone(), None),
        (body.clone(), Some("sha256=not-hex".to_string())),
        (body.clone(), Some(good[7..].to_string())),
    ] {
        assert_eq!(wa.post_signed(body, signature).await, 401);
    }
    assert!(wa.app.store().pending(0, 10).await.unwrap().is_empty());
    assert!(wa.messages(CUSTOMER).await.is_empty());
}

#[tokio::test]
async fn the_verification_handshake_answers_the_challenge_for_the_right_token_only() {
    let wa = start().await;
    let get = |query: String| {
        let client = wa.app.client.clone();
        let url = wa.app.url(&format!("/webhooks/whatsapp?{query}"));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let request = String::from_utf8(fixture("whatsapp_verify_get.txt")).unwrap();
    let query = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.split_once('?'))
        .map(|(_, q)| q.to_string())
        .unwrap();
    assert_eq!(get(query.clone()).await, (200, "1158201444".to_string()));
    let wrong = query.replace(VERIFY_TOKEN, "wrong-token");
    assert_eq!(get(wrong).await.0, 403);
    let not_subscribe = query.replace("subscribe", "unsubscribe");
    assert_eq!(get(not_subscribe).await.0, 403);
}

// ---- outbound shapes ----

/// Answers each keyword with one kind of content, as an agent might.
struct Shapes;

#[async_trait]
impl Responder for Shapes {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let text = turn.text().unwrap_or_default();
        let mut quote = false;
        let content = match text.as_str() {
            "text" => Content::text("Your table for 2 at 7:00 PM is confirmed."),
            "context" => {
                quote = true;
                Content::text("Sure — checking availability now.")
            }
            "buttons" => Content::Choices {
                body: "Shall I confirm your table for 2 at 7:00 PM?".into(),
                choices: vec![
                    Choice::new("confirm_booking_42", "Confirm"),
                    Choice::new("change_booking_42", "Change"),
                ],
                header: None,
                footer: Some("Concierge (test)".into()),
                button: None,
            },
            "list" => Content::Choices {
                body: "Pick a time for tonight.".into(),
                choices: vec![
                    Choice {
                        id: "slot_1900".into(),
                        title: "7:00 PM".into(),
                        description: Some("Terrace, table for 2".into()),
                        section: Some("Evening".into()),
                    },
                    Choice {
                        id: "slot_2000".into(),
                        title: "8:00 PM".into(),
                        description: Some("Main room".into()),
                        section: Some("Evening".into()),
                    },
                ],
                header: Some("Available times".into()),
                footer: None,
                button: Some("Choose time".into()),
            },
            "image" => Content::Media {
                kind: MediaKind::Image,
                mime: None,
                caption: Some("Menu (fake)".into()),
                media: MediaRef("400000000000004".into()),
                kept: None,
            },
            "template" => Content::template(
                "booking_reminder_fake",
                "en_US",
                vec!["Test User".into(), "7:00 PM".into()],
            ),
            other => Content::text(format!("re: {other}")),
        };
        Ok(Some(Decision {
            by: concierge::orchestrator::DecidedBy::Other("shapes"),
            replies: vec![(Author::Agent("test".into()), content)],
            thread: None,
            quote,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

/// Every key of `expected` is in `actual` with the same value (recursively).
fn assert_includes(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, value) in e {
                let Some(found) = a.get(key) else {
                    panic!("{path}.{key} missing in {actual}");
                };
                assert_includes(found, value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} vs {expected}");
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert_includes(a, e, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

#[tokio::test]
async fn outbound_bodies_match_the_platform_shapes() {
    let wa = start_with(true, Some(Arc::new(Shapes))).await;
    let cases = [
        ("text", "whatsapp_send_text.json", true),
        ("context", "whatsapp_send_reply_in_context.json", false),
        ("buttons", "whatsapp_send_buttons.json", true),
        ("list", "whatsapp_send_list.json", true),
        ("image", "whatsapp_send_image.json", true),
        ("template", "whatsapp_send_template.json", true),
    ];
    for (i, (keyword, expected, exact)) in cases.iter().enumerate() {
        let wamid = if *keyword == "context" {
            "wamid.RkFLRS1XQU1JRC1JTkJPVU5ELTAwMDEtVEVTVA==".to_string()
        } else {
            format!("wamid.IN-{i}")
        };
        wa.post(text_payload(&wamid, keyword, Duration::ZERO)).await;
        let sends = wa.wait_sends(i + 1).await;
        let sent = &sends[i];
        let expected: Value =
            serde_json::from_slice(&fixture(&format!("outbound/{expected}"))).unwrap();
        if *exact {
            assert_eq!(sent, &expected, "{keyword}");
        } else {
            assert_includes(sent, &expected, keyword);
        }
    }
    // The bearer token went with every call.
    for request in wa.graph.requests() {
        assert_eq!(
            request.headers.get("authorization").unwrap(),
            "Bearer test-access-token"
        );
        assert!(request.path.starts_with("/v23.0/100000000000001/messages"));
    }
}

#[tokio::test]
async fn a_turn_marks_the_message_read_with_the_typing_indicator() {
    let wa = start_with(true, Some(Arc::new(Shapes))).await;
    wa.post(text_payload(
        "wamid.RkFLRS1XQU1JRC1JTkJPVU5ELTAwMDEtVEVTVA==",
        "text",
        Duration::ZERO,
    ))
    .await;
    wa.wait_sends(1).await;
    let graph = wa.graph.clone();
    eventually("the read receipt", || {
        let graph = graph.clone();
        async move { !graph.receipts().is_empty() }
    })
    .await;
    let expected: Value =
        serde_json::from_slice(&fixture("outbound/whatsapp_mark_read_typing.json")).unwrap();
    assert_eq!(wa.graph.receipts()[0], expected);
}

// ---- the 24-hour window ----

#[tokio::test]
async fn a_reply_25_hours_after_the_customer_wrote_goes_as_the_template() {
    let wa = start().await;
    wa.post(text_payload(
        "wamid.OLD-1",
        "What are your opening hours?",
        Duration::from_secs(25 * 3600),
    ))
    .await;
    let sends = wa.wait_sends(1).await;
    assert_eq!(
        sends[0],
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "template",
            "template": {
                "name": "reconnect_fake",
                "language": { "code": "en_US" },
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Maison Lumière" }] }]
            }
        })
    );
}

#[tokio::test]
async fn without_a_template_a_reply_outside_the_window_fails_with_a_clear_reason() {
    let wa = start_with(false, None).await;
    wa.post(text_payload(
        "wamid.OLD-1",
        "What are your opening hours?",
        Duration::from_secs(25 * 3600),
    ))
    .await;
    eventually("the reply is marked failed", || async {
        wa.outbound()
            .await
            .first()
            .is_some_and(|m| matches!(m.status, DeliveryStatus::Failed { .. }))
    })
    .await;
    let DeliveryStatus::Failed { reason, .. } = reply_status(&wa).await else {
        unreachable!()
    };
    assert!(reason.contains("24-hour"), "{reason}");
    assert!(reason.contains("reengagement_template"), "{reason}");
    assert!(wa.graph.sends().is_empty());
}

#[tokio::test]
async fn a_131047_answer_is_reconciled_with_the_template() {
    let wa = start().await;
    let error = fixture("outbound/whatsapp_error_response.json");
    let error = String::from_utf8(error)
        .unwrap()
        .replace("131056", "131047");
    wa.graph.script(vec![answer(400, &error)]);
    wa.post(text_payload(
        "wamid.IN-1",
        "What are your opening hours?",
        Duration::ZERO,
    ))
    .await;
    let sends = wa.wait_sends(2).await;
    assert_eq!(sends[0]["type"], "text");
    assert_eq!(sends[1]["type"], "template");
    eventually("sent", || async {
        reply_status(&wa).await == DeliveryStatus::Sent
    })
    .await;
}

// ---- faults ----

#[tokio::test]
async fn rate_limits_and_errors_then_success_deliver_each_reply_once_in_order() {
    let wa = start_with(true, Some(Arc::new(Shapes))).await;
    let pair_limit = String::from_utf8(fixture("outbound/whatsapp_error_response.json")).unwrap();
    let throughput = pair_limit.replace("131056", "130429");
    wa.graph.script(vec![
        Answer {
            status: 429,
            body: "{}".into(),
            retry_after: Some(1),
        },
        answer(400, &throughput),
        answer(500, "{}"),
        answer(400, &pair_limit.replace("131056", "131000")),
    ]);
    for i in 0..4 {
        wa.post(text_payload(
            &format!("wamid.IN-{i}"),
            &format!("m{i}"),
            Duration::ZERO,
        ))
        .await;
    }
    // 4 failed attempts, then the 4 replies.
    let graph = wa.graph.clone();
    eventually("every reply delivered", || {
        let graph = graph.clone();
        async move { graph.sends().len() >= 8 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sends = wa.graph.sends();
    assert_eq!(sends.len(), 8, "{sends:?}");
    // The first four attempts were all the first reply (the conversation waits for it).
    let texts: Vec<&str> = sends
        .iter()
        .map(|s| s["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts[..5], ["re: m0"; 5]);
    assert_eq!(texts[5..], ["re: m1", "re: m2", "re: m3"]);
    let outbound = wa.outbound().await;
    assert!(outbound.iter().all(|m| m.status == DeliveryStatus::Sent));
}

#[tokio::test]
async fn media_is_fetched_on_demand_with_the_bearer_token() {
    let graph = FakeApi::start().await.expect("the fake platform");
    let config: concierge::channels::whatsapp::WhatsappConfig = toml::from_str(&format!(
        "phone_number_id = \"100000000000001\"\naccess_token = \"tok\"\napp_secret = \"s\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\nmedia_max_bytes = 1000\n",
        graph.url
    ))
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let adapter = concierge::channels::whatsapp::Whatsapp::new(
        ChannelId::parse("whatsapp").unwrap(),
        config.clone(),
        reqwest::Client::new(),
    );
    use concierge::channels::ChannelAdapter;
    let media = adapter
        .fetch_media(&MediaRef("300000000000003".into()))
        .await
        .unwrap();
    assert_eq!(media.bytes.as_ref(), b"FAKE-JPEG-BYTES");
    assert_eq!(media.mime.as_deref(), Some("image/jpeg"));
    let requests = graph.requests();
    assert_eq!(requests[0].path, "/v23.0/300000000000003");
    assert!(requests[1].path.starts_with("/download/"));
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("authorization").unwrap() == "Bearer tok")
    );
    assert!(matches!(
        adapter.fetch_media(&MediaRef("missing".into())).await,
        Err(concierge::channels::MediaError::NotFound)
    ));
    let mut small = config;
    small.media_max_bytes = 4;
    let adapter = concierge::channels::whatsapp::Whatsapp::new(
        ChannelId::parse("whatsapp").unwrap(),
        small,
        reqwest::Client::new(),
    );
    assert!(matches!(
        adapter
            .fetch_media(&MediaRef("300000000000003".into()))
            .await,
        Err(concierge::channels::MediaError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_reaction_gets_no_reply() {
    let wa = start().await;
    wa.post_fixture("whatsapp_reaction.json").await;
    let store = wa.app.store().clone();
    eventually("the reaction is processed", || {
        let store = store.clone();
        async move {
            !store
                .messages(&conversation_of(&store, CUSTOMER).await, 0, 1)
                .await
                .unwrap()
                .is_empty()
                && store.pending(0, 1).await.unwrap().is_empty()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(wa.outbound().await.is_empty());
    assert!(wa.graph.sends().is_empty());
}

#[tokio::test]
async fn a_customer_keeps_one_conversation_when_meta_adds_their_business_scoped_id() {
    let wa = start_with(true, Some(Arc::new(Silent))).await;
    // Before: the phone number only (the fixture's older shape).
    wa.post_fixture("whatsapp_text.json").await;
    // Then both ids, then the business-scoped id alone (the customer took a username).
    let bsuid = "US.13491208655302741918";
    for (wamid, from) in [("wamid.BOTH", CUSTOMER), ("wamid.ALONE", "")] {
        let mut payload: Value =
            serde_json::from_slice(&text_payload(wamid, "hello again", Duration::ZERO)).unwrap();
        let value = &mut payload["entry"][0]["changes"][0]["value"];
        value["messages"][0]["from"] = json!(from);
        value["messages"][0]["from_user_id"] = json!(bsuid);
        value["contacts"][0]["wa_id"] = json!(from);
        value["contacts"][0]["user_id"] = json!(bsuid);
        wa.post(serde_json::to_vec(&payload).unwrap()).await;
    }
    let store = wa.app.store().clone();
    eventually("three messages in one conversation", || {
        let store = store.clone();
        async move {
            store
                .messages(&conversation_of(&store, CUSTOMER).await, 0, 10)
                .await
                .unwrap()
                .len()
                == 3
        }
    })
    .await;
    assert!(wa.messages(bsuid).await.is_empty());
}

/// A message the customer deleted keeps its place in the thread, without its words, and is
/// not answered: the revoke is an edit to the deleted marker.
#[tokio::test]
async fn a_revoked_message_loses_its_words_and_is_not_answered() {
    let wa = start_with(true, Some(Arc::new(Silent))).await;
    wa.post(text_payload(
        "wamid.REVOKE-ME",
        "my card is 4970 1234",
        Duration::ZERO,
    ))
    .await;
    wa.inbound(CUSTOMER).await;
    let revoke = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
            "contacts": [{ "profile": { "name": "Test User" }, "wa_id": CUSTOMER }],
            "messages": [{ "from": CUSTOMER, "id": "wamid.THE-REVOKE", "timestamp": "1767225700",
                           "type": "revoke", "revoke": { "original_message_id": "wamid.REVOKE-ME" } }]
        }}]}]
    }))
    .unwrap();
    wa.post(revoke).await;
    eventually("the message reads as deleted", || async {
        wa.inbound(CUSTOMER)
            .await
            .iter()
            .any(|m| m.content == Content::Deleted)
    })
    .await;
    let inbound = wa.inbound(CUSTOMER).await;
    assert_eq!(
        inbound.len(),
        1,
        "a revoke is not a new message: {inbound:?}"
    );
    assert_eq!(Content::Deleted.describe(), "[deleted by the customer]");
}
