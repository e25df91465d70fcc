//! Two gateway instances on one Redis store: claims raced across instances, console events
//! crossing instances through pub/sub, and Redis killed and restarted under load without an
//! acknowledged message lost or answered twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use concierge::app::{App, Parts};
use concierge::config::Config;
use concierge::domain::{Author, Content, ConversationId, ThreadState};
use concierge::handoff::access;
use concierge::orchestrator::{Decision, Responder, ResponderError, Turn};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_api::FakeApi;
use crate::handoff::{Api, Events};
use crate::helpers::{Deployment, conversation_in, http_client};
use crate::redis_server::{RedisServer, TestRedis, redis};

const WA_SECRET: &str = "multi-instance-app-secret";

/// How long a console event may take to reach another instance.
const FEW_SECONDS: Duration = Duration::from_secs(5);

/// One team, two concierges.
const PEOPLE: &str = r#"
[[teams]]
name = "support"

[[concierges]]
name = "ana"
teams = ["support"]

[[concierges]]
name = "bob"
teams = ["support"]
"#;

/// A deployment folder with a WhatsApp channel whose Graph API is `graph`.
fn deployment(extra: &str, graph: &FakeApi) -> Deployment {
    let deployment = Deployment::new(extra);
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\n",
            graph.url
        ),
    )
    .expect("write the WhatsApp channel file");
    deployment
}

/// The deployment's configuration with its store on `redis`, as the env overrides set it.
fn redis_config(deployment: &Deployment, redis: &TestRedis) -> Config {
    deployment.config_on_redis(
        redis,
        &[
            ("CONCIERGE__STORE__TAKEOVER_MS", "2000"),
            // Quick retries, and webhooks that give up in seconds when the store hangs.
            ("CONCIERGE__DELIVERY__INITIAL_BACKOFF_MS", "20"),
            ("CONCIERGE__DELIVERY__MAX_BACKOFF_SECS", "1"),
            // A delivery lease (twice this, plus 10 s) that outlives the test's patience
            // would hide a reply whose outcome could not be recorded.
            ("CONCIERGE__DELIVERY__SEND_TIMEOUT_SECS", "5"),
            ("CONCIERGE__SERVER__REQUEST_TIMEOUT_SECS", "5"),
        ],
    )
}

/// One gateway instance: an `App` on its own listener.
struct Instance {
    app: App,
    client: reqwest::Client,
}

impl Instance {
    async fn start(config: Config, parts: Parts) -> Instance {
        // Installs the TLS provider before the app builds its clients.
        let _ = http_client();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let app = App::start_with(config, listener, parts)
            .await
            .expect("the gateway starts on Redis");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Instance { app, client }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.app.addr, path)
    }

    /// Posts a signed WhatsApp text; the status, or `None` when no answer came.
    async fn whatsapp(&self, phone: &str, wamid: &str, text: &str) -> Option<u16> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let payload = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
                "contacts": [{ "profile": { "name": "Claire" }, "wa_id": phone }],
                "messages": [{ "from": phone, "id": wamid, "timestamp": now.to_string(),
                               "type": "text", "text": { "body": text } }]
            }}]}]
        }))
        .expect("a JSON payload");
        let mut mac = Hmac::<Sha256>::new_from_slice(WA_SECRET.as_bytes()).expect("an HMAC key");
        mac.update(&payload);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.client
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(payload)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The `/readyz` status, or `None` when it did not answer in time.
    async fn ready(&self) -> Option<u16> {
        self.client
            .get(self.url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }
}

/// A concierge with a token, talking to whichever instance it is given.
struct Console {
    token: String,
}

impl Console {
    /// Issues a token through `on`'s store: the other instances must accept it too.
    async fn issue(on: &Instance, name: &str) -> Console {
        let token = access::issue(on.app.store.as_ref(), name)
            .await
            .expect("a token is issued");
        Console { token }
    }

    fn on(&self, instance: &Instance) -> Api {
        Api::at(instance.url("/api/v1"), self.token.clone())
    }

    async fn get(&self, on: &Instance, path: &str) -> (u16, Value) {
        self.on(on).get(path).await
    }

    async fn post(&self, on: &Instance, path: &str, body: Value) -> (u16, Value) {
        self.on(on).post(path, body).await
    }

    /// Opens the live event stream on `on`, once it has said `ready`.
    async fn events(&self, on: &Instance) -> Events {
        self.on(on).events().await
    }
}

/// What these tests ask of a console's event stream beyond reading it.
trait Watch {
    async fn until_about(
        &mut self,
        wanted: &str,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Value;
    async fn drain(&mut self, wait: Duration);
    fn count(&self, kind: &str, conversation: &ConversationId) -> usize;
}

impl Watch for Events {
    /// The next `wanted` event about `conversation`, skipping others; panics after `wait`.
    async fn until_about(
        &mut self,
        wanted: &str,
        conversation: &ConversationId,
        wait: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some((name, data)) = self.next_within(left).await else {
                panic!(
                    "no `{wanted}` event for {conversation} within {wait:?}; seen: {:?}",
                    self.seen
                );
            };
            if name == wanted && data["conversation"] == conversation.to_string() {
                return data;
            }
        }
    }

    /// Reads whatever else arrives within `wait`.
    async fn drain(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.next_within(left).await.is_none() {
                return;
            }
        }
    }

    /// How many `kind` events about `conversation` were read.
    fn count(&self, kind: &str, conversation: &ConversationId) -> usize {
        self.seen
            .iter()
            .filter(|(name, data)| name == kind && data["conversation"] == conversation.to_string())
            .count()
    }
}

/// Waits until `check` holds, polling; panics after `wait`.
async fn within<F, Fut>(what: &str, wait: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {wait:?} waiting for: {what}");
}

/// Whether every conversation's thread is queued, as `store` sees it.
async fn all_queued(
    store: &concierge::store::SharedStore,
    conversations: &[ConversationId],
) -> bool {
    for conversation in conversations {
        let state = store.thread_state(conversation).await;
        if !matches!(state, Ok(ThreadState::Queued { .. })) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn concierges_on_two_instances_race_for_a_claim_and_one_wins() {
    const NAME: &str = "concierges_on_two_instances_race_for_a_claim_and_one_wins";
    let Some(redis) = redis(NAME) else { return };
    let graph = FakeApi::start().await.expect("the fake platform");
    let deployment = deployment(PEOPLE, &graph);
    let a = Instance::start(redis_config(&deployment, &redis), Parts::default()).await;
    let b = Instance::start(redis_config(&deployment, &redis), Parts::default()).await;
    let ana = Console::issue(&a, "ana").await;
    let bob = Console::issue(&b, "bob").await;

    // 30 customers ask for a person, through one instance then the other.
    let phones: Vec<String> = (0..30).map(|i| format!("3361100{i:04}")).collect();
    for (i, phone) in phones.iter().enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        let status = via
            .whatsapp(
                phone,
                &format!("wamid.Q{i}"),
                "I want to talk to a human please",
            )
            .await;
        assert_eq!(status, Some(200), "webhook {i}");
    }
    // Read through A, for messages half of which B ingested: the instances share one key.
    let mut conversations: Vec<ConversationId> = Vec::new();
    for phone in &phones {
        conversations.push(conversation_in(&a.app.store, "whatsapp", phone).await);
    }
    within("every thread is queued", Duration::from_secs(30), || {
        all_queued(&a.app.store, &conversations)
    })
    .await;

    // Ana claims through A, Bob through B, at the same moment.
    let (mut ana_wins, mut bob_wins, mut conflicts) = (0, 0, 0);
    for (i, conversation) in conversations.iter().enumerate() {
        let path = format!("/conversations/{conversation}/claim");
        let ((sa, body_a), (sb, body_b)) = tokio::join!(
            ana.post(&a, &path, json!({})),
            bob.post(&b, &path, json!({}))
        );
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 409],
            "conversation {i}: ana got {sa} {body_a}, bob got {sb} {body_b}"
        );
        conflicts += 1;
        let winner = if sa == 200 {
            ana_wins += 1;
            "ana"
        } else {
            bob_wins += 1;
            "bob"
        };
        // Both instances name the winner as the owner.
        let path = format!("/conversations/{conversation}");
        for (who, on) in [(&ana, &b), (&bob, &a)] {
            let (status, view) = who.get(on, &path).await;
            assert_eq!(status, 200, "conversation {i}: {view}");
            assert_eq!(view["conversation"]["owner"], winner, "conversation {i}");
            assert_eq!(view["conversation"]["state"], "human", "conversation {i}");
        }
    }
    println!(
        "{NAME}: {} claims raced: ana won {ana_wins}, bob won {bob_wins}, {conflicts} conflicts (409)",
        conversations.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_ingested_on_one_instance_reaches_a_console_on_another() {
    const NAME: &str = "an_event_ingested_on_one_instance_reaches_a_console_on_another";
    let Some(redis) = redis(NAME) else { return };
    let graph = FakeApi::start().await.expect("the fake platform");
    let deployment = deployment(PEOPLE, &graph);
    let a = Instance::start(redis_config(&deployment, &redis), Parts::default()).await;
    let b = Instance::start(redis_config(&deployment, &redis), Parts::default()).await;
    let ana = Console::issue(&a, "ana").await;
    // Ana's console is on A; a second one on B shows each event reaches both, whichever
    // instance's lane handled the message.
    let mut on_a = ana.events(&a).await;
    let mut on_b = ana.events(&b).await;

    // A customer writes through B and is queued: A's console hears of the handoff.
    let phone = "33611200001";
    let conversation = conversation_in(&a.app.store, "whatsapp", phone).await;
    let status = b
        .whatsapp(phone, "wamid.E1", "I want to talk to a human please")
        .await;
    assert_eq!(status, Some(200));
    let handoff = on_a
        .until_about("handoff", &conversation, FEW_SECONDS)
        .await;
    assert_eq!(handoff["team"], "support");
    within("the thread is queued", FEW_SECONDS, || {
        all_queued(&b.app.store, std::slice::from_ref(&conversation))
    })
    .await;

    // The customer writes again in the held thread, through B: A's console hears it.
    let text = "My order ML-20001 arrived broken";
    assert_eq!(b.whatsapp(phone, "wamid.E2", text).await, Some(200));
    let message = on_a
        .until_about("message", &conversation, FEW_SECONDS)
        .await;
    assert_eq!(message["text"], text);

    // Ana claims through B: A's console hears it.
    let (status, body) = ana
        .post(
            &b,
            &format!("/conversations/{conversation}/claim"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claimed = on_a
        .until_about("claimed", &conversation, FEW_SECONDS)
        .await;
    assert_eq!(claimed["concierge"], "ana");

    // B's console got the same events.
    for kind in ["handoff", "message", "claimed"] {
        on_b.until_about(kind, &conversation, FEW_SECONDS).await;
    }
    // Each exactly once on each console: pub/sub must not echo an instance's own events.
    on_a.drain(Duration::from_secs(1)).await;
    on_b.drain(Duration::from_secs(1)).await;
    for (console, events) in [("A", &on_a), ("B", &on_b)] {
        for kind in ["handoff", "message", "claimed"] {
            assert_eq!(
                events.count(kind, &conversation),
                1,
                "`{kind}` events on {console}'s console: {:?}",
                events.seen
            );
        }
    }
    println!(
        "{NAME}: handoff, message and claimed reached the console on A (and on B); events read: A {}, B {}",
        on_a.seen.len(),
        on_b.seen.len()
    );
}

/// Answers every message with its own text, after some think time so that turns are in
/// flight when Redis dies.
struct Echo;

#[async_trait]
impl Responder for Echo {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = turn.text().unwrap_or_default();
        Ok(Some(Decision::new(
            concierge::orchestrator::DecidedBy::Other("echo"),
            vec![(
                Author::Agent("echo".to_string()),
                Content::text(format!("echo: {text}")),
            )],
        )))
    }
}

/// One customer message, and the reply the echo gives it.
#[derive(Clone)]
struct Hook {
    phone: String,
    wamid: String,
    text: String,
}

impl Hook {
    fn reply(&self) -> String {
        format!("echo: {}", self.text)
    }
}

/// Where Redis was when a webhook was sent.
const UP: u8 = 0;
const DOWN: u8 = 1;
const RESTARTED: u8 = 2;

/// A webhook sent by the load: its index, Redis's phase when sent, the answer and when it
/// came.
struct Sent {
    index: usize,
    phase: u8,
    status: Option<u16>,
    answered: Instant,
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_under_load_loses_no_accepted_message() {
    const NAME: &str = "redis_restarted_under_load_loses_no_accepted_message";
    let Some(mut server) = RedisServer::start_for(NAME, true) else {
        return;
    };
    let redis = server.with_prefix();
    let graph = FakeApi::start().await.expect("the fake platform");
    let deployment = deployment("", &graph);
    let gateway = Arc::new(
        Instance::start(
            redis_config(&deployment, &redis),
            Parts {
                responder: Some(Arc::new(Echo)),
                ..Parts::default()
            },
        )
        .await,
    );

    // 50 customers write twice: a first round, then a second.
    let hooks: Vec<Hook> = (1..=2)
        .flat_map(|n| {
            (0..50).map(move |c| Hook {
                phone: format!("3361300{c:04}"),
                wamid: format!("wamid.L{c}-{n}"),
                text: format!("question {c:02} number {n}"),
            })
        })
        .collect();
    let results: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let phase = Arc::new(AtomicU8::new(UP));
    let load = tokio::spawn({
        let (gateway, hooks, results, phase) = (
            gateway.clone(),
            hooks.clone(),
            results.clone(),
            phase.clone(),
        );
        async move {
            for (index, hook) in hooks.iter().enumerate() {
                let phase = phase.load(Ordering::SeqCst);
                let status = gateway.whatsapp(&hook.phone, &hook.wamid, &hook.text).await;
                results.lock().expect("results lock").push(Sent {
                    index,
                    phase,
                    status,
                    answered: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let sent_count = || results.lock().expect("results lock").len();
    let refused_while_down = || {
        results
            .lock()
            .expect("results lock")
            .iter()
            .filter(|s| s.phase == DOWN && s.status != Some(200))
            .count()
    };

    // A third of the way in, Redis dies.
    within(
        "the first webhooks are sent",
        Duration::from_secs(30),
        || {
            let n = sent_count();
            async move { n >= 35 }
        },
    )
    .await;
    let answered_at_kill = graph.sends().len();
    tokio::task::block_in_place(|| server.kill());
    phase.store(DOWN, Ordering::SeqCst);
    let killed = Instant::now();
    within(
        "/readyz answers 503 while Redis is down",
        Duration::from_secs(15),
        || async { gateway.ready().await == Some(503) },
    )
    .await;
    let not_ready_after = killed.elapsed();
    // Down for a while: longer than `takeover_ms`, so the partition holds lapse.
    within(
        "webhooks are refused while Redis is down",
        Duration::from_secs(60),
        || {
            let (refused, done) = (refused_while_down(), load.is_finished());
            let long_enough = killed.elapsed() >= Duration::from_secs(3);
            async move { long_enough && (refused >= 5 || done) }
        },
    )
    .await;
    let down_for = killed.elapsed();

    // Redis comes back; the gateway reconnects by itself.
    let restarting = Instant::now();
    tokio::task::block_in_place(|| server.restart());
    phase.store(RESTARTED, Ordering::SeqCst);
    let restarted = Instant::now();
    within(
        "/readyz returns to 200 after the restart",
        Duration::from_secs(15),
        || async { gateway.ready().await == Some(200) },
    )
    .await;
    let ready_after = restarted.elapsed();
    load.await.expect("the load finishes");

    // The platform retries what was not acknowledged.
    let unacknowledged: Vec<usize> = results
        .lock()
        .expect("results lock")
        .iter()
        .filter(|s| s.status != Some(200))
        .map(|s| s.index)
        .collect();
    let mut still_refused = Vec::new();
    for &index in &unacknowledged {
        let hook = &hooks[index];
        let mut status = None;
        for _ in 0..5 {
            status = gateway.whatsapp(&hook.phone, &hook.wamid, &hook.text).await;
            if status == Some(200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if status != Some(200) {
            still_refused.push((index, status));
        }
    }
    assert!(
        still_refused.is_empty(),
        "resent webhooks still refused after the restart: {still_refused:?}"
    );

    // Every message was acknowledged at some point: each gets exactly one reply.
    let replies_by_text = |sends: &[Value]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for send in sends {
            let body = send["text"]["body"].as_str().unwrap_or_default();
            *counts.entry(body.to_string()).or_default() += 1;
        }
        counts
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let counts = replies_by_text(&graph.sends());
        if hooks.iter().all(|h| counts.contains_key(&h.reply())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Room for a late duplicate to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sends = graph.sends();
    let counts = replies_by_text(&sends);
    let answered = hooks
        .iter()
        .filter(|h| counts.contains_key(&h.reply()))
        .count();
    let lost: Vec<&str> = hooks
        .iter()
        .filter(|h| !counts.contains_key(&h.reply()))
        .map(|h| h.wamid.as_str())
        .collect();
    let duplicated: Vec<(&str, usize)> = hooks
        .iter()
        .filter_map(|h| {
            let n = counts.get(&h.reply()).copied().unwrap_or(0);
            (n > 1).then_some((h.wamid.as_str(), n))
        })
        .collect();
    let expected: std::collections::HashSet<String> = hooks.iter().map(Hook::reply).collect();
    let stray: Vec<&String> = counts.keys().filter(|t| !expected.contains(*t)).collect();

    let (
        accepted_before,
        acked_while_down,
        across_restart,
        refused_down,
        accepted_after,
        refused_other,
    ) = {
        let results = results.lock().expect("results lock");
        let mut refusals: HashMap<String, usize> = HashMap::new();
        for s in results.iter().filter(|s| s.status != Some(200)) {
            let status = s.status.map_or("no answer".to_string(), |c| c.to_string());
            *refusals.entry(status).or_default() += 1;
        }
        println!("{NAME}: refusals by status: {refusals:?}");
        let count = |phase: u8, ok: bool| {
            results
                .iter()
                .filter(|s| s.phase == phase && (s.status == Some(200)) == ok)
                .count()
        };
        // Sent after Redis was dead and acknowledged before it was started again: nothing
        // can have stored it.
        let acked_while_down: Vec<usize> = results
            .iter()
            .filter(|s| s.phase == DOWN && s.status == Some(200) && s.answered < restarting)
            .map(|s| s.index)
            .collect();
        (
            count(UP, true),
            acked_while_down,
            count(DOWN, true),
            count(DOWN, false),
            count(RESTARTED, true),
            count(UP, false) + count(RESTARTED, false),
        )
    };
    println!(
        "{NAME}: sent {}, accepted before the crash {accepted_before}, \
         refused while down {refused_down}, acknowledged while down {}, sent while down and accepted across the restart {across_restart}, \
         refused otherwise {refused_other}, accepted after the restart {accepted_after}, \
         resent {}, answered {answered}, lost {}, duplicated {}, stray replies {}, total sends {}; \
         replies sent when Redis died {answered_at_kill}; /readyz 503 {not_ready_after:?} after the kill, \
         Redis down for {down_for:?}, /readyz 200 {ready_after:?} after the restart",
        hooks.len(),
        acked_while_down.len(),
        unacknowledged.len(),
        lost.len(),
        duplicated.len(),
        stray.len(),
        sends.len(),
    );
    assert!(
        acked_while_down.is_empty(),
        "webhooks acknowledged while Redis was dead: {acked_while_down:?}"
    );
    assert!(
        lost.is_empty(),
        "acknowledged messages never answered: {lost:?}"
    );
    assert!(
        duplicated.is_empty(),
        "messages answered more than once (wamid, replies): {duplicated:?}"
    );
    assert!(stray.is_empty(), "replies to no message: {stray:?}");

    // Nothing is left in the inbox.
    let store = gateway.app.store.clone();
    within(
        "the inbox has nothing pending",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move { store.pending(0, 10).await.is_ok_and(|p| p.is_empty()) }
        },
    )
    .await;
}
