//! Fuzz targets: one function per target, taking the fuzzer's bytes. They live in the library
//! so that plain `cargo test` replays every committed seed and past crash
//! (`tests/fixtures/fuzz/<target>/`); `fuzz/` only wraps each in a libFuzzer binary (see
//! FUZZING.md). Channel targets reach the adapters through their public constructors and the
//! `ChannelAdapter` trait only; the config target through `Config::load_with` only.
//!
//! A channel target's first byte picks the mode (its lowest bit; seeds use `0` and `1` so they
//! stay readable text):
//!
//! - even (`0`): the rest is the body, sent with the right credentials (signed with the test
//!   secret, or with the right token), so verify passes and parse sees every body the fuzzer
//!   makes;
//! - odd (`1`): the rest is a whole request: the query string on the first line, `name: value`
//!   header lines up to an empty line, then the body.
//!
//! The config target's first byte picks the file the rest becomes (see [`config`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::channels::bluebubbles::{BlueBubbles, BlueBubblesConfig};
use crate::channels::telegram::{Telegram, TelegramConfig};
use crate::channels::twilio::{Twilio, TwilioConfig};
use crate::channels::webchat::{self, Webchat, WebchatConfig};
use crate::channels::whatsapp::{Whatsapp, WhatsappConfig};
use crate::channels::{ChannelAdapter, ParseError, WebhookRequest};
use crate::config::{Config, Problems};
use crate::domain::{ChannelId, InboundEvent};

// The protocol fixtures' fake secrets (tests/fixtures/protocols/SIGNATURES.json), so the
// fixtures' own signatures verify in the raw mode too.
const META_APP_SECRET: &str = "fake-app-secret-0001";
const WHATSAPP_VERIFY_TOKEN: &str = "fake-verify-token-0001";
const WHATSAPP_PHONE_NUMBER_ID: &str = "100000000000001";
const TWILIO_AUTH_TOKEN: &str = "fa4efa4efa4efa4efa4efa4efa4efa4e";
const TWILIO_ACCOUNT_SID: &str = "ACfa4efa4efa4efa4efa4efa4efa4efa4e";
const TWILIO_URL: &str = "https://gateway.example.test/webhooks/twilio/whatsapp";
const TELEGRAM_SECRET_TOKEN: &str = "fake-secret-token_0001";
const BLUEBUBBLES_SECRET: &str = "bb-secret";
const WEBCHAT_KEY: &str = "k3y-0f-a-visitor_0123456789abcdef";

/// WhatsApp (Meta's Cloud API): `X-Hub-Signature-256`, the GET handshake, notifications.
pub fn whatsapp(data: &[u8]) {
    let _ = run(data, &adapters().whatsapp, sign_whatsapp);
}

/// WhatsApp through Twilio: `X-Twilio-Signature` over the URL and the form, the form.
pub fn twilio(data: &[u8]) {
    let _ = run(data, &adapters().twilio, sign_twilio);
}

/// Telegram: the secret token header, `Update`s.
pub fn telegram(data: &[u8]) {
    let _ = run(data, &adapters().telegram, sign_telegram);
}

/// BlueBubbles (iMessage): `?secret=`, the server's webhooks.
pub fn bluebubbles(data: &[u8]) {
    let _ = run(data, &adapters().bluebubbles, sign_bluebubbles);
}

/// The web chat: the visitor key header, the page's posts.
pub fn webchat(data: &[u8]) {
    let _ = run(data, &adapters().webchat, sign_webchat);
}

/// The configuration loader. The first byte (its low three bits, modulo 5; seeds use the
/// digits `0` to `4`) picks which file of a small deployment the rest becomes, the others
/// staying valid: `0` concierge.toml, `1` a channel file channels/fuzz.toml, `2`
/// prompts/faq.md, `3` an agent file prompts/front_desk.md, `4` the `CONCIERGE__…=value`
/// overrides, one per line. The loader must answer (a config or its problems), never panic
/// nor hang.
pub fn config(data: &[u8]) {
    let _ = load_config(data);
}

/// A fuzz target: what the fuzzer's bytes are given to.
pub type Target = fn(&[u8]);

/// Every target, by name: the fuzz binaries' names and `tests/fixtures/fuzz/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("whatsapp", whatsapp),
    ("twilio", twilio),
    ("telegram", telegram),
    ("bluebubbles", bluebubbles),
    ("webchat", webchat),
    ("config", config),
];

/// The adapters, built once per process from their config files' keys, as the registry
/// builds them.
struct Adapters {
    whatsapp: Whatsapp,
    twilio: Twilio,
    telegram: Telegram,
    bluebubbles: BlueBubbles,
    webchat: Webchat,
}

fn adapters() -> &'static Adapters {
    static ADAPTERS: OnceLock<Adapters> = OnceLock::new();
    ADAPTERS.get_or_init(|| {
        // reqwest is built without a default TLS provider; the app installs ring the same
        // way. The client is never used: the targets do not send.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let id = |id: &str| ChannelId::parse(id).expect("a valid channel id");
        Adapters {
            whatsapp: Whatsapp::new(
                id("whatsapp"),
                channel_config::<WhatsappConfig>(&format!(
                    "phone_number_id = \"{WHATSAPP_PHONE_NUMBER_ID}\"\naccess_token = \"tok\"\n\
                     app_secret = \"{META_APP_SECRET}\"\nverify_token = \"{WHATSAPP_VERIFY_TOKEN}\"\n"
                )),
                http.clone(),
            ),
            twilio: Twilio::new(
                id("twilio"),
                channel_config::<TwilioConfig>(&format!(
                    "account_sid = \"{TWILIO_ACCOUNT_SID}\"\nauth_token = \"{TWILIO_AUTH_TOKEN}\"\n\
                     from = \"whatsapp:+15550100000\"\npublic_url = \"{TWILIO_URL}\"\n"
                )),
                http.clone(),
            ),
            telegram: Telegram::new(
                id("telegram"),
                channel_config::<TelegramConfig>(&format!(
                    "bot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{TELEGRAM_SECRET_TOKEN}\"\n"
                )),
                http.clone(),
            ),
            bluebubbles: BlueBubbles::new(
                id("imessage"),
                channel_config::<BlueBubblesConfig>(&format!(
                    "server_url = \"http://127.0.0.1:1\"\npassword = \"bb-password\"\n\
                     webhook_secret = \"{BLUEBUBBLES_SECRET}\"\n"
                )),
                http,
            ),
            webchat: Webchat::new(id("web"), WebchatConfig::default()),
        }
    })
}

fn channel_config<T: serde::de::DeserializeOwned>(keys: &str) -> T {
    toml::from_str(keys).expect("the fuzz targets' channel keys are valid")
}

/// What one input did: whether verify passed, and what parse gave (for the tests).
#[cfg_attr(not(test), allow(dead_code))]
struct Outcome {
    verified: bool,
    parsed: Result<Vec<InboundEvent>, ParseError>,
}

/// Makes the signed mode's request from its body.
type Sign = fn(&[u8]) -> Signed;

/// A request made in the signed mode, and whether verify must accept it.
struct Signed {
    request: WebhookRequest,
    must_verify: bool,
}

/// Runs one input through an adapter's webhook path: verify, the GET handshake, parse.
/// `None` for the empty input (no mode byte).
fn run(data: &[u8], adapter: &dyn ChannelAdapter, sign: Sign) -> Option<Outcome> {
    let (mode, rest) = data.split_first()?;
    let (request, must_verify) = if mode & 1 == 0 {
        let signed = sign(rest);
        (signed.request, signed.must_verify)
    } else {
        (raw_request(rest), false)
    };
    let verified = adapter.verify(&request).is_ok();
    assert!(
        verified || !must_verify,
        "{}: a request with the right credentials was refused",
        adapter.kind().name()
    );
    let _ = adapter.handshake(&request);
    // Parse runs whatever verify said: the HTTP layer only parses verified requests, but a
    // parser that panics on some body is a bug the day a check is relaxed or a secret leaks.
    let parsed = adapter.parse(&request);
    if let Ok(events) = &parsed {
        for event in events {
            assert_eq!(&event.channel, adapter.id(), "an event for another channel");
        }
    }
    Some(Outcome { verified, parsed })
}

/// A request from its parts, the query map built from the raw query as the HTTP layer does.
fn request(headers: HeaderMap, raw_query: Option<String>, body: &[u8]) -> WebhookRequest {
    let query: BTreeMap<String, String> = raw_query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    WebhookRequest {
        headers,
        query,
        raw_query,
        body: Bytes::copy_from_slice(body),
    }
}

/// The raw mode: the query string on the first line (empty: none), `name: value` headers up
/// to an empty line, then the body. Lines that are not valid headers are dropped, as the web
/// server refuses them before any adapter sees them.
fn raw_request(data: &[u8]) -> WebhookRequest {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let raw_query = lines
        .next()
        .filter(|q| !q.is_empty())
        .map(|q| String::from_utf8_lossy(q).into_owned());
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    request(headers, raw_query, body)
}

fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
    headers
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
fn sign_whatsapp(body: &[u8]) -> Signed {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(META_APP_SECRET.as_bytes())
        .expect("HMAC takes any key");
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    Signed {
        request: request(header("x-hub-signature-256", &signature), None, body),
        must_verify: true,
    }
}

/// `X-Twilio-Signature`: base64 HMAC-SHA1 of the URL and every form field, sorted, as
/// Twilio's documentation describes it. A body that is not a form cannot be signed: it goes
/// unsigned (verify refuses it; parse still runs).
fn sign_twilio(body: &[u8]) -> Signed {
    let Ok(mut fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else {
        return Signed {
            request: request(HeaderMap::new(), None, body),
            must_verify: false,
        };
    };
    fields.sort();
    fields.dedup();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_AUTH_TOKEN.as_bytes())
        .expect("HMAC takes any key");
    mac.update(TWILIO_URL.as_bytes());
    for (name, value) in &fields {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Signed {
        request: request(header("x-twilio-signature", &signature), None, body),
        must_verify: true,
    }
}

fn sign_telegram(body: &[u8]) -> Signed {
    Signed {
        request: request(
            header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET_TOKEN),
            None,
            body,
        ),
        must_verify: true,
    }
}

fn sign_bluebubbles(body: &[u8]) -> Signed {
    Signed {
        request: request(
            HeaderMap::new(),
            Some(format!("secret={BLUEBUBBLES_SECRET}")),
            body,
        ),
        must_verify: true,
    }
}

fn sign_webchat(body: &[u8]) -> Signed {
    Signed {
        request: request(header(webchat::KEY_HEADER, WEBCHAT_KEY), None, body),
        must_verify: true,
    }
}

/// The deployment's files when they are not the one being fuzzed.
const CONCIERGE_TOML: &str = r#"[server]
bind = "127.0.0.1:0"

[store]
url = "sqlite:data/concierge.db"

[[tools]]
name = "lookup"
description = "Looks things up."
url = "http://127.0.0.1:1/lookup"
"#;
const WEB_TOML: &str = "kind = \"webchat\"\ntitle = \"Fuzz\"\n";

/// The fuzzed file of each config mode, relative to the deployment's folder.
const FUZZED_FILES: [&str; 4] = [
    "concierge.toml",
    "channels/fuzz.toml",
    "prompts/faq.md",
    "prompts/front_desk.md",
];

/// The deployment folder: one per process (libFuzzer's jobs are processes), its files
/// rewritten for each input under the lock (`cargo test` runs tests on several threads).
fn deployment() -> &'static Mutex<PathBuf> {
    static DEPLOYMENT: OnceLock<Mutex<PathBuf>> = OnceLock::new();
    DEPLOYMENT.get_or_init(|| {
        Mutex::new(std::env::temp_dir().join(format!("concierge-fuzz-{}", std::process::id())))
    })
}

/// `${VAR}` reads this: every variable is set (to its name, lowercased: a valid secret for
/// every channel kind) except those whose name starts with `MISSING`.
fn env(name: &str) -> Option<String> {
    (!name.starts_with("MISSING")).then(|| name.to_ascii_lowercase())
}

/// Writes the deployment with the fuzzed file in place and loads it; `None` when the input is
/// empty or the folder cannot be written (nothing was tried).
fn load_config(data: &[u8]) -> Option<Result<Config, Problems>> {
    let (mode, text) = data.split_first()?;
    let mode = usize::from(mode & 7) % 5;
    let root = deployment().lock().unwrap_or_else(PoisonError::into_inner);
    write_deployment(&root, mode, text).ok()?;
    let overrides: Vec<(String, String)> = if mode == 4 {
        String::from_utf8_lossy(text)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    } else {
        Vec::new()
    };
    let loaded = Config::load_with(&root.join("concierge.toml"), &env, &overrides);
    if let Err(problems) = &loaded {
        assert!(!problems.is_empty(), "a failed load must say why");
        let _ = problems.to_string();
    }
    Some(loaded)
}

fn write_deployment(root: &Path, mode: usize, text: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("channels"))?;
    std::fs::create_dir_all(root.join("prompts"))?;
    std::fs::write(root.join("concierge.toml"), CONCIERGE_TOML)?;
    std::fs::write(root.join("channels/web.toml"), WEB_TOML)?;
    for (n, file) in FUZZED_FILES.iter().enumerate() {
        let path = root.join(file);
        if n == mode {
            std::fs::write(path, text)?;
        } else if n > 0 {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;

    const ROOT: &str = env!("CARGO_MANIFEST_DIR");

    /// Removes the config target's folder (the next input writes it again).
    fn remove_deployment() {
        let root = deployment().lock().unwrap_or_else(PoisonError::into_inner);
        let _ = std::fs::remove_dir_all(&*root);
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The protocol fixtures of a channel target, by file name prefix.
    fn protocol_fixtures(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let prefix = format!("{target}_");
        files(&Path::new(ROOT).join("tests/fixtures/protocols"))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".txt"))
            })
            .map(|p| {
                let body = std::fs::read(&p).unwrap();
                (p, body)
            })
            .collect()
    }

    fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
        let mut input = vec![mode];
        input.extend_from_slice(rest);
        input
    }

    /// CI's replay: every committed seed and crash, through every target (a crash for one
    /// target is still an input the others must survive).
    #[test]
    fn fuzzing_replays_every_committed_input() {
        let dir = Path::new(ROOT).join("tests/fixtures/fuzz");
        let mut replayed = 0;
        for (name, _) in TARGETS {
            let inputs = files(&dir.join(name));
            assert!(
                !inputs.is_empty(),
                "no seeds in tests/fixtures/fuzz/{name}/"
            );
            for input in inputs {
                let data = std::fs::read(&input).unwrap();
                for (target, fuzz) in TARGETS {
                    let outcome = std::panic::catch_unwind(|| fuzz(&data));
                    assert!(
                        outcome.is_ok(),
                        "fuzz target {target} panicked on {}",
                        input.display()
                    );
                }
                replayed += 1;
            }
        }
        assert!(replayed > 0);
        remove_deployment();
    }

    /// The seeds `scripts/fuzz.sh` makes from the protocol fixtures reach parse: with the
    /// mode byte `0` each one verifies and gives at least one event (the typing indicator and
    /// a send error included); with `1` and no headers, verify refuses it.
    #[test]
    fn fuzzing_signed_fixtures_verify_and_parse() {
        let targets: [(&str, &dyn ChannelAdapter, Sign); 4] = [
            ("whatsapp", &adapters().whatsapp, sign_whatsapp),
            ("twilio", &adapters().twilio, sign_twilio),
            ("telegram", &adapters().telegram, sign_telegram),
            ("bluebubbles", &adapters().bluebubbles, sign_bluebubbles),
        ];
        for (name, adapter, sign) in targets {
            let fixtures = protocol_fixtures(name);
            assert!(!fixtures.is_empty(), "no {name} fixtures");
            for (path, body) in fixtures {
                let outcome = run(&with_mode(b'0', &body), adapter, sign).unwrap();
                assert!(outcome.verified, "{}", path.display());
                let events = outcome
                    .parsed
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!events.is_empty(), "{}: no event", path.display());
                let raw = with_mode(b'1', &[b"\n\n".as_slice(), &body].concat());
                let outcome = run(&raw, adapter, sign).unwrap();
                assert!(!outcome.verified, "{}: verified unsigned", path.display());
            }
        }
    }

    /// The raw mode carries what the fixtures were signed with: the same bytes verify.
    #[test]
    fn fuzzing_raw_requests_carry_query_headers_and_body() {
        let body =
            std::fs::read(Path::new(ROOT).join("tests/fixtures/protocols/whatsapp_text.json"))
                .unwrap();
        let signatures: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(ROOT).join("tests/fixtures/protocols/SIGNATURES.json"))
                .unwrap(),
        )
        .unwrap();
        let signature = signatures["whatsapp_x_hub_signature_256"]["whatsapp_text.json"]
            .as_str()
            .unwrap();
        let input = [
            b"1a=1&b=2\nbad header line\nX-Hub-Signature-256: ".as_slice(),
            signature.as_bytes(),
            b"\n\n",
            &body,
        ]
        .concat();
        let request = raw_request(&input[1..]);
        assert_eq!(request.raw_query.as_deref(), Some("a=1&b=2"));
        assert_eq!(request.query.get("b").map(String::as_str), Some("2"));
        assert_eq!(request.headers.len(), 1);
        assert_eq!(request.body, body);
        let outcome = run(&input, &adapters().whatsapp, sign_whatsapp).unwrap();
        assert!(outcome.verified);
        let events = outcome.parsed.unwrap();
        assert!(matches!(
            events.as_slice(),
            [InboundEvent {
                kind: EventKind::Message(_),
                ..
            }]
        ));
    }

    #[test]
    fn fuzzing_config_loads_each_kind_of_file() {
        let valid: [(u8, &[u8]); 5] = [
            (b'0', b"[server]\nbind = \"127.0.0.1:0\"\n"),
            (b'1', b"kind = \"telegram\"\nbot_token = \"${BOT}\"\nsecret_token = \"${SECRET}\"\n"),
            (b'2', b"## Where are you?\nIn Lyon.\n"),
            (
                b'3',
                b"+++\nname = \"front_desk\"\ndescription = \"d\"\nentry = true\n+++\nHello from {{ merchant }}.\n",
            ),
            (b'4', b"CONCIERGE__SERVER__BIND=127.0.0.1:9\n"),
        ];
        for (mode, text) in valid {
            let loaded = load_config(&with_mode(mode, text)).unwrap();
            assert!(
                loaded.is_ok(),
                "mode {}: {}",
                mode as char,
                loaded.err().unwrap()
            );
        }
        let broken =
            load_config(b"1kind = \"telegram\"\nbot_token = \"${MISSING_BOT}\"\n").unwrap();
        assert!(broken.is_err());
        remove_deployment();
    }
}
