//! Micro-benchmarks of the gateway's hot paths: webhook signature checks, each adapter's
//! verify + parse of a real fixture payload, the FAQ matcher, and the SQLite inbox append.
//!
//! Run with `cargo bench --bench hot_paths` (add a filter such as `-- parse/` to run a
//! part). Payloads are the protocol fixtures in `tests/fixtures/protocols/`, with the
//! signatures and secrets of its `SIGNATURES.json`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use concierge::channels::bluebubbles::{BlueBubbles, BlueBubblesConfig};
use concierge::channels::telegram::{Telegram, TelegramConfig};
use concierge::channels::twilio::{Twilio, TwilioConfig};
use concierge::channels::webchat::{self, Webchat, WebchatConfig};
use concierge::channels::whatsapp::{Whatsapp, WhatsappConfig};
use concierge::channels::{ChannelAdapter, WebhookRequest};
use concierge::config::SyncMode;
use concierge::domain::{ChannelId, EventId, EventKind, InboundEvent, PlatformMessageId};
use concierge::orchestrator::faq::{DEFAULT_THRESHOLD, FaqIndex};
use concierge::store::Inbox;
use concierge::store::sqlite::SqliteStore;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use http::HeaderMap;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/protocols");
const FAQ: &str = include_str!("../prompts/faq.md");

fn fixture(name: &str) -> Bytes {
    let path = Path::new(FIXTURES).join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

struct Signatures(serde_json::Value);

impl Signatures {
    fn load() -> Self {
        Self(serde_json::from_slice(&fixture("SIGNATURES.json")).expect("SIGNATURES.json"))
    }

    fn get(&self, pointer: &str) -> String {
        self.0
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("SIGNATURES.json has no {pointer}"))
            .to_string()
    }
}

fn request(
    headers: &[(&'static str, &str)],
    query: &[(&str, &str)],
    body: Bytes,
) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().expect("header value"));
    }
    WebhookRequest {
        headers: map,
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        raw_query: None,
        body,
    }
}

fn channel(id: &str) -> ChannelId {
    ChannelId::parse(id).expect("channel id")
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; the app installs ring the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The adapters, built from their config structs as the registry builds them, with the
/// fixtures' secrets.
struct Adapters {
    whatsapp: Whatsapp,
    twilio: Twilio,
    telegram: Telegram,
    bluebubbles: BlueBubbles,
    webchat: Webchat,
}

impl Adapters {
    fn new(signatures: &Signatures) -> Self {
        let http = http_client();
        let whatsapp: WhatsappConfig = toml::from_str(&format!(
            "phone_number_id = \"100000000000001\"\naccess_token = \"tok\"\napp_secret = \"{}\"\nverify_token = \"v\"\n",
            signatures.get("/meta_app_secret")
        ))
        .expect("whatsapp config");
        let twilio: TwilioConfig = toml::from_str(&format!(
            "account_sid = \"ACfa4efa4efa4efa4efa4efa4efa4efa4e\"\nauth_token = \"{}\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"{}\"\n",
            signatures.get("/twilio_auth_token"),
            signatures.get("/twilio_webhook_url"),
        ))
        .expect("twilio config");
        let telegram: TelegramConfig = toml::from_str(&format!(
            "bot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{}\"\n",
            signatures.get("/telegram_secret_token")
        ))
        .expect("telegram config");
        let bluebubbles: BlueBubblesConfig = toml::from_str(
            "server_url = \"http://127.0.0.1:1\"\npassword = \"bb-password\"\nwebhook_secret = \"bb-secret\"\n",
        )
        .expect("bluebubbles config");
        Self {
            whatsapp: Whatsapp::new(channel("whatsapp"), whatsapp, http.clone()),
            twilio: Twilio::new(channel("twilio"), twilio, http.clone()),
            telegram: Telegram::new(channel("telegram"), telegram, http.clone()),
            bluebubbles: BlueBubbles::new(channel("imessage"), bluebubbles, http),
            webchat: Webchat::new(channel("web"), WebchatConfig::default()),
        }
    }
}

/// The signed webhook requests, one per channel, as the HTTP layer hands them to adapters.
struct Requests {
    whatsapp: WebhookRequest,
    whatsapp_forged: WebhookRequest,
    twilio: WebhookRequest,
    twilio_forged: WebhookRequest,
    telegram: WebhookRequest,
    bluebubbles: WebhookRequest,
    webchat: WebhookRequest,
}

impl Requests {
    fn new(signatures: &Signatures) -> Self {
        let whatsapp_body = fixture("whatsapp_text.json");
        let whatsapp_signature = signatures.get("/whatsapp_x_hub_signature_256/whatsapp_text.json");
        // Same length and shape as the real one, one hex digit off.
        let mut forged = whatsapp_signature.clone().into_bytes();
        let last = forged.last_mut().expect("a signature");
        *last = if *last == b'0' { b'1' } else { b'0' };
        let whatsapp_forged = String::from_utf8(forged).expect("ascii");

        let twilio_body = fixture("twilio_whatsapp_text.form");
        let twilio_signature =
            signatures.get("/twilio_x_twilio_signature/twilio_whatsapp_text.form");
        // A well-formed base64 HMAC-SHA1 (20 bytes) of something else.
        let twilio_forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";

        Self {
            whatsapp: request(
                &[("x-hub-signature-256", &whatsapp_signature)],
                &[],
                whatsapp_body.clone(),
            ),
            whatsapp_forged: request(
                &[("x-hub-signature-256", &whatsapp_forged)],
                &[],
                whatsapp_body,
            ),
            twilio: request(
                &[("x-twilio-signature", &twilio_signature)],
                &[],
                twilio_body.clone(),
            ),
            twilio_forged: request(&[("x-twilio-signature", twilio_forged)], &[], twilio_body),
            telegram: request(
                &[(
                    "x-telegram-bot-api-secret-token",
                    &signatures.get("/telegram_secret_token"),
                )],
                &[],
                fixture("telegram_text.json"),
            ),
            bluebubbles: request(
                &[],
                &[("secret", "bb-secret")],
                fixture("bluebubbles_new_message.json"),
            ),
            // The web chat has no platform fixture: this is what its page posts.
            webchat: request(
                &[(webchat::KEY_HEADER, "k3y-0f-a-visitor_0123456789abcdef")],
                &[],
                Bytes::from_static(
                    br#"{"id":"m-01HZX3K9Q2","text":"Hi! Can you book a table for two at 7pm tonight?","name":"Test User"}"#,
                ),
            ),
        }
    }
}

/// The adapter's webhook entry point: verify, then parse.
fn verify_and_parse(adapter: &dyn ChannelAdapter, request: &WebhookRequest) -> Vec<InboundEvent> {
    adapter.verify(request).expect("verified");
    adapter.parse(request).expect("parsed")
}

fn signature_benches(c: &mut Criterion) {
    let signatures = Signatures::load();
    let adapters = Adapters::new(&signatures);
    let requests = Requests::new(&signatures);
    // Setup checks: the valid ones pass, the forged ones fail.
    assert!(adapters.whatsapp.verify(&requests.whatsapp).is_ok());
    assert!(adapters.whatsapp.verify(&requests.whatsapp_forged).is_err());
    assert!(adapters.twilio.verify(&requests.twilio).is_ok());
    assert!(adapters.twilio.verify(&requests.twilio_forged).is_err());

    let mut group = c.benchmark_group("signature");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // X-Hub-Signature-256: HMAC-SHA256 of the body, hex.
    group.bench_function("whatsapp_valid", |b| {
        b.iter(|| black_box(adapters.whatsapp.verify(black_box(&requests.whatsapp))))
    });
    group.bench_function("whatsapp_forged", |b| {
        b.iter(|| {
            black_box(
                adapters
                    .whatsapp
                    .verify(black_box(&requests.whatsapp_forged)),
            )
        })
    });
    // X-Twilio-Signature: HMAC-SHA1 over the URL and the sorted form fields, base64; the
    // form is decoded and sorted to build the signed string.
    group.bench_function("twilio_valid", |b| {
        b.iter(|| black_box(adapters.twilio.verify(black_box(&requests.twilio))))
    });
    group.bench_function("twilio_forged", |b| {
        b.iter(|| black_box(adapters.twilio.verify(black_box(&requests.twilio_forged))))
    });
    group.finish();
}

fn parse_benches(c: &mut Criterion) {
    let signatures = Signatures::load();
    let adapters = Adapters::new(&signatures);
    let requests = Requests::new(&signatures);
    let cases: [(&str, &dyn ChannelAdapter, &WebhookRequest); 5] = [
        ("whatsapp", &adapters.whatsapp, &requests.whatsapp),
        ("telegram", &adapters.telegram, &requests.telegram),
        ("twilio", &adapters.twilio, &requests.twilio),
        ("bluebubbles", &adapters.bluebubbles, &requests.bluebubbles),
        ("webchat", &adapters.webchat, &requests.webchat),
    ];
    // Setup check: every payload gives one message event.
    for (name, adapter, request) in cases {
        let events = verify_and_parse(adapter, request);
        assert!(
            matches!(
                events.as_slice(),
                [InboundEvent {
                    kind: EventKind::Message(_),
                    ..
                }]
            ),
            "{name}: {events:?}"
        );
    }

    // The webhook entry point as the HTTP layer calls it: verify, then parse.
    let mut group = c.benchmark_group("parse");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, adapter, request) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(verify_and_parse(adapter, black_box(request))))
        });
    }
    group.finish();

    // Parse alone, to tell the payload's decoding from the signature check.
    let mut group = c.benchmark_group("parse_only");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, adapter, request) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(adapter.parse(black_box(request))))
        });
    }
    group.finish();
}

fn faq_benches(c: &mut Criterion) {
    let index = FaqIndex::parse(FAQ).expect("prompts/faq.md parses");
    let cases = [
        ("match_en", "hi, what time do you open on saturday?", true),
        (
            "miss_en",
            "my parcel box was wet and the dog chewed it",
            false,
        ),
        (
            "match_fr",
            "bonjour, quels sont vos horaires d'ouverture samedi ?",
            true,
        ),
        (
            "miss_fr",
            "il pleut beaucoup aujourd'hui sur la presqu'île",
            false,
        ),
    ];
    // Setup check: the matches clear the default threshold, the misses do not.
    for (name, message, matches) in cases {
        let found = index.best_match(message);
        let confident = found.is_some_and(|m| m.confidence >= DEFAULT_THRESHOLD);
        assert_eq!(
            confident,
            matches,
            "{name}: {:?}",
            found.map(|m| (&m.entry.question, m.confidence))
        );
    }

    let mut group = c.benchmark_group("faq");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // Done once at start-up (and on reload), not per message: for scale.
    group.bench_function("index_build", |b| {
        b.iter(|| black_box(FaqIndex::parse(black_box(FAQ))))
    });
    for (name, message, _) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(index.best_match(black_box(message)).map(|m| m.index)))
        });
    }
    group.finish();
}

/// A WhatsApp inbound text, as the adapter parses it from the fixture.
fn whatsapp_event() -> InboundEvent {
    let signatures = Signatures::load();
    let adapters = Adapters::new(&signatures);
    let requests = Requests::new(&signatures);
    verify_and_parse(&adapters.whatsapp, &requests.whatsapp)
        .pop()
        .expect("one event")
}

/// The same event under a new platform message id (the dedupe keys are the event id and
/// the platform message id).
fn with_fresh_id(template: &InboundEvent, n: u64) -> InboundEvent {
    let id = format!("wamid.BENCH-{n:012}");
    let mut event = template.clone();
    event.event_id = EventId::parse(id.clone()).expect("event id");
    if let EventKind::Message(message) = &mut event.kind {
        message.platform_id = PlatformMessageId::parse(id).expect("platform id");
    }
    event
}

fn store_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let template = whatsapp_event();
    let mut next_id = 0u64;
    let mut fresh = move || {
        next_id += 1;
        with_fresh_id(&template, next_id)
    };

    let mut group = c.benchmark_group("store");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (mode, sync) in [("full", SyncMode::Full), ("normal", SyncMode::Normal)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt
            .block_on(SqliteStore::open(&dir.path().join("store.db"), sync))
            .expect("open the store");
        let store = &store;

        // One webhook's event, alone: one transaction (and with FULL, its fsyncs) per call.
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("ingest_sqlite_{mode}"), |b| {
            b.to_async(&rt).iter_batched(
                &mut fresh,
                |event| async move {
                    let outcome = store.ingest(std::slice::from_ref(&event)).await;
                    assert_eq!(outcome.expect("ingest").accepted, 1);
                },
                BatchSize::SmallInput,
            )
        });

        // The same event again: the platform's retry, dropped by the dedupe (no row written,
        // but still a round trip through the writer's transaction).
        let seen = fresh();
        rt.block_on(store.ingest(std::slice::from_ref(&seen)))
            .expect("first ingest");
        let seen = &seen;
        group.bench_function(format!("ingest_sqlite_{mode}_duplicate"), |b| {
            b.to_async(&rt).iter(|| async move {
                let outcome = store.ingest(std::slice::from_ref(seen)).await;
                assert_eq!(outcome.expect("ingest").duplicates, 1);
            })
        });

        // 64 webhooks at once: the writer commits them together (group commit).
        group.throughput(Throughput::Elements(64));
        group.bench_function(format!("ingest_sqlite_{mode}_batch64"), |b| {
            b.to_async(&rt).iter_batched(
                || (0..64).map(|_| fresh()).collect::<Vec<_>>(),
                |events| async move {
                    let outcomes =
                        join_all(events.iter().map(|e| store.ingest(std::slice::from_ref(e))))
                            .await;
                    for outcome in outcomes {
                        assert_eq!(outcome.expect("ingest").accepted, 1);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().without_plots();
    targets = signature_benches, parse_benches, faq_benches, store_benches
);
criterion_main!(benches);
