//! iMessage through BlueBubbles: every fixture through the webhook with its URL secret,
//! sends checked against a fake BlueBubbles server, and our own echoes left unanswered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierge::domain::{
    Author, ChannelId, Content, ConversationId, DeliveryStatus, MediaKind, MediaRef, Message,
};
use concierge::orchestrator::{Decision, Responder, ResponderError, Turn};
use serde_json::{Value, json};

use crate::fake_api::{FakeApi, answer};
use crate::helpers::{TestApp, eventually, first_reply, spawn_with_channel, until_a_reply_is_sent};
use crate::whatsapp::fixture;

const CHAT: &str = "iMessage;-;+15550100001";
const SECRET: &str = "bb-webhook-secret-0001";

struct Bb {
    app: TestApp,
    server: FakeApi,
}

async fn start(responder: Option<Arc<dyn Responder>>) -> Bb {
    let server = FakeApi::start().await.expect("the fake platform");
    let app = spawn_with_channel(
        "imessage.toml",
        format!(
            "kind = \"bluebubbles\"\nserver_url = \"{}\"\npassword = \"bb-password\"\nwebhook_secret = \"{SECRET}\"\n",
            server.url
        ),
        responder,
    )
    .await;
    Bb { app, server }
}

async fn conversation(store: &concierge::store::SharedStore) -> ConversationId {
    crate::helpers::conversation_in(store, "imessage", CHAT).await
}

impl Bb {
    async fn post_with(&self, body: Vec<u8>, secret: Option<&str>) -> u16 {
        let url = match secret {
            Some(secret) => self.app.url(&format!("/webhooks/imessage?secret={secret}")),
            None => self.app.url("/webhooks/imessage"),
        };
        self.app
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn post_fixture(&self, name: &str) {
        assert_eq!(self.post_with(fixture(name), Some(SECRET)).await, 200);
    }

    async fn messages(&self) -> Vec<Message> {
        self.app
            .store()
            .messages(&conversation(self.app.store()).await, 0, 100)
            .await
            .unwrap()
    }

    async fn first_inbound(&self) -> Message {
        crate::helpers::first_inbound(self.app.store(), &conversation(self.app.store()).await).await
    }

    async fn wait_sends(&self, n: usize) -> Vec<(String, Value)> {
        let server = self.server.clone();
        eventually(&format!("{n} sends reach BlueBubbles"), || {
            let server = server.clone();
            async move { server.bluebubbles_sends().len() >= n }
        })
        .await;
        self.server.bluebubbles_sends()
    }

    async fn idle(&self) {
        let store = self.app.store().clone();
        eventually("the inbox is drained", || {
            let store = store.clone();
            async move { store.pending(0, 1).await.unwrap().is_empty() }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Silent;

#[async_trait]
impl Responder for Silent {
    async fn respond(&self, _turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        Ok(None)
    }
}

#[tokio::test]
async fn fixture_new_message() {
    let bb = start(Some(Arc::new(Silent))).await;
    bb.post_fixture("bluebubbles_new_message.json").await;
    let m = bb.first_inbound().await;
    assert_eq!(m.contact.as_str(), CHAT);
    assert_eq!(m.conversation, conversation(bb.app.store()).await);
    assert_eq!(
        m.content,
        Content::text("Hi! Can you book a table for two at 7pm tonight?")
    );
    assert_eq!(
        m.platform_id.unwrap().as_str(),
        "FAKE0000-0000-4000-8000-000000000001"
    );
    assert_eq!(m.created_at, 1_767_226_500_000);
}

#[tokio::test]
async fn fixture_attachment_is_a_media_reference_fetched_on_demand() {
    let bb = start(Some(Arc::new(Silent))).await;
    bb.post_fixture("bluebubbles_new_message_attachment.json")
        .await;
    let m = bb.first_inbound().await;
    assert_eq!(
        m.content,
        Content::Media {
            kind: MediaKind::Image,
            mime: Some("image/jpeg".into()),
            caption: Some("IMG_0001.jpeg".into()),
            media: MediaRef("FAKEATT0-0000-4000-8000-000000000002".into()),
            kept: None,
        }
    );
    let config: concierge::channels::bluebubbles::BlueBubblesConfig = toml::from_str(&format!(
        "server_url = \"{}\"\npassword = \"bb-password\"\nwebhook_secret = \"s\"\n",
        bb.server.url
    ))
    .unwrap();
    let adapter = concierge::channels::bluebubbles::BlueBubbles::new(
        ChannelId::parse("imessage").unwrap(),
        config,
        reqwest::Client::new(),
    );
    use concierge::channels::ChannelAdapter;
    let bytes = adapter
        .fetch_media(&MediaRef("FAKEATT0-0000-4000-8000-000000000002".into()))
        .await
        .unwrap();
    assert_eq!(bytes.bytes.as_ref(), b"FAKE-JPEG-BYTES");
    let request = bb
        .server
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/api/v1/attachment/"))
        .unwrap();
    assert_eq!(
        request.path,
        "/api/v1/attachment/FAKEATT0-0000-4000-8000-000000000002/download"
    );
    // The chat was marked read and shown typing, its guid encoded in the path.
    let server = bb.server.clone();
    eventually("the chat is marked read", || {
        let server = server.clone();
        async move {
            server
                .requests()
                .iter()
                .any(|r| r.path == "/api/v1/chat/iMessage%3B-%3B%2B15550100001/read")
        }
    })
    .await;
}

#[tokio::test]
async fn fixture_tapback_is_a_reaction_on_the_right_message_and_gets_no_reply() {
    let bb = start(None).await;
    bb.post_fixture("bluebubbles_reaction.json").await;
    let m = bb.first_inbound().await;
    assert_eq!(
        m.content,
        Content::Reaction {
            target: "FAKE0000-0000-4000-8000-00000000AAAA".into(),
            emoji: "❤️".into()
        }
    );
    bb.idle().await;
    assert!(bb.server.bluebubbles_sends().is_empty());
}

#[tokio::test]
async fn fixture_typing_indicator_stores_nothing() {
    let bb = start(None).await;
    bb.post_fixture("bluebubbles_typing_indicator.json").await;
    bb.idle().await;
    assert!(bb.messages().await.is_empty());
}

/// A reply whose guid on the Mac is `guid`, for the receipt fixtures.
async fn with_sent_reply(guid: &str) -> Bb {
    let bb = start(None).await;
    bb.server.script(vec![answer(
        200,
        &json!({ "status": 200, "message": "Message sent!", "data": { "guid": guid } }).to_string(),
    )]);
    bb.post_fixture("bluebubbles_new_message.json").await;
    bb.wait_sends(1).await;
    until_a_reply_is_sent(bb.app.store(), &conversation(bb.app.store()).await).await;
    bb
}

async fn reply(bb: &Bb) -> Message {
    first_reply(bb.app.store(), &conversation(bb.app.store()).await).await
}

#[tokio::test]
async fn fixture_updated_message_marks_our_message_read() {
    let bb = with_sent_reply("FAKE0000-0000-4000-8000-00000000AAAA").await;
    bb.post_fixture("bluebubbles_updated_message_read.json")
        .await;
    eventually("read", || async {
        reply(&bb).await.status == DeliveryStatus::Read
    })
    .await;
}

#[tokio::test]
async fn fixture_send_error_marks_our_message_failed() {
    let bb = with_sent_reply("FAKE0000-0000-4000-8000-00000000BBBB").await;
    bb.post_fixture("bluebubbles_message_send_error.json").await;
    eventually("failed", || async {
        matches!(reply(&bb).await.status, DeliveryStatus::Failed { code: Some(ref c), .. } if c == "4")
    })
    .await;
}

#[tokio::test]
async fn our_own_echo_gets_no_reply_and_no_second_message() {
    let bb = with_sent_reply("FAKE0000-0000-4000-8000-00000000CCCC").await;
    let mut echo: Value = serde_json::from_slice(&fixture("bluebubbles_new_message.json")).unwrap();
    echo["data"]["isFromMe"] = json!(true);
    echo["data"]["guid"] = json!("FAKE0000-0000-4000-8000-00000000CCCC");
    echo["data"]["tempGuid"] = json!(reply(&bb).await.id.to_string());
    echo["data"]["text"] = json!(reply(&bb).await.content.plain_text().unwrap());
    assert_eq!(
        bb.post_with(serde_json::to_vec(&echo).unwrap(), Some(SECRET))
            .await,
        200
    );
    bb.idle().await;
    assert_eq!(
        bb.messages().await.len(),
        2,
        "the question and its one reply"
    );
    assert_eq!(bb.server.bluebubbles_sends().len(), 1);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_and_stores_nothing() {
    let bb = start(None).await;
    let body = fixture("bluebubbles_new_message.json");
    assert_eq!(bb.post_with(body.clone(), Some("wrong")).await, 401);
    assert_eq!(bb.post_with(body.clone(), None).await, 401);
    assert_eq!(bb.post_with(body, Some("")).await, 401);
    assert!(bb.app.store().pending(0, 10).await.unwrap().is_empty());
    assert!(bb.messages().await.is_empty());
}

/// Answers "react" with a tapback on the customer's message, anything else with a text.
struct TextOrTapback;

#[async_trait]
impl Responder for TextOrTapback {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let content = if turn.text().as_deref() == Some("react") {
            Content::Reaction {
                target: "FAKE0000-0000-4000-8000-000000000001".into(),
                emoji: "👍".into(),
            }
        } else {
            Content::text("Your table for 2 at 7:00 PM is confirmed.")
        };
        Ok(Some(Decision {
            by: concierge::orchestrator::DecidedBy::Other("test"),
            replies: vec![(Author::Agent("test".into()), content)],
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

#[tokio::test]
async fn sends_match_the_servers_shapes() {
    let bb = start(Some(Arc::new(TextOrTapback))).await;
    bb.post_fixture("bluebubbles_new_message.json").await;
    let sends = bb.wait_sends(1).await;
    let (path, body) = &sends[0];
    assert_eq!(path, "/api/v1/message/text");
    let mut expected: Value =
        serde_json::from_slice(&fixture("outbound/bluebubbles_send_text.json")).unwrap();
    assert!(body["tempGuid"].as_str().unwrap().starts_with("temp-"));
    expected["tempGuid"] = body["tempGuid"].clone();
    assert_eq!(body, &expected);
    let request = bb
        .server
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/message/text")
        .unwrap();
    assert!(request.headers.get("content-type").is_some());

    let mut react: Value =
        serde_json::from_slice(&fixture("bluebubbles_new_message.json")).unwrap();
    react["data"]["guid"] = json!("FAKE0000-0000-4000-8000-000000000009");
    react["data"]["text"] = json!("react");
    assert_eq!(
        bb.post_with(serde_json::to_vec(&react).unwrap(), Some(SECRET))
            .await,
        200
    );
    let sends = bb.wait_sends(2).await;
    let (path, body) = &sends[1];
    assert_eq!(path, "/api/v1/message/react");
    let expected: Value =
        serde_json::from_slice(&fixture("outbound/bluebubbles_send_reaction.json")).unwrap();
    assert_eq!(body, &expected);
}

/// Answers with a photo from a public URL, captioned.
struct Photo {
    url: String,
}

#[async_trait]
impl Responder for Photo {
    async fn respond(&self, _turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        Ok(Some(Decision {
            by: concierge::orchestrator::DecidedBy::Other("test"),
            replies: vec![(
                Author::Agent("test".into()),
                Content::Media {
                    kind: MediaKind::Image,
                    mime: None,
                    caption: Some("Menu (fake)".into()),
                    media: MediaRef(self.url.clone()),
                    kept: None,
                },
            )],
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

#[tokio::test]
async fn a_photo_is_uploaded_as_an_attachment_and_its_caption_follows_as_a_text() {
    // The photo is served by the same fake; its URL is known once the fake runs.
    let server = FakeApi::start().await.expect("the fake platform");
    let photo = Arc::new(Photo {
        url: format!("{}/download/menu.jpg?sig=1", server.url),
    });
    let app = spawn_with_channel(
        "imessage.toml",
        format!(
            "kind = \"bluebubbles\"\nserver_url = \"{}\"\npassword = \"bb-password\"\nwebhook_secret = \"{SECRET}\"\n",
            server.url
        ),
        Some(photo),
    )
    .await;
    let bb = Bb { app, server };
    bb.post_fixture("bluebubbles_new_message.json").await;
    let sends = bb.wait_sends(2).await;
    assert_eq!(sends[0].0, "/api/v1/message/attachment");
    assert_eq!(sends[1].0, "/api/v1/message/text");
    assert_eq!(sends[1].1["message"], "Menu (fake)");
    let upload = bb
        .server
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/message/attachment")
        .unwrap();
    let body = String::from_utf8_lossy(&upload.body);
    assert!(body.contains("FAKE-JPEG-BYTES"), "{body}");
    assert!(
        body.contains("name=\"chatGuid\"") && body.contains(CHAT),
        "{body}"
    );
    assert!(body.contains("filename=\"menu.jpg\""), "{body}");
    assert!(body.contains("name=\"tempGuid\"\r\n\r\ntemp-"), "{body}");
}
