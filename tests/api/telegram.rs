//! Telegram: every fixture through the webhook with its secret token, Bot API calls checked
//! against a fake Telegram API, 429 retry_after honoured.

use std::time::Duration;

use concierge::domain::{
    ChannelId, Choice, Content, ConversationId, DeliveryStatus, Direction, MediaKind, MediaRef,
    Message,
};
use serde_json::{Value, json};

use crate::fake_api::{FakeApi, answer};
use crate::helpers::{Deployment, TestApp, eventually, spawn_with_channel};
use crate::whatsapp::{fixture, signatures};

const CHAT: &str = "1000000001";

struct Tg {
    app: TestApp,
    api: FakeApi,
    secret: String,
}

async fn start() -> Tg {
    start_with(None, "").await
}

/// A gateway with one Telegram channel on a fake Bot API; `extra` adds keys to its file.
async fn start_with(
    responder: Option<std::sync::Arc<dyn concierge::orchestrator::Responder>>,
    extra: &str,
) -> Tg {
    start_on(
        FakeApi::start().await.expect("the fake platform"),
        responder,
        extra,
    )
    .await
}

async fn start_on(
    api: FakeApi,
    responder: Option<std::sync::Arc<dyn concierge::orchestrator::Responder>>,
    extra: &str,
) -> Tg {
    let secret = signatures()["telegram_secret_token"]
        .as_str()
        .unwrap()
        .to_string();
    let app = spawn_with_channel(
        "telegram.toml",
        format!(
            "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{secret}\"\napi_base = \"{}\"\nmessages_per_second_per_chat = 50\n{extra}",
            api.url
        ),
        responder,
    )
    .await;
    Tg { app, api, secret }
}

async fn conversation(store: &concierge::store::SharedStore, chat: &str) -> ConversationId {
    crate::helpers::conversation_in(store, "telegram", chat).await
}

impl Tg {
    async fn post_with(&self, body: Vec<u8>, secret: Option<&str>) -> u16 {
        let mut request = self
            .app
            .client
            .post(self.app.url("/webhooks/telegram"))
            .header("content-type", "application/json");
        if let Some(secret) = secret {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        request.body(body).send().await.unwrap().status().as_u16()
    }

    async fn post_fixture(&self, name: &str) {
        assert_eq!(self.post_with(fixture(name), Some(&self.secret)).await, 200);
    }

    async fn messages(&self, chat: &str) -> Vec<Message> {
        self.app
            .store()
            .messages(&conversation(self.app.store(), chat).await, 0, 100)
            .await
            .unwrap()
    }

    async fn first_inbound(&self, chat: &str) -> Message {
        crate::helpers::first_inbound(
            self.app.store(),
            &conversation(self.app.store(), chat).await,
        )
        .await
    }

    async fn wait_calls(&self, method: &str, n: usize) -> Vec<Value> {
        let api = self.api.clone();
        let method = method.to_string();
        eventually(&format!("{n} {method} calls"), || {
            let (api, method) = (api.clone(), method.clone());
            async move {
                api.telegram_calls()
                    .iter()
                    .filter(|(m, _)| *m == method)
                    .count()
                    >= n
            }
        })
        .await;
        self.api
            .telegram_calls()
            .into_iter()
            .filter(|(m, _)| *m == method)
            .map(|(_, body)| body)
            .collect()
    }
}

#[tokio::test]
async fn fixture_text_is_answered_with_typing_first() {
    let tg = start().await;
    tg.post_fixture("telegram_text.json").await;
    let m = tg.first_inbound(CHAT).await;
    assert_eq!(
        m.content,
        Content::text("Hi! Can you book a table for two at 7pm tonight?")
    );
    assert_eq!(m.platform_id.unwrap().as_str(), "1000000001:501");
    assert_eq!(m.created_at, 1_767_226_200_000);
    let typing = tg.wait_calls("sendChatAction", 1).await;
    assert_eq!(
        typing[0],
        json!({ "chat_id": 1000000001, "action": "typing" })
    );
    let sends = tg.wait_calls("sendMessage", 1).await;
    assert_eq!(sends[0]["chat_id"], 1000000001);
}

#[tokio::test]
async fn fixture_command_start_opens_the_conversation_and_keeps_its_source() {
    let tg = start().await;
    tg.post_fixture("telegram_command_start.json").await;
    let store = tg.app.store().clone();
    eventually("the conversation exists", || {
        let store = store.clone();
        async move {
            store
                .conversation(&conversation(&store, CHAT).await)
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    let opened = store
        .conversation(&conversation(&store, CHAT).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.source, None);
    assert!(
        tg.messages(CHAT).await.is_empty(),
        "a /start is not a question"
    );
    // From a deep link, t.me/bot?start=spring_sale: the parameter is the source.
    let mut deep: Value = serde_json::from_slice(&fixture("telegram_command_start.json")).unwrap();
    deep["update_id"] = json!(900000100);
    deep["message"]["text"] = json!("/start spring_sale");
    assert_eq!(
        tg.post_with(serde_json::to_vec(&deep).unwrap(), Some(&tg.secret))
            .await,
        200
    );
    eventually("the source is kept", || async {
        store
            .conversation(&conversation(&store, CHAT).await)
            .await
            .unwrap()
            .and_then(|c| c.source)
            .as_deref()
            == Some("spring_sale")
    })
    .await;
}

#[tokio::test]
async fn fixture_photo_is_the_largest_size_fetched_through_get_file() {
    let tg = start().await;
    tg.post_fixture("telegram_photo.json").await;
    let m = tg.first_inbound(CHAT).await;
    let Content::Media { kind, media, .. } = &m.content else {
        panic!("{:?}", m.content)
    };
    assert_eq!(*kind, MediaKind::Image);
    assert_eq!(media.0, "AgACAgQAAxkBAAIFAKE4FAKEFILEIDTESTONLY");

    let config: concierge::channels::telegram::TelegramConfig = toml::from_str(&format!(
        "bot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"s\"\napi_base = \"{}\"\n",
        tg.api.url
    ))
    .unwrap();
    let adapter = concierge::channels::telegram::Telegram::new(
        ChannelId::parse("telegram").unwrap(),
        config,
        reqwest::Client::new(),
    );
    use concierge::channels::ChannelAdapter;
    let bytes = adapter
        .fetch_media(&MediaRef(media.0.clone()))
        .await
        .unwrap();
    assert_eq!(bytes.bytes.as_ref(), b"FAKE-JPEG-BYTES");
    assert!(
        tg.api
            .requests()
            .iter()
            .any(|r| r.path == "/file/bot123456:TEST-TOKEN/photos/file_1.jpg")
    );
}

#[tokio::test]
async fn fixture_location() {
    let tg = start().await;
    tg.post_fixture("telegram_location.json").await;
    let m = tg.first_inbound(CHAT).await;
    assert_eq!(
        m.content,
        Content::Location {
            latitude: 37.774929,
            longitude: -122.419416,
            name: None,
            address: None
        }
    );
}

#[tokio::test]
async fn fixture_callback_query_is_the_choice_and_stops_the_spinner() {
    let tg = start().await;
    tg.post_fixture("telegram_callback_query.json").await;
    let m = tg.first_inbound(CHAT).await;
    assert_eq!(
        m.content,
        Content::Choice(Choice::new("confirm_booking_42", "Confirm"))
    );
    assert_eq!(m.reply_to.unwrap().as_str(), "1000000001:504");
    let answered = tg.wait_calls("answerCallbackQuery", 1).await;
    assert_eq!(
        answered[0],
        json!({ "callback_query_id": "4300000000000000001" })
    );
}

#[tokio::test]
async fn fixture_edited_message_edits_the_original() {
    let tg = start().await;
    tg.post_fixture("telegram_text.json").await;
    tg.first_inbound(CHAT).await;
    tg.post_fixture("telegram_edited_message.json").await;
    eventually("edited", || async {
        tg.messages(CHAT).await.iter().any(|m| {
            m.content == Content::text("Hi! Can you book a table for three at 7pm tonight?")
        })
    })
    .await;
    let inbound = tg
        .messages(CHAT)
        .await
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound)
        .count();
    assert_eq!(inbound, 1, "an edit is not a new message");
}

#[tokio::test]
async fn fixture_message_reaction() {
    let tg = start().await;
    tg.post_fixture("telegram_message_reaction.json").await;
    let m = tg.first_inbound("-1001000000003").await;
    assert_eq!(
        m.content,
        Content::Reaction {
            target: "-1001000000003:77".into(),
            emoji: "👍".into()
        }
    );
}

#[tokio::test]
async fn the_same_update_twice_is_stored_and_answered_once() {
    let tg = start().await;
    tg.post_fixture("telegram_text.json").await;
    tg.post_fixture("telegram_text.json").await;
    tg.wait_calls("sendMessage", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tg.messages(CHAT).await.len(), 2);
    assert_eq!(tg.wait_calls("sendMessage", 1).await.len(), 1);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_and_stores_nothing() {
    let tg = start().await;
    let body = fixture("telegram_text.json");
    assert_eq!(tg.post_with(body.clone(), Some("wrong")).await, 401);
    assert_eq!(tg.post_with(body, None).await, 401);
    assert!(tg.app.store().pending(0, 10).await.unwrap().is_empty());
    assert!(tg.messages(CHAT).await.is_empty());
}

#[tokio::test]
async fn unknown_update_kinds_are_acknowledged() {
    let tg = start().await;
    let body = json!({ "update_id": 900000099, "some_future_kind": { "x": 1 } });
    assert_eq!(
        tg.post_with(serde_json::to_vec(&body).unwrap(), Some(&tg.secret))
            .await,
        200
    );
    let garbage = b"{not json".to_vec();
    assert_eq!(tg.post_with(garbage, Some(&tg.secret)).await, 200);
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_and_the_reply_arrives_once() {
    let tg = start().await;
    let mut too_many: Value =
        serde_json::from_slice(&fixture("outbound/telegram_error_429.json")).unwrap();
    // Three seconds: more than the one-second fallback, so only the header's figure passes.
    too_many["parameters"]["retry_after"] = json!(3);
    too_many["description"] = json!("Too Many Requests: retry after 3");
    tg.api.script(vec![answer(429, &too_many.to_string())]);
    let started = std::time::Instant::now();
    tg.post_fixture("telegram_text.json").await;
    let sends = tg.wait_calls("sendMessage", 2).await;
    assert_eq!(sends[0], sends[1], "the same reply, tried again");
    assert!(started.elapsed() >= Duration::from_secs(3));
    eventually("sent", || async {
        tg.messages(CHAT)
            .await
            .iter()
            .any(|m| m.status == DeliveryStatus::Sent)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tg.wait_calls("sendMessage", 2).await.len(), 2);
}

#[tokio::test]
async fn choices_become_an_inline_keyboard() {
    struct Confirm;
    #[async_trait::async_trait]
    impl concierge::orchestrator::Responder for Confirm {
        async fn respond(
            &self,
            _turn: &concierge::orchestrator::Turn<'_>,
        ) -> Result<
            Option<concierge::orchestrator::Decision>,
            concierge::orchestrator::ResponderError,
        > {
            Ok(Some(concierge::orchestrator::Decision {
                by: concierge::orchestrator::DecidedBy::Other("test"),
                replies: vec![(
                    concierge::domain::Author::Agent("test".into()),
                    Content::Choices {
                        body: "Shall I confirm your table for 2 at 7:00 PM?".into(),
                        choices: vec![
                            Choice::new("confirm_booking_42", "Confirm"),
                            Choice::new("change_booking_42", "Change"),
                        ],
                        header: None,
                        footer: None,
                        button: None,
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
    let tg = start_with(Some(std::sync::Arc::new(Confirm)), "").await;
    tg.post_fixture("telegram_text.json").await;
    let sends = tg.wait_calls("sendMessage", 1).await;
    let expected: Value =
        serde_json::from_slice(&fixture("outbound/telegram_send_message.json")).unwrap();
    assert_eq!(sends[0], expected);
}

#[tokio::test]
async fn polling_delivers_updates_into_the_same_conversations_once_each() {
    let api = FakeApi::start().await.expect("the fake platform");
    let text: Value = serde_json::from_slice(&fixture("telegram_text.json")).unwrap();
    let tap: Value = serde_json::from_slice(&fixture("telegram_callback_query.json")).unwrap();
    api.push_updates(vec![text, tap]);
    let tg = start_on(api, None, "mode = \"polling\"\n").await;
    // The same update also arrives by webhook: still once.
    tg.post_fixture("telegram_text.json").await;
    eventually("both updates stored", || async {
        tg.messages(CHAT)
            .await
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .count()
            == 2
    })
    .await;
    // The first gets the holding message; the tap right after does not repeat it.
    tg.wait_calls("sendMessage", 1).await;
    let store = tg.app.store().clone();
    eventually("both processed", || {
        let store = store.clone();
        async move { store.pending(0, 10).await.unwrap().is_empty() }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let inbound: Vec<Content> = tg
        .messages(CHAT)
        .await
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound)
        .map(|m| m.content)
        .collect();
    assert_eq!(
        inbound,
        vec![
            Content::text("Hi! Can you book a table for two at 7pm tonight?"),
            Content::Choice(Choice::new("confirm_booking_42", "Confirm")),
        ]
    );
    assert_eq!(
        tg.wait_calls("sendMessage", 1).await.len(),
        1,
        "answered once"
    );
    // Later polls confirm what was stored: the offset moves past both updates.
    let polls = tg.wait_calls("getUpdates", 2).await;
    assert!(polls.iter().any(|p| p["offset"] == 900000006));
    assert_eq!(polls[0]["allowed_updates"][0], "message");
}

#[test]
fn set_webhook_registers_the_url_with_the_secret_token() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime
        .block_on(FakeApi::start())
        .expect("the fake platform");
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/telegram.toml"),
        format!(
            "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"fake-secret-token_0001\"\napi_base = \"{}\"\n",
            api.url
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concierge"))
        .args(["telegram", "set-webhook", "--config"])
        .arg(deployment.config_path())
        .args([
            "--channel",
            "telegram",
            "--url",
            "https://example.test/webhooks/telegram",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Telegram answered: true"));
    let call = api
        .telegram_calls()
        .into_iter()
        .find(|(m, _)| m == "setWebhook")
        .unwrap()
        .1;
    assert_eq!(
        call,
        json!({
            "url": "https://example.test/webhooks/telegram",
            "secret_token": "fake-secret-token_0001",
            "allowed_updates": ["message", "edited_message", "callback_query", "message_reaction"],
            "max_connections": 1,
        })
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_concierge"))
        .args(["telegram", "set-webhook", "--config"])
        .arg(deployment.config_path())
        .args(["--channel", "nope", "--url", "https://x"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}
