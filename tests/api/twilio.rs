//! WhatsApp through Twilio: every fixture through the signed form webhook, sends checked
//! against a fake Twilio API, the reply window (63016), and faults.

use std::time::Duration;

use concierge::domain::{
    ChannelId, Choice, Content, ConversationId, DeliveryStatus, Direction, MediaKind, MediaRef,
    Message,
};

use crate::fake_api::{FakeApi, answer};
use crate::helpers::{TestApp, eventually, first_reply, spawn_with_channel, until_a_reply_is_sent};
use crate::whatsapp::{fixture, signatures};

const CUSTOMER: &str = "15550100001";

struct Tw {
    app: TestApp,
    api: FakeApi,
    url: String,
    token: String,
}

async fn start(template: bool) -> Tw {
    start_with(template, None).await
}

async fn start_with(
    template: bool,
    responder: Option<std::sync::Arc<dyn concierge::orchestrator::Responder>>,
) -> Tw {
    let api = FakeApi::start().await.expect("the fake platform");
    let signatures = signatures();
    let url = signatures["twilio_webhook_url"]
        .as_str()
        .unwrap()
        .to_string();
    let token = signatures["twilio_auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    let template = if template {
        "reengagement_template = { content_sid = \"HXfa4efa4efa4efa4efa4efa4efa4efa4e\", variables = { \"1\" = \"Maison Lumière\" } }\n"
    } else {
        ""
    };
    let app = spawn_with_channel(
        "twilio.toml",
        format!(
            "kind = \"twilio_whatsapp\"\naccount_sid = \"ACfa4efa4efa4efa4efa4efa4efa4efa4e\"\nauth_token = \"{token}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"{url}\"\napi_base = \"{}\"\nmessaging_api_base = \"{}\"\n{template}",
            api.url, api.url
        ),
        responder,
    )
    .await;
    Tw {
        app,
        api,
        url,
        token,
    }
}

async fn conversation(store: &concierge::store::SharedStore) -> ConversationId {
    crate::helpers::conversation_in(store, "twilio", CUSTOMER).await
}

/// Twilio's signature for `params` posted to `url`.
pub(crate) fn sign(token: &str, url: &str, body: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
    params.sort();
    let mut data = url.to_string();
    for (k, v) in params {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Tw {
    async fn post_with(&self, body: Vec<u8>, signature: Option<&str>) -> u16 {
        let mut request = self
            .app
            .client
            .post(self.app.url("/webhooks/twilio"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.body(body).send().await.unwrap().status().as_u16()
    }

    async fn post_fixture(&self, name: &str) {
        let signature = signatures()["twilio_x_twilio_signature"][name]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(self.post_with(fixture(name), Some(&signature)).await, 200);
    }

    async fn post_form(&self, body: &str) {
        let signature = sign(&self.token, &self.url, body);
        assert_eq!(
            self.post_with(body.as_bytes().to_vec(), Some(&signature))
                .await,
            200
        );
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

    async fn wait_forms(&self, n: usize) -> Vec<Vec<(String, String)>> {
        let api = self.api.clone();
        eventually(&format!("{n} sends reach Twilio"), || {
            let api = api.clone();
            async move { api.forms().len() >= n }
        })
        .await;
        self.api.forms()
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn fixture_text() {
    let tw = start(true).await;
    tw.post_fixture("twilio_whatsapp_text.form").await;
    let m = tw.first_inbound().await;
    assert_eq!(m.contact.as_str(), CUSTOMER);
    assert_eq!(
        m.content,
        Content::text("Hi! Can you book a table for two at 7pm tonight?")
    );
    assert_eq!(
        m.platform_id.unwrap().as_str(),
        "SM00000000000000000000000000000001"
    );
}

#[tokio::test]
async fn fixture_image_and_its_media_fetched_with_basic_auth() {
    let tw = start(true).await;
    tw.post_fixture("twilio_whatsapp_image.form").await;
    let m = tw.first_inbound().await;
    let Content::Media {
        kind,
        mime,
        caption,
        media,
        ..
    } = &m.content
    else {
        panic!("{:?}", m.content)
    };
    assert_eq!(*kind, MediaKind::Image);
    assert_eq!(mime.as_deref(), Some("image/jpeg"));
    assert_eq!(caption.as_deref(), Some("This is the dish I want to order"));
    assert!(
        media
            .0
            .starts_with("https://api.twilio.com/2010-04-01/Accounts/")
    );

    // Fetching goes to the media URL with the account's Basic credentials.
    let config: concierge::channels::twilio::TwilioConfig = toml::from_str(&format!(
        "account_sid = \"ACx\"\nauth_token = \"tok\"\nfrom = \"whatsapp:+1\"\npublic_url = \"https://x\"\napi_base = \"{}\"\n",
        tw.api.url
    ))
    .unwrap();
    let adapter = concierge::channels::twilio::Twilio::new(
        ChannelId::parse("twilio").unwrap(),
        config,
        reqwest::Client::new(),
    );
    use concierge::channels::ChannelAdapter;
    let bytes = adapter
        .fetch_media(&MediaRef(format!("{}/download/ME1", tw.api.url)))
        .await
        .unwrap();
    assert_eq!(bytes.bytes.as_ref(), b"FAKE-JPEG-BYTES");
    // The account's credentials go nowhere else, whatever the webhook names.
    let requests_before = tw.api.requests().len();
    for elsewhere in [
        "https://elsewhere.example/2010-04-01/Accounts/ACx/Media/ME2".to_string(),
        format!("{}.evil.example/download/ME1", tw.api.url),
    ] {
        assert!(
            matches!(
                adapter.fetch_media(&MediaRef(elsewhere.clone())).await,
                Err(concierge::channels::MediaError::Refused(_))
            ),
            "{elsewhere}"
        );
    }
    assert_eq!(tw.api.requests().len(), requests_before);
    // The gateway's own calls may land around it: the download is the one to read.
    let request = tw
        .api
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/download/ME1"))
        .unwrap();
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        "Basic QUN4OnRvaw=="
    );
}

#[tokio::test]
async fn fixture_location() {
    let tw = start(true).await;
    tw.post_fixture("twilio_whatsapp_location.form").await;
    let m = tw.first_inbound().await;
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

#[tokio::test]
async fn fixture_button_reply() {
    let tw = start(true).await;
    tw.post_fixture("twilio_whatsapp_button_reply.form").await;
    let m = tw.first_inbound().await;
    assert_eq!(
        m.content,
        Content::Choice(Choice::new("confirm_booking_42", "Confirm"))
    );
    assert_eq!(
        m.reply_to.unwrap().as_str(),
        "SMffffffffffffffffffffffffffffffff"
    );
}

/// A reply sent with a scripted sid, so the status fixtures have a message to move.
async fn with_sent_reply(sid: &str) -> Tw {
    let tw = start(true).await;
    tw.api.script(vec![answer(
        201,
        &format!("{{\"sid\":\"{sid}\",\"status\":\"queued\"}}"),
    )]);
    tw.post_form("MessageSid=SMin1&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body=What+are+your+opening+hours%3F&NumMedia=0")
        .await;
    tw.wait_forms(1).await;
    until_a_reply_is_sent(tw.app.store(), &conversation(tw.app.store()).await).await;
    tw
}

async fn reply(tw: &Tw) -> Message {
    first_reply(tw.app.store(), &conversation(tw.app.store()).await).await
}

#[tokio::test]
async fn fixture_status_read() {
    let tw = with_sent_reply("SMffffffffffffffffffffffffffffffff").await;
    tw.post_fixture("twilio_whatsapp_status_read.form").await;
    eventually("read", || async {
        reply(&tw).await.status == DeliveryStatus::Read
    })
    .await;
}

#[tokio::test]
async fn fixture_status_failed_63016_re_engages_with_the_content_template() {
    let tw = with_sent_reply("SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee").await;
    tw.post_fixture("twilio_whatsapp_status_failed.form").await;
    let forms = tw.wait_forms(2).await;
    assert_eq!(
        field(&forms[1], "ContentSid"),
        Some("HXfa4efa4efa4efa4efa4efa4efa4efa4e")
    );
    assert_eq!(
        field(&forms[1], "ContentVariables"),
        Some("{\"1\":\"Maison Lumière\"}")
    );
    assert_eq!(field(&forms[1], "Body"), None);
    let first = reply(&tw).await;
    assert!(
        matches!(first.status, DeliveryStatus::Failed { code: Some(ref c), .. } if c == "63016")
    );
}

#[tokio::test]
async fn forged_changed_or_missing_signatures_get_401_and_store_nothing() {
    let tw = start(true).await;
    let body = fixture("twilio_whatsapp_text.form");
    let good = signatures()["twilio_x_twilio_signature"]["twilio_whatsapp_text.form"]
        .as_str()
        .unwrap()
        .to_string();
    let mut changed = body.clone();
    let at = changed.iter().position(|b| *b == b'H').unwrap();
    changed[at] = b'h';
    assert_eq!(
        tw.post_with(body.clone(), Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
            .await,
        401
    );
    assert_eq!(tw.post_with(changed, Some(&good)).await, 401);
    assert_eq!(tw.post_with(body.clone(), None).await, 401);
    assert_eq!(tw.post_with(body, Some("not base64!")).await, 401);
    assert!(tw.app.store().pending(0, 10).await.unwrap().is_empty());
    assert!(tw.messages().await.is_empty());
}

#[tokio::test]
async fn replies_go_through_the_messages_resource() {
    let tw = start(true).await;
    tw.post_form("MessageSid=SMin1&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body=Do+you+sell+gift+cards%3F&NumMedia=0")
        .await;
    let forms = tw.wait_forms(1).await;
    let form = &forms[0];
    assert_eq!(field(form, "From"), Some("whatsapp:+15550100000"));
    assert_eq!(field(form, "To"), Some("whatsapp:+15550100001"));
    assert!(field(form, "Body").unwrap().contains("gift card"));
    assert_eq!(field(form, "StatusCallback"), Some(tw.url.as_str()));
    let request = tw
        .api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Messages.json"))
        .unwrap();
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/ACfa4efa4efa4efa4efa4efa4efa4efa4e/Messages.json"
    );
    assert!(
        request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    // The turn sent the typing indicator for the customer's message.
    let typing = tw
        .api
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/Indicators/Typing.json")
        .expect("typing indicator");
    let typing: Vec<(String, String)> = serde_urlencoded::from_bytes(&typing.body).unwrap();
    assert!(typing.contains(&("messageId".into(), "SMin1".into())));
}

#[tokio::test]
async fn a_63016_answer_is_reconciled_with_the_template_and_429_is_retried() {
    let tw = start(true).await;
    tw.api.script(vec![
        crate::fake_api::Answer {
            status: 429,
            body: "{\"code\":20429,\"message\":\"Too Many Requests\"}".into(),
            retry_after: Some(1),
        },
        answer(400, "{\"code\":63016,\"message\":\"Failed to send freeform message because you are outside the allowed window.\"}"),
    ]);
    tw.post_form("MessageSid=SMin1&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body=Do+you+sell+gift+cards%3F&NumMedia=0")
        .await;
    let forms = tw.wait_forms(3).await;
    assert!(field(&forms[0], "Body").is_some());
    assert!(field(&forms[1], "Body").is_some());
    assert_eq!(
        field(&forms[2], "ContentSid"),
        Some("HXfa4efa4efa4efa4efa4efa4efa4efa4e")
    );
    eventually("sent", || async {
        reply(&tw).await.status == DeliveryStatus::Sent
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tw.api.forms().len(), 3);
}

#[tokio::test]
async fn without_a_template_an_old_conversation_fails_clearly() {
    let tw = start(false).await;
    tw.api.script(vec![answer(
        400,
        "{\"code\":63016,\"message\":\"outside the window\"}",
    )]);
    tw.post_form("MessageSid=SMin1&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body=Do+you+sell+gift+cards%3F&NumMedia=0")
        .await;
    eventually("failed", || async {
        tw.messages().await.iter().any(|m| {
            m.direction == Direction::Outbound && matches!(m.status, DeliveryStatus::Failed { .. })
        })
    })
    .await;
    let DeliveryStatus::Failed { code, reason } = reply(&tw).await.status else {
        unreachable!()
    };
    assert_eq!(code.as_deref(), Some("63016"));
    assert!(reason.contains("reengagement_template"), "{reason}");
}

/// Answers each keyword with one kind of content.
struct Kinds;

#[async_trait::async_trait]
impl concierge::orchestrator::Responder for Kinds {
    async fn respond(
        &self,
        turn: &concierge::orchestrator::Turn<'_>,
    ) -> Result<Option<concierge::orchestrator::Decision>, concierge::orchestrator::ResponderError>
    {
        let content = match turn.text().unwrap_or_default().as_str() {
            "buttons" => Content::Choices {
                body: "Shall I confirm your table?".into(),
                choices: vec![
                    Choice::new("confirm_booking_42", "Confirm"),
                    Choice::new("change_booking_42", "Change"),
                ],
                header: None,
                footer: None,
                button: None,
            },
            "image" => Content::Media {
                kind: MediaKind::Image,
                mime: None,
                caption: Some("Menu (fake)".into()),
                media: MediaRef("https://cdn.example.test/menu.jpg".into()),
                kept: None,
            },
            "template" => Content::template(
                "HX0000000000000000000000000000beef",
                "en",
                vec!["Test User".into(), "7:00 PM".into()],
            ),
            "long" => Content::text(
                (0..1000)
                    .map(|i| format!("w{i:03}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            other => Content::text(format!("re: {other}")),
        };
        Ok(Some(concierge::orchestrator::Decision {
            by: concierge::orchestrator::DecidedBy::Other("kinds"),
            replies: vec![(concierge::domain::Author::Agent("test".into()), content)],
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

#[tokio::test]
async fn each_kind_of_reply_has_its_twilio_form() {
    let tw = start_with(true, Some(std::sync::Arc::new(Kinds))).await;
    for (i, keyword) in ["text", "buttons", "image", "template"].iter().enumerate() {
        tw.post_form(&format!(
            "MessageSid=SMin{i}&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body={keyword}&NumMedia=0"
        ))
        .await;
        tw.wait_forms(i + 1).await;
    }
    let forms = tw.api.forms();
    assert_eq!(field(&forms[0], "Body"), Some("re: text"));
    assert_eq!(
        field(&forms[1], "Body"),
        Some("Shall I confirm your table?\n\n1. Confirm\n2. Change")
    );
    assert_eq!(
        field(&forms[2], "MediaUrl"),
        Some("https://cdn.example.test/menu.jpg")
    );
    assert_eq!(field(&forms[2], "Body"), Some("Menu (fake)"));
    assert_eq!(
        field(&forms[3], "ContentSid"),
        Some("HX0000000000000000000000000000beef")
    );
    assert_eq!(
        field(&forms[3], "ContentVariables"),
        Some("{\"1\":\"Test User\",\"2\":\"7:00 PM\"}")
    );
    for form in &forms {
        assert_eq!(field(form, "To"), Some("whatsapp:+15550100001"));
    }
}

#[tokio::test]
async fn a_long_reply_is_split_into_messages_and_a_failed_part_does_not_resend_the_others() {
    let tw = start_with(true, Some(std::sync::Arc::new(Kinds))).await;
    tw.api.script(vec![
        answer(201, "{\"sid\":\"SMpart1\"}"),
        answer(500, "{\"code\":20500,\"message\":\"Internal error\"}"),
    ]);
    tw.post_form(
        "MessageSid=SMlong&From=whatsapp%3A%2B15550100001&WaId=15550100001&Body=long&NumMedia=0",
    )
    .await;
    // 5,000 characters: four parts of at most 1,600; the second failed once.
    let forms = tw.wait_forms(5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tw.api.forms().len(), 5);
    let forms: Vec<String> = forms
        .iter()
        .map(|f| field(f, "Body").unwrap().to_string())
        .collect();
    assert!(forms.iter().all(|b| b.chars().count() <= 1600));
    assert_eq!(forms[1], forms[2], "the failed part is retried");
    assert_ne!(forms[0], forms[1]);
    assert!(forms[0].starts_with("w000"));
    assert!(forms[4].ends_with("w999"));
    let joined = [&forms[0], &forms[2], &forms[3], &forms[4]]
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(joined.split(' ').count(), 1000);
}
