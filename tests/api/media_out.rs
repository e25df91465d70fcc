//! Files from concierges, end to end: a concierge uploads a photo to a conversation they may
//! see and replies with it; each fake platform receives it in its own form (the Graph API an
//! upload then a message by the uploaded id, Telegram a `sendPhoto` multipart, Twilio a
//! `MediaUrl` it fetches from the gateway once, refused after the link expires, BlueBubbles
//! an attachment upload with the caption after it, the web chat an inline picture), and a
//! web chat visitor sends a file of their own.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::handoff::{Api, PEOPLE};
use crate::helpers::{Deployment, TestApp, eventually, metric, visitor_key};
use crate::media::{now_secs, png};
use crate::whatsapp::fixture;
use concierge::app::{App, Parts};
use concierge::domain::{ConversationId, KeptMedia, ThreadState};
use concierge_testkit::platform::FakeApi;

const WA_SECRET: &str = "media-out-app-secret";
const TG_SECRET: &str = "media-out-telegram-secret";
const TW_TOKEN: &str = "media-out-twilio-token";
const BB_SECRET: &str = "media-out-bb-secret";
const PHONE: &str = "33612345678";
const TG_CHAT: &str = "1000000001";
const TW_CUSTOMER: &str = "15550100001";
const BB_CHAT: &str = "iMessage;-;+15550100001";
const HUMAN: &str = "I want to talk to a human please";

struct Out {
    app: TestApp,
    api: FakeApi,
    ana: Api,
}

/// A gateway with every platform on one fake, the people of the handoff tests, and Twilio's
/// media links good for `link_secs`.
async fn start(link_secs: u64) -> Out {
    let api = FakeApi::start().await.expect("the fake platform");
    let deployment = Deployment::new(&format!("{PEOPLE}\n[media]\nwait_ms = 60000\n"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let channels = deployment.path().join("channels");
    let files = [
        (
            "whatsapp.toml",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\n",
                api.url
            ),
        ),
        (
            "telegram.toml",
            format!(
                "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{TG_SECRET}\"\napi_base = \"{}\"\nmessages_per_second_per_chat = 50\n",
                api.url
            ),
        ),
        (
            "twilio.toml",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"ACfa4efa4efa4efa4efa4efa4efa4efa4e\"\nauth_token = \"{TW_TOKEN}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"http://{addr}/webhooks/twilio\"\napi_base = \"{0}\"\nmessaging_api_base = \"{0}\"\nmedia_link_secs = {link_secs}\n",
                api.url
            ),
        ),
        (
            "imessage.toml",
            format!(
                "kind = \"bluebubbles\"\nserver_url = \"{}\"\npassword = \"bb-password\"\nwebhook_secret = \"{BB_SECRET}\"\n",
                api.url
            ),
        ),
    ];
    for (file, body) in files {
        std::fs::write(channels.join(file), body).unwrap();
    }
    crate::helpers::init();
    let config = deployment.config();
    let app = App::start_with(config, listener, Parts::default())
        .await
        .expect("app starts");
    let app = TestApp {
        addr: app.addr,
        app,
        deployment,
        client: reqwest::Client::new(),
    };
    let token = concierge::handoff::access::issue(app.store().as_ref(), "ana")
        .await
        .unwrap();
    let ana = Api::at(app.url("/api/v1"), token);
    Out { app, api, ana }
}

impl Out {
    async fn webhook(&self, path: &str, body: Vec<u8>, headers: &[(&str, String)]) {
        let mut request = self.app.client.post(self.app.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, 200, "{path}");
    }

    /// The customer asks for a person on `channel`; the conversation, once queued.
    async fn asks_for_a_person(&self, channel: &str) -> ConversationId {
        let contact = match channel {
            "whatsapp" => {
                let body = serde_json::to_vec(&json!({
                    "object": "whatsapp_business_account",
                    "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
                        "contacts": [{ "profile": { "name": "Claire" }, "wa_id": PHONE }],
                        "messages": [{ "from": PHONE, "id": "wamid.HUMAN", "timestamp": now_secs(), "type": "text", "text": { "body": HUMAN } }],
                    }}]}]
                }))
                .unwrap();
                let mut mac = Hmac::<Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                self.webhook(
                    "/webhooks/whatsapp",
                    body,
                    &[
                        ("content-type", "application/json".into()),
                        ("x-hub-signature-256", signature),
                    ],
                )
                .await;
                PHONE
            }
            "telegram" => {
                let mut update: Value =
                    serde_json::from_slice(&fixture("telegram_text.json")).unwrap();
                update["message"]["text"] = json!(HUMAN);
                update["message"]["date"] = json!(now_secs().parse::<i64>().unwrap());
                self.webhook(
                    "/webhooks/telegram",
                    serde_json::to_vec(&update).unwrap(),
                    &[
                        ("content-type", "application/json".into()),
                        ("x-telegram-bot-api-secret-token", TG_SECRET.into()),
                    ],
                )
                .await;
                TG_CHAT
            }
            "twilio" => {
                let form = String::from_utf8(fixture("twilio_whatsapp_text.form"))
                    .unwrap()
                    .replace(
                        "Hi%21+Can+you+book+a+table+for+two+at+7pm+tonight%3F",
                        "I+want+to+talk+to+a+human+please",
                    );
                let url = self.app.url("/webhooks/twilio");
                let signature = crate::twilio::sign(TW_TOKEN, &url, &form);
                self.webhook(
                    "/webhooks/twilio",
                    form.into_bytes(),
                    &[
                        ("content-type", "application/x-www-form-urlencoded".into()),
                        ("x-twilio-signature", signature),
                    ],
                )
                .await;
                TW_CUSTOMER
            }
            _ => {
                let mut event: Value =
                    serde_json::from_slice(&fixture("bluebubbles_new_message.json")).unwrap();
                event["data"]["text"] = json!(HUMAN);
                self.webhook(
                    &format!("/webhooks/imessage?secret={BB_SECRET}"),
                    serde_json::to_vec(&event).unwrap(),
                    &[("content-type", "application/json".into())],
                )
                .await;
                BB_CHAT
            }
        };
        let channel = if channel == "bluebubbles" {
            "imessage"
        } else {
            channel
        };
        let conversation = self.app.conversation(channel, contact).await;
        self.queued(&conversation).await;
        conversation
    }

    async fn queued(&self, conversation: &ConversationId) {
        eventually("the thread is queued", || async {
            matches!(
                self.app.store().thread_state(conversation).await,
                Ok(ThreadState::Queued { .. })
            )
        })
        .await;
    }

    /// `who` uploads `bytes` to the conversation: the status and the answer.
    async fn upload(
        &self,
        who: &Api,
        conversation: &ConversationId,
        bytes: Vec<u8>,
    ) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(format!(
                "{}/conversations/{conversation}/media?name=candle.png",
                who.base
            ))
            .bearer_auth(&who.token)
            .header("content-type", "image/png")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Ana sends the photo with a caption: the media id.
    async fn sends_the_photo(&self, conversation: &ConversationId, photo: &[u8]) -> String {
        let (status, uploaded) = self.upload(&self.ana, conversation, photo.to_vec()).await;
        assert_eq!(status, 201, "{uploaded}");
        assert_eq!(uploaded["mime"], "image/png");
        assert_eq!(uploaded["name"], "candle.png");
        let id = uploaded["id"].as_str().unwrap().to_string();
        let (status, queued) = self
            .ana
            .post(
                &format!("/conversations/{conversation}/messages"),
                json!({ "text": "Here is the fig candle", "media": { "id": id, "name": "candle.png" } }),
            )
            .await;
        assert_eq!(status, 202, "{queued}");
        id
    }
}

#[tokio::test]
async fn a_concierges_photo_reaches_whatsapp_telegram_and_imessage_in_their_own_forms() {
    let out = start(3600).await;
    let photo = png(640, 480);

    // WhatsApp: uploaded to the number's media, then sent by the id the upload answered.
    let conversation = out.asks_for_a_person("whatsapp").await;
    out.sends_the_photo(&conversation, &photo).await;
    eventually("the photo is sent on WhatsApp", || async {
        out.api.sends().iter().any(|s| s["type"] == "image")
    })
    .await;
    let uploads = out.api.uploads();
    let (path, form) = uploads
        .iter()
        .find(|(path, _)| path.ends_with("/media"))
        .expect("an upload to the Graph API");
    assert_eq!(path, "/v23.0/100000000000001/media");
    assert_eq!(form.field("messaging_product"), Some("whatsapp"));
    assert_eq!(form.field("type"), Some("image/png"));
    assert_eq!(form.files[0].bytes.as_ref(), photo.as_slice());
    let sent = out
        .api
        .sends()
        .into_iter()
        .find(|s| s["type"] == "image")
        .unwrap();
    let uploaded_id = sent["image"]["id"].as_str().unwrap();
    assert!(uploaded_id.starts_with("UPLOAD-"), "{sent}");
    assert_eq!(
        out.api.media(uploaded_id).unwrap().1.as_ref(),
        photo.as_slice()
    );
    assert_eq!(sent["image"]["caption"], "Here is the fig candle");
    assert_eq!(sent["to"], PHONE);
    assert!(sent["image"].get("link").is_none(), "{sent}");

    // Telegram: sendPhoto, the photo in the form's `photo` field, the caption beside it.
    let conversation = out.asks_for_a_person("telegram").await;
    out.sends_the_photo(&conversation, &photo).await;
    eventually("the photo is sent on Telegram", || async {
        out.api
            .uploads()
            .iter()
            .any(|(p, _)| p.ends_with("/sendPhoto"))
    })
    .await;
    let uploads = out.api.uploads();
    let (path, form) = uploads
        .iter()
        .find(|(p, _)| p.ends_with("/sendPhoto"))
        .unwrap();
    assert_eq!(path, "/bot123456:TEST-TOKEN/sendPhoto");
    assert_eq!(form.field("chat_id"), Some(TG_CHAT));
    assert_eq!(form.field("caption"), Some("Here is the fig candle"));
    let file = form.files.iter().find(|f| f.field == "photo").unwrap();
    assert_eq!(file.bytes.as_ref(), photo.as_slice());
    assert_eq!(file.name.as_deref(), Some("candle.png"));

    // iMessage: the attachment uploaded, then the caption as a message of its own (the
    // platform has no captions).
    let conversation = out.asks_for_a_person("bluebubbles").await;
    out.sends_the_photo(&conversation, &photo).await;
    eventually("the caption follows the attachment", || async {
        out.api
            .bluebubbles_sends()
            .iter()
            .any(|(p, b)| p.ends_with("/message/text") && b["message"] == "Here is the fig candle")
    })
    .await;
    let uploads = out.api.uploads();
    let (_, form) = uploads
        .iter()
        .find(|(p, _)| p == "/api/v1/message/attachment")
        .expect("an attachment upload");
    assert_eq!(form.field("chatGuid"), Some(BB_CHAT));
    assert_eq!(form.field("name"), Some("candle.png"));
    assert!(
        form.field("tempGuid")
            .is_some_and(|g| g.starts_with("temp-"))
    );
    let file = form.files.iter().find(|f| f.field == "attachment").unwrap();
    assert_eq!(file.bytes.as_ref(), photo.as_slice());
    let sends = out.api.bluebubbles_sends();
    let attachment_at = sends
        .iter()
        .position(|(p, _)| p.ends_with("/message/attachment"))
        .unwrap();
    let caption_at = sends
        .iter()
        .position(|(p, b)| p.ends_with("/message/text") && b["message"] == "Here is the fig candle")
        .unwrap();
    assert!(attachment_at < caption_at, "the photo, then its words");
}

#[tokio::test]
async fn twilio_fetches_a_reply_photo_from_a_signed_link_that_expires() {
    let out = start(2).await;
    let photo = png(320, 200);
    let conversation = out.asks_for_a_person("twilio").await;
    let id = out.sends_the_photo(&conversation, &photo).await;
    eventually("Twilio fetched the photo", || async {
        !out.api.fetched().is_empty()
    })
    .await;
    let form = out
        .api
        .forms()
        .into_iter()
        .find(|f| f.iter().any(|(k, _)| k == "MediaUrl"))
        .expect("a message with a MediaUrl");
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let url = field("MediaUrl").unwrap();
    assert!(
        url.starts_with(&format!(
            "http://{}/media/out/twilio/{id}?expires=",
            out.app.addr
        )),
        "{url}"
    );
    assert_eq!(field("Body").as_deref(), Some("Here is the fig candle"));
    let fetched = out.api.fetched().remove(0);
    assert_eq!((fetched.status, fetched.url.as_str()), (200, url.as_str()));
    assert_eq!(fetched.mime.as_deref(), Some("image/png"));
    assert_eq!(fetched.bytes.as_ref(), photo.as_slice());

    // A changed link is refused at once; the real one once it has expired.
    let client = reqwest::Client::new();
    let forged = url.replace(&id, &"0".repeat(64));
    assert_eq!(client.get(&forged).send().await.unwrap().status(), 403);
    let other_expiry = url.replacen("expires=", "expires=9", 1);
    assert_eq!(
        client.get(&other_expiry).send().await.unwrap().status(),
        403
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let late = client.get(&url).send().await.unwrap();
    assert_eq!(late.status(), 403);
    let metrics = out.app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_media_links_total",
            r#"outcome="served""#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "concierge_media_links_total",
            r#"outcome="refused""#
        ),
        3.0
    );
}

#[tokio::test]
async fn uploads_stay_in_their_conversation_and_bad_files_are_refused() {
    let out = start(3600).await;
    let conversation = out.asks_for_a_person("whatsapp").await;
    let photo = png(64, 64);

    // Another team's concierge cannot keep files in it, nor send ones from elsewhere.
    let token = concierge::handoff::access::issue(out.app.store().as_ref(), "carl")
        .await
        .unwrap();
    let carl = Api::at(out.app.url("/api/v1"), token);
    let (status, _) = out.upload(&carl, &conversation, photo.clone()).await;
    assert_eq!(status, 404);

    // A file that is not allowed, and an empty one.
    let (status, answer) = out
        .upload(
            &out.ana,
            &conversation,
            b"<html><script>alert(1)</script></html>".to_vec(),
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    let (status, _) = out.upload(&out.ana, &conversation, Vec::new()).await;
    assert_eq!(status, 422);

    // A media id not uploaded to this conversation is not one to send.
    let elsewhere = out.asks_for_a_person("telegram").await;
    let (status, uploaded) = out.upload(&out.ana, &elsewhere, photo.clone()).await;
    assert_eq!(status, 201);
    let other = png(65, 65);
    let (status, other_upload) = out.upload(&out.ana, &elsewhere, other).await;
    assert_eq!(status, 201);
    let (status, answer) = out
        .ana
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({ "text": "", "media": { "id": other_upload["id"] } }),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    for bad in ["not-an-id", &"f".repeat(64)] {
        let (status, _) = out
            .ana
            .post(
                &format!("/conversations/{conversation}/messages"),
                json!({ "text": "x", "media": { "id": bad } }),
            )
            .await;
        assert_eq!(status, 404, "{bad}");
    }
    // The same bytes uploaded here too are this conversation's: then they may go.
    let (status, again) = out.upload(&out.ana, &conversation, photo).await;
    assert_eq!((status, &again["id"]), (201, &uploaded["id"]));
    let (status, _) = out
        .ana
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({ "media": { "id": again["id"] } }),
        )
        .await;
    assert_eq!(status, 202, "a file needs no words");
}

#[tokio::test]
async fn the_web_chat_shows_a_concierges_photo_and_takes_a_visitors_file() {
    let out = start(3600).await;
    let key = visitor_key("media");
    let response = out.app.post_text(&key, "m1", HUMAN).await;
    assert_eq!(response.status(), 200);
    let conversation = out.app.visitor_conversation(&key).await;
    out.queued(&conversation).await;
    let mut stream = out.app.open_stream(&key).await;
    let photo = png(300, 200);
    let id = out.sends_the_photo(&conversation, &photo).await;
    let event = loop {
        let event = stream.next().await;
        if event.media.is_some() {
            break event;
        }
    };
    let media = event.media.unwrap();
    assert_eq!(
        (media.id.as_str(), media.kind.as_str()),
        (id.as_str(), "image")
    );
    assert_eq!((media.width, media.height), (Some(300), Some(200)));
    assert_eq!(event.text, "Here is the fig candle");

    // The visitor's page fetches it with its key; another visitor cannot.
    let client = reqwest::Client::new();
    let url = out.app.url(&format!("/chat/web/media/{id}"));
    let mine = client
        .get(&url)
        .header("cookie", format!("concierge_chat_web={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.headers()["x-content-type-options"], "nosniff");
    assert_eq!(mine.bytes().await.unwrap().as_ref(), photo.as_slice());
    let stranger = visitor_key("stranger");
    let theirs = client
        .get(format!("{url}?key={stranger}"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);

    // The visitor sends a photo of their own: uploaded, then posted by its id; it is kept on
    // their message. A stranger naming that id gets nothing of it.
    let theirs = png(120, 90);
    let upload = |key: String, bytes: Vec<u8>| {
        let client = client.clone();
        let url = out.app.url("/chat/web/media?name=broken.png");
        async move {
            let response = client
                .post(url)
                .header("x-webchat-key", key)
                .body(bytes)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, uploaded) = upload(key.clone(), theirs.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, _) = upload(key.clone(), b"MZ\x90\x00 an executable".to_vec()).await;
    assert_eq!(status, 415);
    let post = |key: String, id: &str| {
        let body = json!({ "id": id, "text": "it arrived broken", "media": { "id": uploaded["id"], "mime": "image/png" } });
        let client = client.clone();
        let url = out.app.url("/webhooks/web");
        async move {
            client
                .post(url)
                .header("x-webchat-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(key.clone(), "m2").await, 200);
    assert_eq!(post(stranger.clone(), "s1").await, 200);
    let kept_of = |conversation: ConversationId| {
        let store = out.app.store().clone();
        async move {
            store
                .recent_messages(&conversation, 10)
                .await
                .unwrap()
                .into_iter()
                .find_map(|m| match m.content {
                    concierge::domain::Content::Media { kept, caption, .. }
                        if caption.as_deref() == Some("it arrived broken") =>
                    {
                        kept
                    }
                    _ => None,
                })
        }
    };
    eventually("the visitor's photo is kept", || async {
        matches!(
            kept_of(conversation.clone()).await,
            Some(KeptMedia::Stored(_))
        )
    })
    .await;
    let Some(KeptMedia::Stored(stored)) = kept_of(conversation.clone()).await else {
        unreachable!()
    };
    assert_eq!(stored.id.as_str(), uploaded["id"].as_str().unwrap());
    assert_eq!((stored.width, stored.height), (Some(120), Some(90)));
    let strangers = out.app.visitor_conversation(&stranger).await;
    eventually("the stranger's claim is refused", || async {
        matches!(
            kept_of(strangers.clone()).await,
            Some(KeptMedia::Unavailable { .. })
        )
    })
    .await;
}

/// The web chat in Chromium: the visitor sees a concierge's photo inline, then attaches a
/// photo of their own with a caption; screenshots at desktop and phone widths.
#[tokio::test]
async fn in_a_browser_the_visitor_sees_the_photo_and_sends_one() {
    let Some((chromium, chromedriver)) =
        crate::console::browser("in_a_browser_the_visitor_sees_the_photo_and_sends_one")
    else {
        return;
    };
    let out = start(3600).await;
    let driver = crate::console::Driver::start(&chromium, &chromedriver).await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    driver.goto(&out.app.url("/chat/web")).await;
    driver
        .until(
            "the live stream",
            "return document.getElementById('status').textContent === 'online'",
        )
        .await;
    driver.type_into("#text", HUMAN).await;
    driver.click("#form button[type=submit]").await;
    driver
        .until(
            "the question is taken",
            "const m = document.querySelector('#log .msg.in'); return m !== null && !m.classList.contains('pending')",
        )
        .await;
    let key = driver
        .script("return localStorage.getItem('concierge.webchat.web.key')")
        .await;
    let conversation = out
        .app
        .visitor_conversation(key.as_str().expect("the page's key"))
        .await;
    out.queued(&conversation).await;
    out.sends_the_photo(&conversation, &png(640, 480)).await;
    driver
        .until(
            "the concierge's photo shows in the chat",
            "const img = document.querySelector('#log .msg.out .media img'); \
             return img !== null && img.complete && img.naturalWidth === 320 \
               && img.closest('.msg').textContent.includes('Here is the fig candle')",
        )
        .await;

    // The visitor picks a photo (as the file dialog would), writes a caption and sends it.
    driver
        .script(
            "const c = document.createElement('canvas'); c.width = 160; c.height = 120; \
             const g = c.getContext('2d'); g.fillStyle = '#468'; g.fillRect(0, 0, 160, 120); \
             c.toBlob((b) => { const dt = new DataTransfer(); \
               dt.items.add(new File([b], 'crack.png', { type: 'image/png' })); \
               const input = document.getElementById('file'); input.files = dt.files; \
               input.dispatchEvent(new Event('change', { bubbles: true })); }, 'image/png'); \
             return true",
        )
        .await;
    driver
        .until(
            "the chosen file waits above the box",
            "const c = document.getElementById('chosen'); return !c.hidden && c.textContent.includes('crack.png')",
        )
        .await;
    driver.type_into("#text", "this is the crack").await;
    driver.screenshot(&artifacts.join("chat-attach.png")).await;
    driver.click("#form button[type=submit]").await;
    driver
        .until(
            "the visitor's photo is in the chat, sent",
            "const ms = [...document.querySelectorAll('#log .msg.in')]; \
             const m = ms[ms.length - 1]; \
             return m.querySelector('.media img') !== null && m.textContent.includes('this is the crack') \
               && !m.classList.contains('pending') && !m.classList.contains('failed')",
        )
        .await;
    eventually("the visitor's photo is kept on their message", || async {
        out.app
            .store()
            .recent_messages(&conversation, 10)
            .await
            .unwrap()
            .iter()
            .any(|m| {
                matches!(
                    &m.content,
                    concierge::domain::Content::Media {
                        caption: Some(c),
                        kept: Some(KeptMedia::Stored(s)),
                        ..
                    } if c == "this is the crack" && s.width == Some(160)
                )
            })
    })
    .await;
    driver.assert_no_csp_violation().await;
    for (width, height, name) in [(1280, 800, "desktop"), (390, 844, "phone")] {
        driver.resize(width, height).await;
        driver
            .screenshot(&artifacts.join(format!("chat-media-{name}.png")))
            .await;
    }
}

/// The catalogue agent's file: it looks products up and may show their photos.
const CATALOGUE: &str = "+++\ndescription = \"The catalogue: finds products and shows them.\"\nentry = true\ntools = [\"product\", \"send_media\"]\n+++\nYou are the catalogue of {{ merchant }}.\n";

/// A merchant's catalogue: a product whose answer names its photos by URL (one that moved
/// and redirects elsewhere, one that is a web page), and the photos.
async fn catalogue(photo: Vec<u8>) -> String {
    use axum::response::IntoResponse;
    let photo = std::sync::Arc::new(photo);
    let router =
        axum::Router::new()
            .route(
                "/products/{id}",
                axum::routing::get(
                    |axum::extract::Path(id): axum::extract::Path<String>,
                     headers: http::HeaderMap| async move {
                        let host = headers[http::header::HOST].to_str().unwrap().to_string();
                        let image = |name: &str| format!("http://{host}/images/{name}.png");
                        axum::Json(json!({
                            "id": id, "name": "Bougie Figuier", "price": "38.00", "currency": "EUR",
                            "image": image(&id), "gallery": [image("moved"), image("page")],
                        }))
                    },
                ),
            )
            .route(
                "/images/moved.png",
                axum::routing::get(|| async {
                    (
                        http::StatusCode::FOUND,
                        [(
                            http::header::LOCATION,
                            "http://169.254.169.254/latest/meta-data",
                        )],
                    )
                }),
            )
            .route(
                "/images/page.png",
                axum::routing::get(|| async {
                    (
                        [(http::header::CONTENT_TYPE, "image/png")],
                        "<html><script>x</script></html>",
                    )
                }),
            )
            .route(
                "/images/{name}",
                axum::routing::get(move || {
                    let photo = photo.clone();
                    async move {
                        (
                            [(http::header::CONTENT_TYPE, "image/png")],
                            photo.as_ref().clone(),
                        )
                            .into_response()
                    }
                }),
            );
    concierge_testkit::serve(router).await.unwrap()
}

async fn catalogue_agents(photo: &[u8]) -> (crate::agents::Agents, String) {
    let shop = catalogue(photo.to_vec()).await;
    let a = crate::agents::start_with(
        "openai",
        &format!(
            "[[tools]]\nname = \"product\"\ndescription = \"One product of the catalogue.\"\nurl = \"{shop}/products/{{id}}\"\nparameters = {{ type = \"object\", properties = {{ id = {{ type = \"string\" }} }}, required = [\"id\"] }}\n\n[media]\nwait_ms = 60000\n"
        ),
        CATALOGUE,
    )
    .await;
    (a, shop)
}

/// What the last tool call of the `n`th LLM call's history answered.
fn last_tool_answer(a: &crate::agents::Agents, n: usize) -> String {
    a.llm.calls()[n].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn an_agent_sends_only_a_url_a_tool_returned_in_the_turn() {
    use crate::fake_llm::{text, tool};
    let (a, shop) = catalogue_agents(&png(64, 64)).await;
    let image = |name: &str| format!("{shop}/images/{name}.png");
    // A URL the model made up (no tool answered it) is refused, and the model is told.
    a.llm.script(vec![
        tool("product", json!({ "id": "BOU-FIGUIER" })),
        tool(
            "send_media",
            json!({ "url": image("BOU-AMBRE"), "caption": "Bougie Ambre" }),
        ),
        text("Here is the fig candle."),
    ]);
    a.whatsapp("wamid.CAT1", "Do you have a fig candle?").await;
    eventually("the answer is sent", || async {
        a.graph
            .sends()
            .iter()
            .any(|s| s["text"]["body"] == "Here is the fig candle.")
    })
    .await;
    assert!(
        a.llm.calls()[0]
            .tool_names()
            .contains(&"send_media".to_string())
    );
    let refused = last_tool_answer(&a, 2);
    assert!(refused.contains("did not come from a tool"), "{refused}");

    // Nor does the customer's own message make a URL sendable.
    a.llm.script(vec![
        tool("send_media", json!({ "url": image("BOU-FIGUIER") })),
        text("Shall I put it aside for you?"),
    ]);
    a.whatsapp("wamid.CAT2", &format!("show me {}", image("BOU-FIGUIER")))
        .await;
    eventually("the next answer is sent", || async {
        a.graph
            .sends()
            .iter()
            .any(|s| s["text"]["body"] == "Shall I put it aside for you?")
    })
    .await;
    assert!(last_tool_answer(&a, 4).contains("did not come from a tool"));
    assert!(
        !a.graph.sends().iter().any(|s| s["type"] == "image"),
        "no photo from a URL no tool returned"
    );
    assert!(a.graph.uploads().is_empty());
}

#[tokio::test]
async fn a_photo_from_a_tools_answer_reaches_whatsapp_and_a_bad_one_is_said() {
    use crate::fake_llm::{text, tool};
    let photo = png(800, 800);
    let (a, shop) = catalogue_agents(&photo).await;
    let image = |name: &str| format!("{shop}/images/{name}.png");
    a.llm.script(vec![
        tool("product", json!({ "id": "BOU-FIGUIER" })),
        tool(
            "send_media",
            json!({ "url": image("BOU-FIGUIER"), "caption": "Bougie Figuier, 38 €" }),
        ),
        tool(
            "send_media",
            json!({ "url": image("moved"), "caption": "Another angle" }),
        ),
        tool("send_media", json!({ "url": image("page") })),
        text("Here is the fig candle."),
    ]);
    a.whatsapp("wamid.CAT3", "Do you have a fig candle?").await;
    eventually("the answer is sent", || async {
        a.graph
            .sends()
            .iter()
            .any(|s| s["text"]["body"] == "Here is the fig candle.")
    })
    .await;
    let sends = a.graph.sends();
    let at = |wanted: &dyn Fn(&Value) -> bool| sends.iter().position(wanted);
    let photo_at = at(&|s| s["type"] == "image" && s["image"]["caption"] == "Bougie Figuier, 38 €")
        .expect("the photo is sent");
    let uploads = a.graph.uploads();
    let (_, form) = uploads.iter().find(|(p, _)| p.ends_with("/media")).unwrap();
    assert_eq!(form.files[0].bytes.as_ref(), photo.as_slice());
    // The redirect is not followed: its caption goes alone, and the thread says why.
    let moved_at = at(&|s| s["text"]["body"] == "Another angle").expect("the caption alone");
    let words_at = at(&|s| s["text"]["body"] == "Here is the fig candle.").unwrap();
    assert!(photo_at < moved_at && moved_at < words_at, "{sends:?}");
    assert_eq!(
        sends.iter().filter(|s| s["type"] == "image").count(),
        1,
        "neither the redirect nor the page is sent as a picture"
    );
    let conversation = a.wa_conversation().await;
    let notes = a.app.store().notes(&conversation).await.unwrap();
    let said: Vec<&str> = notes.iter().map(|n| n.body.as_str()).collect();
    assert!(
        said.iter()
            .any(|n| n.contains("moved.png") && n.contains("redirect")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|n| n.contains("page.png") && n.contains("not kept")),
        "{said:?}"
    );
}
