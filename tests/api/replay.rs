//! An incident reproduced elsewhere: signed webhooks of every platform reach a gateway, are
//! exported with the real binary (`concierge inbox export`, no credential in it), and
//! replayed with it (`concierge replay`) into a second gateway whose channels have other
//! secrets: each is re-signed and accepted, and the second inbox holds the same events in the
//! same order. With the wrong secrets every signed webhook is refused.

use std::path::Path;
use std::process::{Command, Output};

use concierge::app::Parts;
use concierge::config::Config;
use concierge::store::{InboxEntry, SharedStore};
use serde_json::Value;

use crate::helpers::{Deployment, TestApp, spawn_in, visitor_key};
use crate::whatsapp::{fixture, signatures};

/// A deployment's channel secrets.
struct Secrets {
    app_secret: String,
    twilio_token: String,
    twilio_url: String,
    telegram: String,
    bluebubbles: String,
}

impl Secrets {
    /// Those the fixtures were signed with.
    fn of_fixtures() -> Secrets {
        let s = signatures();
        let text = |key: &str| s[key].as_str().expect(key).to_string();
        Secrets {
            app_secret: text("meta_app_secret"),
            twilio_token: text("twilio_auth_token"),
            twilio_url: text("twilio_webhook_url"),
            telegram: text("telegram_secret_token"),
            bluebubbles: "bb-webhook-secret-0001".to_string(),
        }
    }

    /// A laptop's: none of them the same.
    fn of_laptop() -> Secrets {
        Secrets {
            app_secret: "laptop-app-secret".to_string(),
            twilio_token: "0123456789abcdef0123456789abcdef".to_string(),
            twilio_url: "http://localhost:8080/webhooks/twilio".to_string(),
            telegram: "laptop_secret-token".to_string(),
            bluebubbles: "laptop-bb-secret".to_string(),
        }
    }

    /// Every value a kept webhook must not carry.
    fn all(&self) -> Vec<String> {
        vec![
            self.app_secret.clone(),
            self.twilio_token.clone(),
            self.telegram.clone(),
            self.bluebubbles.clone(),
        ]
    }
}

/// A paused gateway (nothing is answered: the inbox stays as the webhooks left it) with a
/// WhatsApp, a Twilio, a Telegram and a BlueBubbles channel, and the web chat.
fn deployment(secrets: &Secrets) -> Deployment {
    let deployment = Deployment::new("[orchestrator]\npaused = true\n");
    // Nothing is sent while paused; an unreachable API proves it.
    let api = "http://127.0.0.1:9";
    let channels = [
        (
            "whatsapp.toml",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{}\"\nverify_token = \"v\"\napi_base = \"{api}\"\n",
                secrets.app_secret
            ),
        ),
        (
            "twilio.toml",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"ACfa4efa4efa4efa4efa4efa4efa4efa4e\"\nauth_token = \"{}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"{}\"\napi_base = \"{api}\"\nmessaging_api_base = \"{api}\"\n",
                secrets.twilio_token, secrets.twilio_url
            ),
        ),
        (
            "telegram.toml",
            format!(
                "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{}\"\napi_base = \"{api}\"\n",
                secrets.telegram
            ),
        ),
        (
            "imessage.toml",
            format!(
                "kind = \"bluebubbles\"\nserver_url = \"{api}\"\npassword = \"bb-password\"\nwebhook_secret = \"{}\"\n",
                secrets.bluebubbles
            ),
        ),
    ];
    for (file, body) in channels {
        std::fs::write(deployment.path().join("channels").join(file), body).expect("channel");
    }
    deployment
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
    let mut request = app.client.post(app.url(path)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("post").status().as_u16()
}

/// Sends the production traffic, as each platform signs it; returns the channels in order.
async fn production_traffic(app: &TestApp, secrets: &Secrets) -> Vec<&'static str> {
    let s = signatures();
    let meta = |name: &str| {
        s["whatsapp_x_hub_signature_256"][name]
            .as_str()
            .unwrap()
            .to_string()
    };
    let twilio = |name: &str| {
        s["twilio_x_twilio_signature"][name]
            .as_str()
            .unwrap()
            .to_string()
    };
    let json = ("content-type", "application/json");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let bb = format!(
        "/webhooks/imessage?secret={}&password=bb-password&note=kept",
        secrets.bluebubbles
    );
    let mut sent = Vec::new();
    for (channel, name) in [
        ("whatsapp", "whatsapp_text.json"),
        ("twilio", "twilio_whatsapp_text.form"),
        ("telegram", "telegram_text.json"),
        ("imessage", "bluebubbles_new_message.json"),
        ("whatsapp", "whatsapp_image.json"),
        ("twilio", "twilio_whatsapp_location.form"),
        ("telegram", "telegram_location.json"),
        ("web", ""),
        ("imessage", "bluebubbles_reaction.json"),
        ("whatsapp", "whatsapp_batched_status_and_text.json"),
    ] {
        let status = match channel {
            "whatsapp" => {
                let signature = meta(name);
                let headers = [
                    json,
                    ("x-hub-signature-256", signature.as_str()),
                    ("authorization", "Bearer leaked-bearer-token"),
                    ("cookie", "session=leaked-cookie"),
                ];
                post(app, "/webhooks/whatsapp", &headers, fixture(name)).await
            }
            "twilio" => {
                let signature = twilio(name);
                let headers = [form, ("x-twilio-signature", signature.as_str())];
                post(app, "/webhooks/twilio", &headers, fixture(name)).await
            }
            "telegram" => {
                let headers = [json, ("x-telegram-bot-api-secret-token", &secrets.telegram)];
                post(app, "/webhooks/telegram", &headers, fixture(name)).await
            }
            "imessage" => post(app, &bb, &[json], fixture(name)).await,
            _ => app
                .post_text(&visitor_key("ana"), "w1", "Où est ma commande ?")
                .await
                .status()
                .as_u16(),
        };
        assert_eq!(status, 200, "{channel} {name}");
        sent.push(channel);
    }
    // A platform's retry, and a forged request: neither is kept again.
    let signature = meta("whatsapp_text.json");
    let retry = [json, ("x-hub-signature-256", signature.as_str())];
    let body = fixture("whatsapp_text.json");
    assert_eq!(
        post(app, "/webhooks/whatsapp", &retry, body.clone()).await,
        200
    );
    let forged = [json, ("x-hub-signature-256", "sha256=00")];
    assert_eq!(post(app, "/webhooks/whatsapp", &forged, body).await, 401);
    sent
}

/// Runs the real binary, off the test's runtime (the gateways it talks to run there).
async fn concierge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
    command.args(args).env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .expect("run concierge")
}

async fn export(config: &Path, env: &[(&str, &str)]) -> (String, Vec<Value>) {
    let config = config.to_str().unwrap();
    let output = concierge(&["inbox", "export", "--config", config], env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "export failed: {stderr}");
    let text = String::from_utf8(output.stdout).expect("UTF-8 lines");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (text, lines)
}

async fn replay(file: &Path, to: &str, config: &Path, extra: &[&str]) -> (Output, String) {
    let mut args = vec![
        "replay",
        file.to_str().unwrap(),
        "--to",
        to,
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    let output = concierge(&args, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The events of the inbox, in order, as the orchestrator would take them (timestamps
/// aside: a platform that gives none is stamped on arrival).
async fn inbox(store: &SharedStore) -> Vec<(String, String, String, String)> {
    let entries: Vec<InboxEntry> = store.pending(0, 1000).await.expect("pending");
    entries
        .into_iter()
        .map(|e| {
            (
                e.event.channel.as_str().to_string(),
                e.event.event_id.as_str().to_string(),
                e.event.contact.as_str().to_string(),
                format!("{:?}", e.event.kind),
            )
        })
        .collect()
}

/// No secret in any record's query or headers, and no signature or credential header
/// anywhere. (Bodies are the platform's: the fixtures' fake account ids share digits with
/// the fake Twilio token.)
fn assert_no_credentials(text: &str, secrets: &Secrets) {
    let s = signatures();
    let mut anywhere: Vec<String> = ["whatsapp_x_hub_signature_256", "twilio_x_twilio_signature"]
        .iter()
        .flat_map(|k| s[*k].as_object().unwrap().values())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    anywhere.extend(
        [
            "x-hub-signature",
            "x-twilio-signature",
            "x-telegram-bot-api-secret-token",
            "authorization",
            "cookie",
            "leaked-",
            "bb-password",
            "x-webchat-key",
        ]
        .map(str::to_string),
    );
    // The web chat's visitor key, in any form: whoever holds it reads the visitor's history.
    anywhere.push(visitor_key("ana"));
    for leak in &anywhere {
        assert!(
            !text.to_lowercase().contains(&leak.to_lowercase()),
            "`{leak}` is in the export"
        );
    }
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let kept = format!("{} {}", record["query"], record["headers"]);
        for secret in secrets.all() {
            assert!(!kept.contains(&secret), "`{secret}` is in {kept}");
        }
    }
}

#[tokio::test]
async fn an_exported_incident_replays_into_a_gateway_with_other_secrets() {
    let production = Secrets::of_fixtures();
    let a = spawn_in(deployment(&production), Parts::default()).await;
    let sent = production_traffic(&a, &production).await;

    let (text, lines) = export(&a.deployment.config_path(), &[]).await;
    assert_eq!(
        lines.len(),
        sent.len(),
        "one record per accepted webhook:\n{text}"
    );
    let channels: Vec<&str> = lines
        .iter()
        .map(|l| l["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, sent, "oldest first");
    assert_no_credentials(&text, &production);
    assert_eq!(lines[0]["kind"], "whatsapp");
    assert_eq!(lines[1]["kind"], "twilio_whatsapp");
    assert_eq!(
        lines[0]["body"].as_str().unwrap().as_bytes(),
        fixture("whatsapp_text.json"),
        "the body byte for byte"
    );
    assert_eq!(
        lines[3]["query"], "note=kept",
        "the query without its secrets"
    );
    assert_eq!(lines[0]["query"], Value::Null);
    let web_headers = lines[7]["headers"].to_string();
    assert!(
        web_headers.contains("x-webchat-visitor"),
        "the visitor's pseudonym is kept: {web_headers}"
    );
    assert!(
        lines[0]["received_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let file = a.deployment.path().join("incident.jsonl");
    std::fs::write(&file, &text).unwrap();

    // Filters: one channel, one conversation.
    let config = a.deployment.config_path();
    let only = concierge(
        &[
            "inbox",
            "export",
            "--config",
            config.to_str().unwrap(),
            "--channel",
            "telegram",
            "--limit",
            "1",
        ],
        &[],
    )
    .await;
    let only = String::from_utf8(only.stdout).unwrap();
    assert_eq!(only.lines().count(), 1, "{only}");
    assert!(only.contains("\"channel\":\"telegram\""), "{only}");
    let entries = a.store().pending(0, 100).await.unwrap();
    let web = entries
        .iter()
        .find(|e| e.event.channel.as_str() == "web")
        .unwrap();
    let of_web = concierge(
        &[
            "inbox",
            "export",
            "--config",
            config.to_str().unwrap(),
            "--conversation",
            web.conversation.as_str(),
        ],
        &[],
    )
    .await;
    let of_web = String::from_utf8(of_web.stdout).unwrap();
    assert_eq!(of_web.lines().count(), 1, "{of_web}");
    assert!(of_web.contains("commande"), "{of_web}");

    // The laptop: other secrets everywhere. A dry run sends nothing.
    let laptop = Secrets::of_laptop();
    let b = spawn_in(deployment(&laptop), Parts::default()).await;
    let b_config = b.deployment.config_path();
    let (output, stdout) = replay(&file, &b.url(""), &b_config, &["--dry-run"]).await;
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("10 request(s) signed, none sent"),
        "{stdout}"
    );
    assert!(inbox(b.store()).await.is_empty());

    let (output, stdout) = replay(&file, &b.url(""), &b_config, &["--rate", "200"]).await;
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("line 1: whatsapp 200"), "{stdout}");
    assert!(
        stdout.contains("sent 10, 2xx 10, refused 0, errors 0"),
        "{stdout}"
    );
    let expected = inbox(a.store()).await;
    // Every message but the batched webhook's, whose text is the first message again
    // (already in the inbox; its status is applied at once).
    assert_eq!(expected.len(), sent.len() - 1, "{expected:?}");
    // The web chat's visitor is a pseudonym on the laptop (the key never left production):
    // another contact, the same one for each of the visitor's messages.
    let replayed = inbox(b.store()).await;
    let web_contact = |events: &[(String, String, String, String)]| {
        events
            .iter()
            .find(|e| e.0 == "web")
            .map(|e| e.2.clone())
            .unwrap()
    };
    let (was, now) = (web_contact(&expected), web_contact(&replayed));
    assert_ne!(was, now, "the replay cannot post as the visitor");
    let pseudonymous = |events: Vec<(String, String, String, String)>, contact: &str| {
        events
            .into_iter()
            .map(|(ch, id, c, kind)| {
                (
                    ch,
                    id.replace(contact, "VISITOR"),
                    c.replace(contact, "VISITOR"),
                    kind.replace(contact, "VISITOR"),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pseudonymous(replayed, &now),
        pseudonymous(expected, &was),
        "the same events in the same order"
    );
    let (replayed, again) = export(&b_config, &[]).await;
    assert_no_credentials(&replayed, &laptop);
    for (before, after) in lines.iter().zip(&again) {
        assert_eq!(before["body"], after["body"]);
        assert_eq!(before["query"], after["query"]);
        assert_eq!(before["channel"], after["channel"]);
    }

    // Signed for production's secrets: the laptop refuses all but the web chat (which
    // carries no signature).
    let (output, stdout) = replay(&file, &b.url(""), &config, &[]).await;
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("line 1: whatsapp 401"), "{stdout}");
    assert!(
        stdout.contains("sent 10, 2xx 1, refused 9, errors 0"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_bad_line_or_a_missing_channel_stops_the_replay_before_anything_is_sent() {
    let deployment = Deployment::new("");
    let config = deployment.config_path();
    let file = deployment.path().join("bad.jsonl");
    let good = r#"{"channel":"web","kind":"webchat","received_at":"2026-01-01T00:00:00Z","query":null,"headers":[],"body":"{}"}"#;
    std::fs::write(&file, format!("{good}\n{{not json\n")).unwrap();
    let (output, _) = replay(&file, "http://127.0.0.1:9", &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{}:2: not an exported webhook", file.display())),
        "{stderr}"
    );

    std::fs::write(&file, good.replace("\"web\"", "\"whatsapp\"")).unwrap();
    let (output, stdout) = replay(&file, "http://127.0.0.1:9", &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stdout.is_empty(), "nothing sent: {stdout}");
    assert!(
        stderr.contains(":1: the target has no channel `whatsapp`")
            && stderr.contains("channels/whatsapp.toml"),
        "{stderr}"
    );

    std::fs::write(
        deployment.path().join("concierge.toml"),
        "[store]\nnope = 1\n",
    )
    .unwrap();
    let (output, _) = replay(&file, "http://127.0.0.1:9", &config, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("concierge.toml") && stderr.contains("nope"),
        "a config mistake names the file and the key: {stderr}"
    );
}

/// On Redis the raw webhook is written by the ingest script, and expires with the dedupe
/// window.
#[tokio::test]
async fn on_redis_the_raw_webhook_is_kept_and_expires_with_the_dedupe_window() {
    const NAME: &str = "on_redis_the_raw_webhook_is_kept";
    let Some(redis) = crate::redis_server::redis(NAME) else {
        return;
    };
    // Installs the TLS provider the gateway's clients need.
    let client = crate::helpers::http_client();
    let production = Secrets::of_fixtures();
    let deployment = deployment(&production);
    let overrides = [
        ("CONCIERGE__STORE__URL", redis.url.as_str()),
        ("CONCIERGE__STORE__PREFIX", redis.prefix.as_str()),
        ("CONCIERGE__STORE__DEDUPE_TTL_SECS", "3600"),
    ];
    let owned: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::load_with(&deployment.config_path(), &|_| None, &owned)
        .expect("a Redis configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = concierge::app::App::start_with(config, listener, Parts::default())
        .await
        .expect("the gateway starts on Redis");
    let signature = signatures()["whatsapp_x_hub_signature_256"]["whatsapp_image.json"]
        .as_str()
        .unwrap()
        .to_string();
    let status = client
        .post(format!("http://{}/webhooks/whatsapp", app.addr))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &signature)
        .body(fixture("whatsapp_image.json"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let (text, lines) = export(&deployment.config_path(), &overrides).await;
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(
        lines[0]["body"].as_str().unwrap().as_bytes(),
        fixture("whatsapp_image.json")
    );
    assert_eq!(lines[0]["kind"], "whatsapp");
    assert_no_credentials(&text, &production);

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:raw", redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 3_600_000,
        "the raw stream expires with the dedupe window: {ttl}"
    );
}
