//! Secrets never logged: the real binary, on a deployment whose every credential comes from
//! the environment, through a whole run: a webhook on each channel with a known message, a
//! WhatsApp handshake, forged requests, an LLM turn with a tool call to a backend behind a
//! bearer token, a handoff, a concierge claiming, answering and writing a note through the
//! API with their token. Then everything it wrote, stdout and stderr, is searched: no secret
//! at any level, and at the default level no message body either.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{hmac_sha256_hex, twilio_signature};
use crate::fake_api::FakeApi;
use crate::fake_llm::{FakeLlm, FakeShop, text, tool};
use crate::helpers::{Deployment, PATIENCE, eventually, http_client};
use crate::whatsapp::fixture;

/// Every credential of the deployment, by the variable that carries it.
const SECRETS: [(&str, &str); 10] = [
    ("WA_ACCESS_TOKEN", "wa-access-token-LEAKCHECK-a1"),
    ("WA_APP_SECRET", "wa-app-secret-LEAKCHECK-b2"),
    ("WA_VERIFY_TOKEN", "wa-verify-token-LEAKCHECK-c3"),
    ("TW_AUTH_TOKEN", "twauthtokenLEAKCHECKd4"),
    ("TG_BOT_TOKEN", "7000000001:tg-bot-token-LEAKCHECK-e5"),
    ("TG_SECRET_TOKEN", "tg-secret-token-LEAKCHECK-f6"),
    ("BB_PASSWORD", "bb-password-LEAKCHECK-g7"),
    ("BB_WEBHOOK_SECRET", "bb-webhook-secret-LEAKCHECK-h8"),
    ("LLM_API_KEY", "llm-api-key-LEAKCHECK-i9"),
    ("SHOP_TOKEN", "shop-bearer-token-LEAKCHECK-j0"),
];

fn secret(name: &str) -> &'static str {
    SECRETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .expect("a secret of the test")
}

const TWILIO_URL: &str = "https://gateway.example.test/webhooks/twilio";
const TWILIO_SID: &str = "ACfa4efa4efa4efa4efa4efa4efa4efa4e";
const VISITOR: &str = "visitor-LEAKCHECK-k1-0123456789abcdef";

/// The messages of the run, each with a word found nowhere else.
const WA_BODY: &str = "Where is my order ML-10421? wabodyQ7X";
const TW_BODY: &str = "Do you deliver to Lyon twbodyR8Y";
const TG_BODY: &str = "Is the fig candle in stock tgbodyS9Z";
const BB_BODY: &str = "Can I change my address bbbodyT1A";
const WEB_BODY: &str = "Do you gift wrap webbodyU2B";
const HANDOFF_BODY: &str = "I want to talk to a human please hobodyV3C";
const AGENT_REPLY: &str = "Your order has shipped agentreplyW4D";
const CONCIERGE_BODY: &str = "Hello, Ana here, I will sort it out conciergebodyX5E";
const NOTE_BODY: &str = "customer upset about the delay notebodyY6F";

/// What a run wrote, and the token the concierge used.
pub(super) struct Run {
    pub lines: Vec<String>,
    pub token: String,
}

struct Gateway {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Gateway {
    fn start(deployment: &Deployment, rust_log: Option<&str>, json_logs: bool) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
        if json_logs {
            command.args(["--log-format", "json"]);
        }
        command
            .args(["serve", "--config"])
            .arg(deployment.config_path())
            .envs(SECRETS)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command.spawn().expect("start the gateway");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut readers = Vec::new();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let (lines, tx) = (lines.clone(), tx.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("Concierge is listening")
                        && let Some(addr) = listening_address(&line)
                    {
                        let _ = tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let addr = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the gateway did not start: {:?}", lines.lock().unwrap()));
        Gateway {
            child,
            base: format!("http://{addr}"),
            lines,
            readers,
        }
    }

    /// SIGTERM, a graceful stop; everything it wrote.
    async fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait();
            for reader in self.readers {
                let _ = reader.join();
            }
            status
        })
        .await
        .unwrap()
        .expect("wait for the gateway");
        assert!(status.success(), "a clean stop: {status:?}");
        self.lines.lock().unwrap().clone()
    }
}

/// The address in the "listening" line, in either log format.
fn listening_address(line: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        return value["fields"]["addr"].as_str().map(str::to_string);
    }
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    Some(rest.split_whitespace().next()?.to_string())
}

/// A deployment with one channel of each kind, an LLM, a tool and a concierge, every
/// credential a `${VAR}`.
fn deployment(api: &FakeApi, llm: &FakeLlm, shop: &FakeShop) -> Deployment {
    let main = format!(
        r#"[llm]
provider = "openai"
model = "test-model"
base_url = "{llm}/v1"
api_key = "${{LLM_API_KEY}}"
timeout_secs = 5
max_retries = 0

[faq]
threshold = 0.99

[[tools]]
name = "order_status"
description = "One order of the customer."
url = "{shop}/orders/{{order_id}}"
headers = {{ Authorization = "Bearer ${{SHOP_TOKEN}}" }}
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}

[[teams]]
name = "support"

[[concierges]]
name = "ana"
teams = ["support"]
"#,
        llm = llm.url,
        shop = shop.url,
    );
    let deployment = Deployment::new(&main);
    let api = &api.url;
    let channels = deployment.path().join("channels");
    let files = [
        (
            "whatsapp.toml",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"${{WA_ACCESS_TOKEN}}\"\napp_secret = \"${{WA_APP_SECRET}}\"\nverify_token = \"${{WA_VERIFY_TOKEN}}\"\napi_base = \"{api}/v23.0\"\n"
            ),
        ),
        (
            "twilio.toml",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"${{TW_AUTH_TOKEN}}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"{TWILIO_URL}\"\napi_base = \"{api}\"\nmessaging_api_base = \"{api}\"\n"
            ),
        ),
        (
            "telegram.toml",
            format!(
                "kind = \"telegram\"\nbot_token = \"${{TG_BOT_TOKEN}}\"\nsecret_token = \"${{TG_SECRET_TOKEN}}\"\napi_base = \"{api}\"\nmessages_per_second_per_chat = 50\n"
            ),
        ),
        (
            "imessage.toml",
            format!(
                "kind = \"bluebubbles\"\nserver_url = \"{api}\"\npassword = \"${{BB_PASSWORD}}\"\nwebhook_secret = \"${{BB_WEBHOOK_SECRET}}\"\n"
            ),
        ),
    ];
    for (file, body) in files {
        std::fs::write(channels.join(file), body).unwrap();
    }
    std::fs::write(
        deployment.path().join("prompts/front_desk.md"),
        "+++\ndescription = \"The front desk.\"\nentry = true\ntools = [\"order_status\"]\n+++\nYou are the front desk of {{ merchant }}.\n",
    )
    .unwrap();
    deployment
}

/// `concierge token create ana`: the token it prints once.
fn create_token(deployment: &Deployment) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .args(["token", "create", "ana", "--config"])
        .arg(deployment.config_path())
        .envs(SECRETS)
        .env_remove("RUST_LOG")
        .output()
        .expect("token create");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(token.starts_with("cct_"), "{token}");
    assert!(!stderr.contains(&token), "{stderr}");
    token
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A WhatsApp text from the fixture's customer, as Meta signs it.
fn whatsapp(wamid: &str, body: &str) -> (Vec<u8>, String) {
    let mut payload: Value = serde_json::from_slice(&fixture("whatsapp_text.json")).unwrap();
    let message = &mut payload["entry"][0]["changes"][0]["value"]["messages"][0];
    message["id"] = json!(wamid);
    message["timestamp"] = json!(now().to_string());
    message["text"]["body"] = json!(body);
    let bytes = serde_json::to_vec(&payload).unwrap();
    let signature = hmac_sha256_hex(secret("WA_APP_SECRET"), &bytes);
    (bytes, signature)
}

/// Drives a whole run against a fresh gateway and returns what it wrote.
pub(super) async fn full_run(rust_log: Option<&str>, json_logs: bool) -> Run {
    let api = FakeApi::start().await.expect("the fake platform");
    let llm = FakeLlm::start().await;
    let shop = FakeShop::start().await;
    let deployment = deployment(&api, &llm, &shop);
    let token = create_token(&deployment);
    let gateway = Gateway::start(&deployment, rust_log, json_logs);
    let base = gateway.base.clone();
    let client = http_client();
    let status = |r: reqwest::Response| r.status().as_u16();

    // The WhatsApp handshake, right and wrong; a forged webhook; a wrong API token.
    let handshake = |token: &str| {
        client
            .get(format!("{base}/webhooks/whatsapp"))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let answer = handshake(secret("WA_VERIFY_TOKEN")).await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "1158201444");
    assert_eq!(status(handshake("not-the-token").await.unwrap()), 403);
    let (forged, _) = whatsapp("wamid.LEAK0", WA_BODY);
    let forged = client
        .post(format!("{base}/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            hmac_sha256_hex("not-the-secret", &forged),
        )
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(status(forged), 401);
    let wrong = client
        .get(format!("{base}/api/v1/queue"))
        .bearer_auth(format!("{token}0"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(wrong), 401);

    // WhatsApp: an agent turn with a tool call behind the shop's bearer token.
    llm.script(vec![
        tool("order_status", json!({ "order_id": "ML-10421" })),
        text(AGENT_REPLY),
    ]);
    let (body, signature) = whatsapp("wamid.LEAK1", WA_BODY);
    let posted = client
        .post(format!("{base}/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);
    eventually("the agent's reply reaches WhatsApp", || async {
        api.sends()
            .iter()
            .any(|s| s.to_string().contains(AGENT_REPLY))
    })
    .await;
    let bearer = format!("Bearer {}", secret("SHOP_TOKEN"));
    assert_eq!(
        shop.calls()[0].header("authorization").as_deref(),
        Some(bearer.as_str())
    );

    // Twilio.
    let mut form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&fixture("twilio_whatsapp_text.form")).unwrap();
    for (name, value) in form.iter_mut() {
        match name.as_str() {
            "Body" => *value = TW_BODY.to_string(),
            "MessageSid" | "SmsSid" | "SmsMessageSid" => {
                *value = "SM0000000000000000000000000000LEAK".to_string()
            }
            _ => {}
        }
    }
    let form = serde_urlencoded::to_string(&form).unwrap();
    let posted = client
        .post(format!("{base}/webhooks/twilio"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(secret("TW_AUTH_TOKEN"), TWILIO_URL, &form),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);

    // Telegram.
    let mut update: Value = serde_json::from_slice(&fixture("telegram_text.json")).unwrap();
    update["message"]["text"] = json!(TG_BODY);
    update["message"]["date"] = json!(now());
    let posted = client
        .post(format!("{base}/webhooks/telegram"))
        .header("x-telegram-bot-api-secret-token", secret("TG_SECRET_TOKEN"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);

    // iMessage through BlueBubbles.
    let mut message: Value =
        serde_json::from_slice(&fixture("bluebubbles_new_message.json")).unwrap();
    message["data"]["text"] = json!(BB_BODY);
    message["data"]["dateCreated"] = json!(now() * 1000);
    let posted = client
        .post(format!("{base}/webhooks/imessage"))
        .query(&[("secret", secret("BB_WEBHOOK_SECRET"))])
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);

    // The web chat.
    let posted = client
        .post(format!("{base}/webhooks/web"))
        .header("x-webchat-key", VISITOR)
        .json(&json!({ "id": "w1", "text": WEB_BODY }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);
    eventually("every channel's reply is sent", || async {
        let telegram = api
            .telegram_calls()
            .iter()
            .any(|(method, _)| method == "sendMessage");
        !api.forms().is_empty() && telegram && !api.bluebubbles_sends().is_empty()
    })
    .await;
    eventually("the web chat's turn ran", || async {
        llm.calls()
            .iter()
            .any(|c| c.body.to_string().contains(WEB_BODY))
    })
    .await;

    // A handoff on WhatsApp; Ana claims it, answers and writes a note with her token.
    let (body, signature) = whatsapp("wamid.LEAK2", HANDOFF_BODY);
    let posted = client
        .post(format!("{base}/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status(posted), 200);
    let api_get = |path: &str| {
        client
            .get(format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .send()
    };
    let mut conversation = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while conversation.is_empty() && tokio::time::Instant::now() < deadline {
        let queue: Value = api_get("/queue").await.unwrap().json().await.unwrap();
        if let Some(id) = queue["items"][0]["conversation"].as_str() {
            conversation = id.to_string();
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert!(!conversation.is_empty(), "the handoff reached the queue");
    let api_post = |path: String, body: Value| {
        client
            .post(format!("{base}/api/v1/conversations/{conversation}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert_eq!(
        status(api_post("/claim".into(), json!({})).await.unwrap()),
        200
    );
    assert_eq!(
        status(
            api_post("/messages".into(), json!({ "text": CONCIERGE_BODY }))
                .await
                .unwrap()
        ),
        202
    );
    assert_eq!(
        status(
            api_post("/notes".into(), json!({ "text": NOTE_BODY }))
                .await
                .unwrap()
        ),
        201
    );
    eventually("the concierge's answer reaches WhatsApp", || async {
        api.sends()
            .iter()
            .any(|s| s.to_string().contains(CONCIERGE_BODY))
    })
    .await;
    let view = api_get(&format!("/conversations/{conversation}"))
        .await
        .unwrap();
    assert_eq!(status(view), 200);

    let lines = gateway.stop().await;
    Run { lines, token }
}

/// Every credential of the run, as it could be written: whole, and the parts that are
/// secret on their own.
fn credentials(run: &Run) -> Vec<(String, String)> {
    use base64::Engine;
    let mut found: Vec<(String, String)> = SECRETS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let bot = secret("TG_BOT_TOKEN");
    found.push((
        "TG_BOT_TOKEN after its id".into(),
        bot[bot.find(':').unwrap_or(0) + 1..].to_string(),
    ));
    found.push((
        "Twilio basic auth".into(),
        base64::engine::general_purpose::STANDARD
            .encode(format!("{TWILIO_SID}:{}", secret("TW_AUTH_TOKEN"))),
    ));
    found.push(("the concierge's API token".into(), run.token.clone()));
    found.push((
        "the API token's random part".into(),
        run.token["cct_".len()..].to_string(),
    ));
    found.push(("the visitor's key".into(), VISITOR.to_string()));
    found
}

/// The words that mark each message body of the run.
fn bodies() -> Vec<&'static str> {
    [
        WA_BODY,
        TW_BODY,
        TG_BODY,
        BB_BODY,
        WEB_BODY,
        HANDOFF_BODY,
        AGENT_REPLY,
        CONCIERGE_BODY,
        NOTE_BODY,
    ]
    .iter()
    .map(|b| b.rsplit(' ').next().unwrap_or(b))
    .collect()
}

fn leaks<'a>(lines: &'a [String], needle: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_is_logged_even_at_debug() {
    let run = full_run(Some("debug"), false).await;
    assert!(
        run.lines.iter().any(|l| l.contains("DEBUG")),
        "the run logged at debug"
    );
    for (what, value) in credentials(&run) {
        let found = leaks(&run.lines, &value);
        assert!(found.is_empty(), "{what} logged:\n{found:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_secrets_nor_message_bodies_are_logged_at_the_default_level() {
    let run = full_run(None, true).await;
    assert!(
        run.lines
            .iter()
            .any(|l| l.contains("Concierge is listening")),
        "{:?}",
        run.lines
    );
    assert!(!run.lines.iter().any(|l| l.contains("\"DEBUG\"")));
    for (what, value) in credentials(&run) {
        let found = leaks(&run.lines, &value);
        assert!(found.is_empty(), "{what} logged:\n{found:#?}");
    }
    for marker in bodies() {
        let found = leaks(&run.lines, marker);
        assert!(found.is_empty(), "a message body logged:\n{found:#?}");
    }
}
