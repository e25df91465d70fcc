//! Notifications end to end: a system with the `notify` scope writes first through
//! `POST /api/v1/notifications`; each fake platform gets the message in its own form (the
//! Graph API a template with named parameters, Twilio its Content SID and variables,
//! Telegram the filled-in text); the customer's answer reaches the agents with the
//! notification's text and context; consent decides, and anything wrong is refused with
//! nothing sent.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_llm::{FakeLlm, text};
use crate::helpers::{Deployment, TestApp, eventually, spawn_in};
use concierge::app::Parts;
use concierge_testkit::platform::FakeApi;

const WA_SECRET: &str = "notify-app-secret";
const TG_SECRET: &str = "notify-telegram-secret";
const TW_TOKEN: &str = "notify-twilio-token";
const PHONE: &str = "33612345678";
const TW_CUSTOMER: &str = "15550100001";
const TG_CHAT: &str = "1000000001";
const SHIPPED_SID: &str = "HX0123456789abcdef0123456789abcdef";

const SHIPPED: &str = "category = \"utility\"\nbody = \"Bonjour {{name}}, votre commande {{order}} est partie avec {{carrier}}.\"\ntwilio_content_sid = \"HX0123456789abcdef0123456789abcdef\"\n[[buttons]]\ntype = \"quick_reply\"\ntext = \"Changer l'adresse\"\n";
const OFFER: &str = "category = \"marketing\"\nbody = \"Nouveau : la bougie {{1}} est arrivée, -{{2}} % cette semaine.\"\n";
const FRONT_DESK: &str = "+++\ndescription = \"The front desk.\"\nentry = true\n+++\nYou are the front desk of {{ merchant }}.\n";

struct Notify {
    app: TestApp,
    api: FakeApi,
    llm: FakeLlm,
    token: String,
}

async fn start() -> Notify {
    start_with("").await
}

async fn start_with(extra: &str) -> Notify {
    let llm = FakeLlm::start().await;
    let api = FakeApi::start().await.expect("the fake platform");
    let deployment = Deployment::new(&format!(
        "[llm]\nprovider = \"openai\"\nmodel = \"test-model\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\ntimeout_secs = 2\nmax_retries = 1\n\n[merchant]\nname = \"Maison Test\"\ntimezone = \"Europe/Paris\"\n{extra}\n",
        llm.url
    ));
    let root = deployment.path();
    std::fs::write(root.join("prompts/front_desk.md"), FRONT_DESK).unwrap();
    std::fs::create_dir(root.join("templates")).unwrap();
    std::fs::write(root.join("templates/order_shipped.fr.toml"), SHIPPED).unwrap();
    std::fs::write(root.join("templates/candle_offer.fr.toml"), OFFER).unwrap();
    let files = [
        (
            "whatsapp.toml",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\n",
                api.url
            ),
        ),
        (
            "telegram.toml",
            format!(
                "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{TG_SECRET}\"\napi_base = \"{}\"\n",
                api.url
            ),
        ),
        (
            "twilio.toml",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"ACfa4efa4efa4efa4efa4efa4efa4efa4e\"\nauth_token = \"{TW_TOKEN}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"https://gateway.example.com/webhooks/twilio\"\napi_base = \"{0}\"\nmessaging_api_base = \"{0}\"\n",
                api.url
            ),
        ),
    ];
    for (file, body) in files {
        std::fs::write(root.join("channels").join(file), body).unwrap();
    }
    let app = spawn_in(deployment, Parts::default()).await;
    let token = concierge::handoff::access::issue_service(
        app.store().as_ref(),
        "orders",
        &["notify".into(), "consent".into()],
    )
    .await
    .unwrap();
    Notify {
        app,
        api,
        llm,
        token,
    }
}

impl Notify {
    async fn notify(&self, key: Option<&str>, body: Value) -> (u16, Value) {
        self.notify_as(&self.token, key, body).await
    }

    async fn notify_as(&self, token: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .post(self.app.url("/api/v1/notifications"))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A signed WhatsApp text from the customer.
    async fn whatsapp(&self, wamid: &str, body: &str) {
        let payload = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
                "contacts": [{ "profile": { "name": "Claire" }, "wa_id": PHONE }],
                "messages": [{ "from": PHONE, "id": wamid, "timestamp": crate::media::now_secs(),
                               "type": "text", "text": { "body": body } }],
            }}]}]
        }))
        .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
        mac.update(&payload);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let status = self
            .app
            .client
            .post(self.app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(payload)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// Waits until the Graph API received a text containing `words`.
    async fn sent_text(&self, what: &str, words: &str) {
        eventually(what, || async {
            self.api.sends().iter().any(|s| {
                s["text"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(words))
            })
        })
        .await;
    }

    /// The template messages the Graph API received.
    fn templates(&self) -> Vec<Value> {
        self.api
            .sends()
            .into_iter()
            .filter(|s| s["type"] == "template")
            .collect()
    }
}

fn shipped(to: Value, channel: &str) -> Value {
    json!({
        "channel": channel, "to": to,
        "template": { "name": "order_shipped", "language": "fr",
                      "params": { "name": "Claire", "order": "ML-10421", "carrier": "Colissimo" } },
        "context": { "order": "ML-10421", "carrier": "Colissimo", "tracking": "6A12345678901", "items": ["Bougie Figuier 190 g"] },
    })
}

#[tokio::test]
async fn a_notification_goes_out_as_each_platform_wants_and_the_answer_reaches_the_agents_in_context()
 {
    let n = start().await;
    let (status, accepted) = n
        .notify(
            Some("ML-10421-shipped"),
            shipped(json!("+33612345678"), "whatsapp"),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["replayed"], false);
    eventually("the Graph API gets the template", || async {
        n.templates().len() == 1
    })
    .await;
    let sent = &n.templates()[0];
    assert_eq!(sent["to"], PHONE);
    assert_eq!(sent["template"]["name"], "order_shipped");
    assert_eq!(sent["template"]["language"]["code"], "fr");
    assert_eq!(
        sent["template"]["components"][0]["parameters"],
        json!([
            { "type": "text", "parameter_name": "name", "text": "Claire" },
            { "type": "text", "parameter_name": "order", "text": "ML-10421" },
            { "type": "text", "parameter_name": "carrier", "text": "Colissimo" },
        ])
    );
    // The system retries with the same key: the same notification, nothing sent again.
    let (status, again) = n
        .notify(
            Some("ML-10421-shipped"),
            shipped(json!("+33612345678"), "whatsapp"),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["notification"], accepted["notification"]);
    let id = accepted["notification"].as_str().unwrap();
    let view: Value = n
        .app
        .client
        .get(n.app.url(&format!("/api/v1/notifications/{id}")))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["template"], "order_shipped.fr");
    assert_eq!(view["purpose"], "utility");
    assert_eq!(view["conversation"], accepted["conversation"]);

    // The customer answers: the agents read the notification and what the system said.
    n.llm.script(vec![text(
        "Of course: which address should ML-10421 go to?",
    )]);
    n.whatsapp("wamid.ADDR", "can I change the delivery address?")
        .await;
    n.sent_text("the agents answer", "which address").await;
    let call = n.llm.calls().pop().expect("the LLM was called");
    let read = call.body.to_string();
    assert!(
        read.contains("votre commande ML-10421 est partie avec Colissimo"),
        "{read}"
    );
    assert!(read.contains("6A12345678901"), "the context: {read}");
    assert_eq!(n.templates().len(), 1);

    // Twilio: the Content SID with the same variables, by name.
    let (status, body) = n
        .notify(None, shipped(json!("+15550100001"), "twilio"))
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("Twilio gets the Content SID", || async {
        n.api
            .forms()
            .iter()
            .any(|f| f.iter().any(|(k, v)| k == "ContentSid" && v == SHIPPED_SID))
    })
    .await;
    let form = n
        .api
        .forms()
        .into_iter()
        .find(|f| f.iter().any(|(k, _)| k == "ContentSid"))
        .unwrap();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        field("To").as_deref(),
        Some(format!("whatsapp:+{TW_CUSTOMER}").as_str())
    );
    let variables: Value = serde_json::from_str(&field("ContentVariables").unwrap()).unwrap();
    assert_eq!(
        variables,
        json!({"name": "Claire", "order": "ML-10421", "carrier": "Colissimo"})
    );

    // Telegram has no templates: the filled-in text goes, to a contact the system names.
    let (status, body) = n
        .notify(None, shipped(json!({ "contact": TG_CHAT }), "telegram"))
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("Telegram gets the text", || async {
        n.api.telegram_calls().iter().any(|(method, call)| {
            method == "sendMessage"
                && call["chat_id"].to_string().contains(TG_CHAT)
                && call["text"].as_str().is_some_and(|t| {
                    t == "Bonjour Claire, votre commande ML-10421 est partie avec Colissimo."
                })
        })
    })
    .await;
}

#[tokio::test]
async fn a_bad_notification_is_refused_clearly_and_nothing_is_sent() {
    let n = start().await;
    let concierge = concierge::handoff::access::issue(n.app.store().as_ref(), "ana")
        .await
        .unwrap();
    let events = concierge::handoff::access::issue_service(
        n.app.store().as_ref(),
        "crm",
        &["events".into()],
    )
    .await
    .unwrap();
    let good = shipped(json!("+33612345678"), "whatsapp");
    let (status, _) = n.notify_as(&concierge, None, good.clone()).await;
    assert_eq!(status, 403, "a concierge's token");
    let (status, _) = n.notify_as(&events, None, good.clone()).await;
    assert_eq!(status, 403, "a service without the notify scope");

    let cases = [
        (
            "unknown channel",
            json!({"channel": "sms", "to": "+33612345678", "text": "hi"}),
            404,
            "unknown_channel",
        ),
        (
            "unknown template",
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "order_shiped", "language": "fr", "params": {}}}),
            422,
            "unknown_template",
        ),
        (
            "a language the template is not in",
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "order_shipped", "language": "de", "params": {}}}),
            422,
            "unknown_template",
        ),
        (
            "a missing parameter",
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "order_shipped", "language": "fr",
                                "params": {"name": "Claire", "order": "ML-1"}}}),
            422,
            "invalid",
        ),
        (
            "a parameter too long for WhatsApp",
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "order_shipped", "language": "fr",
                                "params": {"name": "x".repeat(1100), "order": "ML-1", "carrier": "c"}}}),
            422,
            "invalid",
        ),
        (
            "not E.164",
            json!({"channel": "whatsapp", "to": "06 12 34 56 78", "text": "hi"}),
            422,
            "invalid",
        ),
        (
            "a phone number on a channel without them",
            json!({"channel": "telegram", "to": "+33612345678", "text": "hi"}),
            422,
            "invalid",
        ),
        (
            "a text outside the 24-hour window",
            json!({"channel": "whatsapp", "to": "+33699999999", "text": "Your order shipped"}),
            422,
            "invalid",
        ),
        (
            "a marketing template without consent",
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "candle_offer", "language": "fr", "params": ["Figuier", "20"]}}),
            409,
            "no_consent",
        ),
        (
            "both a template and a text",
            json!({"channel": "whatsapp", "to": "+33612345678", "text": "hi",
                   "template": {"name": "candle_offer", "language": "fr", "params": ["Figuier", "20"]}}),
            422,
            "invalid",
        ),
    ];
    for (what, body, want, code) in cases {
        let (status, answer) = n.notify(None, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert_eq!(answer["error"], code, "{what}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, answer) = n
        .notify(
            None,
            json!({"channel": "whatsapp", "to": "+33612345678",
                   "template": {"name": "order_shiped", "language": "fr", "params": {}}}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["message"].as_str().unwrap().contains("order_shiped"),
        "{answer}"
    );
    // Nothing reached any platform, and no conversation was started.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(n.api.sends().is_empty(), "{:?}", n.api.sends());
    assert!(n.api.forms().is_empty());
    let conversation = n.app.conversation("whatsapp", PHONE).await;
    assert!(
        n.app
            .store()
            .conversation(&conversation)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn stop_blocks_marketing_until_start_and_the_ledger_shows_both() {
    let n = start().await;
    let offer = json!({"channel": "whatsapp", "to": "+33612345678",
        "template": {"name": "candle_offer", "language": "fr", "params": ["Figuier", "20"]}});
    // The checkout recorded a yes: the offer goes.
    let consent = n
        .app
        .client
        .post(n.app.url(&format!("/api/v1/contacts/{PHONE}/consent")))
        .bearer_auth(&n.token)
        .json(
            &json!({"channel": "whatsapp", "purpose": "marketing", "granted": true,
                      "source": "checkout", "proof": "☑ Send me offers"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 201);
    let (status, body) = n.notify(None, offer.clone()).await;
    assert_eq!(status, 202, "{body}");
    eventually("the offer is sent", || async { n.templates().len() == 1 }).await;
    assert_eq!(
        n.templates()[0]["template"]["components"][0]["parameters"][0]["text"],
        "Figuier"
    );

    n.whatsapp("wamid.STOP", "STOP").await;
    n.sent_text(
        "the opt-out is confirmed",
        "You will not receive our offers",
    )
    .await;
    let (status, body) = n.notify(None, offer.clone()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("opted_out")));
    // A utility notification still goes: STOP is about offers.
    let (status, body) = n
        .notify(None, shipped(json!("+33612345678"), "whatsapp"))
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("the utility one is sent", || async {
        n.templates().len() == 2
    })
    .await;

    n.whatsapp("wamid.START", "START").await;
    n.sent_text("the opt-in is confirmed", "receive our offers again")
        .await;
    let (status, body) = n.notify(None, offer).await;
    assert_eq!(status, 202, "{body}");
    eventually("the offer goes again", || async {
        n.templates().len() == 3
    })
    .await;
    assert_eq!(n.llm.count(), 0, "no LLM for keywords");
    let ledger: Value = n
        .app
        .client
        .get(n.app.url(&format!(
            "/api/v1/contacts/{PHONE}/consent?channel=whatsapp"
        )))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen: Vec<(bool, &str)> = ledger["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["granted"].as_bool().unwrap(),
                h["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (true, "checkout"),
            (false, "chat_keyword"),
            (true, "chat_keyword")
        ]
    );
}

impl Notify {
    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn progress(&self, id: &str) -> Value {
        self.app
            .client
            .get(self.app.url(&format!("/api/v1/notifications/batch/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn customer(i: usize) -> String {
    format!("+3361{i:07}")
}

#[tokio::test]
async fn a_batch_is_paced_skips_who_opted_out_and_reports_its_progress() {
    let n = start_with("[notifications]\nbatch_per_second = 20\n").await;
    // One customer opted out of everything; one number is not a number.
    let out = customer(7);
    let consent = n
        .app
        .client
        .post(n.app.url(&format!(
            "/api/v1/contacts/{}/consent",
            out.trim_start_matches('+')
        )))
        .bearer_auth(&n.token)
        .json(&json!({"channel": "whatsapp", "purpose": "utility", "granted": false, "source": "call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 201);
    let mut recipients: Vec<Value> = (0..40)
        .map(|i| json!({"to": customer(i), "params": {"name": format!("Client {i}"), "order": format!("ML-{i}")}}))
        .collect();
    recipients[12] = json!({"to": "0612", "params": {"name": "x", "order": "y"}});
    let body = json!({
        "channel": "whatsapp",
        "template": {"name": "order_shipped", "language": "fr", "params": {"carrier": "Colissimo"}},
        "context": {"campaign": "december"},
        "recipients": recipients,
    });
    let (status, started) = n
        .post("/api/v1/notifications/batch", Some("dec-1"), body.clone())
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["total"], 40);
    assert_eq!(started["replayed"], false);
    let id = started["batch"].as_str().unwrap().to_string();
    let (_, again) = n
        .post("/api/v1/notifications/batch", Some("dec-1"), body)
        .await;
    assert_eq!(
        (again["batch"].as_str(), again["replayed"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    eventually("the batch is done", || async {
        n.progress(&id).await["state"] == "done"
    })
    .await;
    let done = n.progress(&id).await;
    assert_eq!(done["processed"], 40);
    assert_eq!(done["queued"], 38);
    assert_eq!(
        done["skipped_by_reason"],
        json!({"invalid": 1, "opted_out": 1})
    );
    eventually("38 templates sent", || async { n.templates().len() == 38 }).await;
    let sent = n.templates();
    let to: std::collections::HashSet<&str> =
        sent.iter().map(|s| s["to"].as_str().unwrap()).collect();
    assert_eq!(to.len(), 38, "each once");
    assert!(!to.contains(out.trim_start_matches('+')));
    let params = &sent[0]["template"]["components"][0]["parameters"];
    assert!(
        params.to_string().contains("Colissimo"),
        "the batch's parameter: {params}"
    );
    // Paced: never more than a second's worth (20) in any second.
    let mut at: Vec<std::time::Instant> = n.api.accepted().iter().map(|a| a.at).collect();
    at.sort();
    let most = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]) < std::time::Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 22, "{most} in one second");
    assert!(at.last().unwrap().duration_since(at[0]) >= std::time::Duration::from_millis(1500));
}

#[tokio::test]
async fn a_batch_can_be_stopped_and_a_bad_one_is_refused() {
    let n = start_with("[notifications]\nbatch_per_second = 10\n").await;
    let recipients: Vec<Value> = (0..200)
        .map(|i| json!({"to": customer(i), "params": {"name": "C", "order": "O", "carrier": "K"}}))
        .collect();
    let template = json!({"name": "order_shipped", "language": "fr"});
    let (status, started) = n
        .post(
            "/api/v1/notifications/batch",
            None,
            json!({"channel": "whatsapp", "template": template, "recipients": recipients}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["batch"].as_str().unwrap().to_string();
    eventually("some are sent", || async { n.templates().len() >= 3 }).await;
    let (status, stopped) = n
        .post(
            &format!("/api/v1/notifications/batch/{id}/stop"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stopped["state"], "stopped");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let sent = n.templates().len();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(n.templates().len(), sent, "nothing more after the stop");
    let progress = n.progress(&id).await;
    assert_eq!(progress["state"], "stopped");
    assert!(progress["processed"].as_u64().unwrap() < 200);

    let too_many: Vec<Value> = (0..10_001).map(|i| json!({"to": customer(i)})).collect();
    let cases = [
        (
            json!({"channel": "whatsapp", "template": template, "recipients": too_many}),
            422,
            "invalid",
        ),
        (
            json!({"channel": "whatsapp", "template": template, "recipients": []}),
            422,
            "invalid",
        ),
        (
            json!({"channel": "whatsapp", "template": {"name": "nope", "language": "fr"}, "recipients": [{"to": customer(1)}]}),
            422,
            "unknown_template",
        ),
        (
            json!({"channel": "fax", "template": template, "recipients": [{"to": customer(1)}]}),
            404,
            "unknown_channel",
        ),
    ];
    for (body, want, code) in cases {
        let (status, answer) = n.post("/api/v1/notifications/batch", None, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (want, Some(code)),
            "{answer}"
        );
    }
    let other = concierge::handoff::access::issue_service(
        n.app.store().as_ref(),
        "crm",
        &["notify".into()],
    )
    .await
    .unwrap();
    let theirs = n
        .app
        .client
        .get(n.app.url(&format!("/api/v1/notifications/batch/{id}")))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404, "another service's batch");
}

#[tokio::test]
async fn a_web_chat_visitor_reads_the_notification_live_and_in_the_history_never_its_context() {
    let n = start().await;
    let key = crate::helpers::visitor_key("notified");
    n.llm.script(vec![text("Hello! How can I help?")]);
    assert_eq!(n.app.post_text(&key, "v1", "hello").await.status(), 200);
    let conversation = n.app.visitor_conversation(&key).await;
    let contact = n
        .app
        .store()
        .conversation(&conversation)
        .await
        .unwrap()
        .unwrap()
        .contact;
    let mut live = n.app.open_stream(&key).await;
    let (status, body) = n
        .notify(
            None,
            json!({"channel": "web", "to": {"contact": contact.as_str()},
                   "text": "Your click & collect order ML-10421 is ready at the shop.",
                   "context": {"secret_margin": "42%"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let said = loop {
        let event = live.next().await;
        if event.text.contains("click & collect") {
            break event;
        }
    };
    assert_eq!(
        said.text,
        "Your click & collect order ML-10421 is ready at the shop."
    );
    let mut again = n.app.open_stream(&key).await;
    let mut history = Vec::new();
    while let Some(event) = again
        .next_within(std::time::Duration::from_millis(500))
        .await
    {
        history.push(event.text);
    }
    assert!(
        history
            .iter()
            .any(|t| t == "Your click & collect order ML-10421 is ready at the shop."),
        "{history:?}"
    );
    assert!(!history.iter().any(|t| t.contains("42%")), "{history:?}");
}

#[tokio::test]
async fn stop_all_stops_order_updates_too_until_start() {
    let n = start().await;
    n.whatsapp("wamid.STOPALL", "Stop all").await;
    n.sent_text(
        "the full opt-out is confirmed",
        "not even about your orders",
    )
    .await;
    let (status, body) = n
        .notify(None, shipped(json!("+33612345678"), "whatsapp"))
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("opted_out")));
    n.whatsapp("wamid.START2", "start").await;
    n.sent_text("the opt-in is confirmed", "receive our offers again")
        .await;
    let (status, body) = n
        .notify(None, shipped(json!("+33612345678"), "whatsapp"))
        .await;
    assert_eq!(status, 202, "{body}");
    let channel = concierge::domain::ChannelId::parse("whatsapp").unwrap();
    let contact = concierge::domain::ContactId::parse(PHONE).unwrap();
    let ledger = n.app.store().consents(&channel, &contact).await.unwrap();
    let seen: Vec<(&str, bool)> = ledger
        .iter()
        .map(|r| (r.consent.purpose.name(), r.consent.granted))
        .collect();
    assert_eq!(
        seen,
        [
            ("marketing", false),
            ("utility", false),
            ("marketing", true),
            ("utility", true)
        ]
    );
    assert_eq!(n.llm.count(), 0);
}
