//! Three `concierge serve` processes on one Redis take 5,000 signed WhatsApp webhooks (500
//! conversations, 10% delivered twice) while one of them is SIGKILLed halfway: every message
//! is answered exactly once and in order, and the dead instance's work is taken over in time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use concierge::domain::{ChannelId, ContactId, ConversationKey};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use concierge_testkit::llm::{self, FakeLlm};
use concierge_testkit::platform::{Accepted, FakeApi};

use crate::helpers::{Deployment, METRICS_TOKEN, PATIENCE, http_client, metric};

const INSTANCES: usize = 3;
const CONVERSATIONS: usize = 500;
const PER_CONVERSATION: usize = 10;
const MESSAGES: usize = CONVERSATIONS * PER_CONVERSATION;
/// Conversations being written at once.
const IN_FLIGHT: usize = 48;
/// Webhooks a second, all customers together: below what three debug builds on two cores
/// answer (about 200 a second), so the reply times measure the takeover, not a backlog.
const WEBHOOKS_PER_SECOND: u64 = 120;
/// The instance that is killed, once half the messages are acknowledged.
const VICTIM: usize = 1;
const TAKEOVER_MS: u64 = 3_000;
/// The fake Graph API reports no statuses: a send in flight on the killed instance waits
/// this long for one (`[delivery] confirm_wait_ms`) before it is sent again.
const CONFIRM_WAIT_MS: u64 = 1_000;
/// How late after the kill the killed instance's messages may still be answered.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(10);
/// How long to wait for the last replies once every webhook is acknowledged.
const REPLY_PATIENCE: Duration = Duration::from_secs(120);
/// How long to keep listening once every message has a reply, for late duplicates.
const SETTLE: Duration = Duration::from_secs(3);
/// How long the fake LLM thinks and the fake Graph API takes to accept a message: work is
/// in flight on every instance when one is killed, as it would be in production.
const LLM_DELAY: Duration = Duration::from_millis(500);
const GRAPH_DELAY: Duration = Duration::from_millis(100);
const SECRET: &str = "scale-app-secret";
const PHONE_NUMBER_ID: &str = "100000000000001";

const FRONT_DESK: &str = "+++\ndescription = \"Answers every message.\"\nentry = true\n+++\nYou are the front desk of {{ merchant }}.\n";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn phone(c: usize) -> String {
    format!("1555{c:07}")
}

/// The gateways' id for conversation `c`, as their logs show it: keyed with the
/// deployment's secret, which the gateways keep in Redis.
async fn conversation_ids(redis: &crate::redis_server::TestRedis) -> Vec<String> {
    use redis::AsyncCommands;
    let stored: Option<String> = async {
        let client = redis::Client::open(redis.url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        conn.hget(format!("{}:meta", redis.prefix), "conversation_key")
            .await
            .ok()
    }
    .await
    .flatten();
    let key = stored
        .and_then(|hex| hex::decode(hex).ok())
        .and_then(|bytes| ConversationKey::from_bytes(&bytes));
    let channel = ChannelId::parse("whatsapp").expect("a channel id");
    (0..CONVERSATIONS)
        .map(|c| {
            let contact = ContactId::parse(phone(c)).expect("a contact id");
            key.as_ref().map_or("unknown".to_string(), |key| {
                key.conversation(&channel, &contact).to_string()
            })
        })
        .collect()
}

fn text(c: usize, k: usize) -> String {
    format!("c{c}-m{k}")
}

/// `c12-m3` back into (12, 3).
fn parse_text(text: &str) -> Option<(usize, usize)> {
    let (c, k) = text.strip_prefix('c')?.split_once("-m")?;
    Some((c.parse().ok()?, k.parse().ok()?))
}

/// Which message of conversation `c` is delivered twice: one in ten, spread over positions.
fn duplicated(c: usize) -> usize {
    (PER_CONVERSATION - c % PER_CONVERSATION) % PER_CONVERSATION
}

/// A WhatsApp Cloud API notification with one text message, and its X-Hub-Signature-256.
fn webhook(c: usize, k: usize) -> (Vec<u8>, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let from = phone(c);
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": [{ "profile": { "name": format!("Customer {c}") }, "wa_id": from }],
            "messages": [{ "from": from, "id": format!("wamid.scale-c{c}-m{k}"),
                           "timestamp": now.to_string(), "type": "text",
                           "text": { "body": text(c, k) } }]
        }}]}]
    }))
    .expect("a JSON body");
    let signature = concierge_testkit::load::sign(SECRET, &body);
    (body, signature)
}

/// One `concierge serve` process; its JSON logs go to a file.
struct Gateway {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

/// The running gateways; whatever happens to the test, they are killed with it.
struct Fleet(Vec<Gateway>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for gateway in &mut self.0 {
            if let Some(mut child) = gateway.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The last lines of a log file, to explain a failure.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Gateway {
    /// Starts `concierge serve` on the shared folder with the store moved to Redis, and
    /// reads the address it listens on from its logs.
    fn start(
        deployment: &Deployment,
        redis: &crate::redis_server::TestRedis,
        log: PathBuf,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_concierge"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(deployment.config_path())
            .env("RUST_LOG", "info,concierge_engine::delivery=debug")
            .env("CONCIERGE__STORE__URL", &redis.url)
            .env("CONCIERGE__STORE__PREFIX", &redis.prefix)
            .env("CONCIERGE__STORE__TAKEOVER_MS", TAKEOVER_MS.to_string())
            .env(
                "CONCIERGE__DELIVERY__CONFIRM_WAIT_MS",
                CONFIRM_WAIT_MS.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start concierge serve");
        let stderr = child.stderr.take().expect("the gateway's stderr");
        let mut file = std::fs::File::create(&log).expect("create the gateway's log file");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if !told && line.contains("Concierge is listening") {
                    let value: Value = serde_json::from_str(&line).unwrap_or_default();
                    if let Some(addr) = value["fields"]["addr"].as_str() {
                        let _ = tx.send(addr.to_string());
                        told = true;
                    }
                }
            }
        });
        let gateway = Gateway {
            child: Some(child),
            base: String::new(),
            log,
        };
        match rx.recv_timeout(PATIENCE) {
            Ok(addr) => Gateway {
                base: format!("http://{addr}"),
                ..gateway
            },
            Err(_) => {
                let log = gateway.log.clone();
                // Dropped in a fleet, so it is killed before the panic unwinds further.
                drop(Fleet(vec![gateway]));
                panic!(
                    "a gateway did not say where it listens; its log {}:\n{}",
                    log.display(),
                    tail(&log, 20)
                );
            }
        }
    }
}

/// When each original message was acknowledged, and by which gateway.
#[derive(Clone, Copy)]
struct Ack {
    gateway: usize,
    at: Instant,
}

/// The load generator's shared state and counters.
struct Load {
    client: reqwest::Client,
    bases: Vec<String>,
    round_robin: AtomicUsize,
    /// When the next webhook may go.
    next_slot: tokio::sync::Mutex<tokio::time::Instant>,
    acked_originals: AtomicUsize,
    halfway: Notify,
    acks: Mutex<HashMap<(usize, usize), Ack>>,
    posts: AtomicUsize,
    duplicates: AtomicUsize,
    accepted: AtomicUsize,
    failed_to_connect: AtomicUsize,
    other_errors: AtomicUsize,
    refused: Mutex<HashMap<u16, usize>>,
}

impl Load {
    /// Posts the webhook until a gateway acknowledges it, moving on to the next gateway
    /// after a failure, as a load balancer would. The first gateway tried is the next in
    /// turn, or the one after `avoid`, which is never used. Returns the gateway that
    /// acknowledged.
    async fn deliver(
        &self,
        what: &str,
        body: &[u8],
        signature: &str,
        avoid: Option<usize>,
    ) -> usize {
        self.pace().await;
        let mut g = match avoid {
            Some(a) => (a + 1) % INSTANCES,
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % INSTANCES,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_error = String::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no gateway acknowledged {what} within 60 s; last error: {last_error}"
            );
            if Some(g) == avoid {
                g = (g + 1) % INSTANCES;
                continue;
            }
            self.posts.fetch_add(1, Ordering::Relaxed);
            let response = self
                .client
                .post(format!("{}/webhooks/whatsapp", self.bases[g]))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body.to_vec())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match response {
                Ok(r) if r.status() == 200 => {
                    // Read to the end, so the connection is reused.
                    let _ = r.bytes().await;
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    return g;
                }
                Ok(r) => {
                    *lock(&self.refused).entry(r.status().as_u16()).or_default() += 1;
                    last_error = format!("gateway {g} answered {}", r.status());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) if e.is_connect() => {
                    self.failed_to_connect.fetch_add(1, Ordering::Relaxed);
                    last_error = format!("gateway {g}: {e}");
                }
                Err(e) => {
                    self.other_errors.fetch_add(1, Ordering::Relaxed);
                    last_error = format!("gateway {g}: {e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            g = (g + 1) % INSTANCES;
        }
    }

    /// Waits for this webhook's turn at the configured rate (a resend after a failure is
    /// not paced: it answers the same webhook).
    async fn pace(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + Duration::from_micros(1_000_000 / WEBHOOKS_PER_SECOND);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// One customer writing their messages in order, each once acknowledged; one of them is
    /// delivered again to another gateway, either at once or after the next message.
    async fn converse(&self, c: usize) {
        let mut later: Option<(Vec<u8>, String, usize)> = None;
        for k in 0..PER_CONVERSATION {
            let (body, signature) = webhook(c, k);
            let what = text(c, k);
            let gateway = self.deliver(&what, &body, &signature, None).await;
            lock(&self.acks).insert(
                (c, k),
                Ack {
                    gateway,
                    at: Instant::now(),
                },
            );
            if self.acked_originals.fetch_add(1, Ordering::SeqCst) + 1 == MESSAGES / 2 {
                self.halfway.notify_one();
            }
            if let Some((body, signature, gateway)) = later.take() {
                self.duplicate(&body, &signature, gateway).await;
            }
            if k == duplicated(c) {
                if c.is_multiple_of(2) {
                    self.duplicate(&body, &signature, gateway).await;
                } else {
                    later = Some((body, signature, gateway));
                }
            }
        }
        if let Some((body, signature, gateway)) = later {
            self.duplicate(&body, &signature, gateway).await;
        }
    }

    /// The platform delivering the same webhook again (same body, same signature, same event
    /// id), to another gateway than the first time.
    async fn duplicate(&self, body: &[u8], signature: &str, first: usize) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        self.deliver("a duplicate", body, signature, Some(first))
            .await;
    }
}

/// What the replies say about each message.
#[derive(Default)]
struct Outcome {
    /// Per message, the arrival time of each reply naming it.
    answers: HashMap<(usize, usize), Vec<Instant>>,
    /// Messages whose first reply came after a later message's.
    out_of_order: Vec<(usize, usize)>,
    /// Replies sent to another customer than the message's.
    misrouted: Vec<String>,
    /// Replies that are not echoes of a message of this test.
    other: Vec<String>,
}

fn outcome(replies: &[Accepted]) -> Outcome {
    let mut out = Outcome::default();
    let mut highest: HashMap<usize, usize> = HashMap::new();
    for reply in replies {
        let Some(echoed) = reply.text.strip_prefix("echo: ") else {
            out.other.push(format!("to {}: {}", reply.to, reply.text));
            continue;
        };
        // A turn that read several messages echoes them all, one per line.
        for line in echoed.lines() {
            let Some((c, k)) = parse_text(line) else {
                out.other.push(format!("to {}: {}", reply.to, reply.text));
                continue;
            };
            if reply.to != phone(c) {
                out.misrouted.push(format!(
                    "{line} sent to {} instead of {}",
                    reply.to,
                    phone(c)
                ));
            }
            let times = out.answers.entry((c, k)).or_default();
            times.push(reply.at);
            if times.len() == 1 {
                let top = highest.entry(c).or_insert(k);
                if k < *top {
                    out.out_of_order.push((c, k));
                }
                *top = (*top).max(k);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_on_one_redis_lose_nothing_when_one_is_killed() {
    let Some(redis) =
        crate::redis_server::redis("three_gateways_on_one_redis_lose_nothing_when_one_is_killed")
    else {
        return;
    };
    let started = Instant::now();
    let client = http_client();

    // Messages are accepted after a while, then answered at once: a sender killed meanwhile
    // sent nothing. No statuses are reported.
    let graph = FakeApi::start().await.expect("the fake Graph API");
    graph.delay_accepts(GRAPH_DELAY);
    let graph_url = graph.graph_api_base();
    // The echo LLM; a call is counted when asked: a caller killed while it thinks still cost one.
    let llm = FakeLlm::with(llm::Options {
        latency: llm::Latency::Fixed(LLM_DELAY),
        record: true,
        fallback: Arc::new(|request| format!("echo: {}", llm::last_user_text(request))),
    })
    .await
    .expect("the fake LLM");
    let llm_url = llm.url.clone();

    // One folder for the three: the agents answer from the echo LLM (the FAQ never does),
    // and the store is moved to Redis by each process's environment.
    let deployment = Deployment::new(&format!(
        "[llm]\nprovider = \"openai_compatible\"\nmodel = \"echo\"\nbase_url = \"{llm_url}/v1\"\napi_key = \"scale-test-key\"\ntimeout_secs = 10\nmax_retries = 1\n\n\
         [faq]\nthreshold = 1.0\n\n\
         [orchestrator]\nnew_conversations_per_minute = 0\n\n\
         [agents]\nhistory_messages = 40\nllm_calls_per_minute = 0\n\n\
         [merchant]\nname = \"Maison Test\"\ntimezone = \"Europe/Paris\"\n"
    ));
    std::fs::write(deployment.path().join("prompts/front_desk.md"), FRONT_DESK)
        .expect("write the agent's prompt");
    // The number's throughput is raised and the budgets are off: this test is about the
    // store, not the limits.
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\naccess_token = \"t\"\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\napi_base = \"{graph_url}\"\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\n"
        ),
    )
    .expect("write the WhatsApp channel");

    // Logs are kept after the test, to read what happened.
    let logs = std::env::temp_dir().join(format!("concierge-scale-{}", redis.prefix));
    std::fs::create_dir_all(&logs).expect("create the log folder");
    let mut fleet = Fleet(Vec::new());
    for i in 0..INSTANCES {
        let gateway = Gateway::start(&deployment, &redis, logs.join(format!("gateway-{i}.log")));
        fleet.0.push(gateway);
    }
    let load = Arc::new(Load {
        client: client.clone(),
        bases: fleet.0.iter().map(|g| g.base.clone()).collect(),
        round_robin: AtomicUsize::new(0),
        next_slot: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        acked_originals: AtomicUsize::new(0),
        halfway: Notify::new(),
        acks: Mutex::new(HashMap::new()),
        posts: AtomicUsize::new(0),
        duplicates: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        failed_to_connect: AtomicUsize::new(0),
        other_errors: AtomicUsize::new(0),
        refused: Mutex::new(HashMap::new()),
    });

    // The customers, `IN_FLIGHT` conversations at a time.
    let load_started = Instant::now();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut customers = Vec::with_capacity(CONVERSATIONS);
    for c in 0..CONVERSATIONS {
        let load = load.clone();
        let permits = permits.clone();
        customers.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.expect("the semaphore is open");
            load.converse(c).await;
        }));
    }

    // Halfway, one instance dies without a word.
    tokio::time::timeout(Duration::from_secs(120), load.halfway.notified())
        .await
        .expect("half the messages acknowledged within 120 s");
    let killed_at = Instant::now();
    let mut victim = fleet.0[VICTIM].child.take().expect("the victim is running");
    victim.kill().expect("SIGKILL the victim");
    let _ = victim.wait();
    let killed_after = killed_at - load_started;

    for customer in customers {
        customer
            .await
            .expect("a customer's messages were all acknowledged");
    }
    let sent_in = load_started.elapsed();

    // Every message answered, or the patience runs out.
    let deadline = Instant::now() + REPLY_PATIENCE;
    loop {
        let answered = outcome(&graph.accepted()).answers.len();
        if answered >= MESSAGES || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let answered_in = load_started.elapsed();

    // Replies sent again after a crash are flagged by the instance that resends them.
    let mut resent_after_crash = 0.0;
    for (i, gateway) in fleet.0.iter().enumerate() {
        if i == VICTIM {
            continue;
        }
        let text = client
            .get(format!("{}/metrics", gateway.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("read a gateway's metrics")
            .text()
            .await
            .expect("a metrics body");
        resent_after_crash += metric(
            &text,
            "concierge_deliveries_total",
            "outcome=\"resent_after_crash\"",
        );
    }
    drop(fleet);

    let replies = graph.accepted();
    let result = outcome(&replies);
    let acks = lock(&load.acks).clone();
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for c in 0..CONVERSATIONS {
        for k in 0..PER_CONVERSATION {
            match result.answers.get(&(c, k)).map_or(0, Vec::len) {
                0 => lost.push((c, k)),
                1 => {}
                _ => twice.push((c, k)),
            }
        }
    }
    let once = MESSAGES - lost.len() - twice.len();

    // LLM calls, counted per message (the last line of what it was asked).
    let asked: Vec<String> = llm
        .calls()
        .iter()
        .map(|call| llm::last_user_text(&call.body))
        .collect();
    let mut calls_per_message: HashMap<String, usize> = HashMap::new();
    for question in &asked {
        let last = question.lines().last().unwrap_or_default().to_string();
        *calls_per_message.entry(last).or_default() += 1;
    }
    let asked_twice = calls_per_message.values().filter(|n| **n > 1).count();

    // Takeover: the messages the victim acknowledged and had not answered when it died.
    let first_reply = |key: &(usize, usize)| result.answers.get(key).and_then(|t| t.first());
    let orphans: Vec<Duration> = acks
        .iter()
        .filter(|(_, a)| a.gateway == VICTIM && a.at <= killed_at)
        .filter(|(key, _)| first_reply(key).is_none_or(|t| *t > killed_at))
        .map(|(key, _)| first_reply(key).map_or(Duration::MAX, |t| *t - killed_at))
        .collect();
    let takeover = orphans.iter().max().copied();
    // For comparison: every message acknowledged before the kill and answered after it.
    let waiting = acks
        .iter()
        .filter(|(_, a)| a.at <= killed_at)
        .filter_map(|(key, _)| first_reply(key).filter(|t| **t > killed_at))
        .map(|t| *t - killed_at)
        .max();
    // Every message waiting at the kill whose first reply came later than the takeover
    // allows, whoever acknowledged it.
    let allowed = Duration::from_millis(TAKEOVER_MS + CONFIRM_WAIT_MS) + TAKEOVER_MARGIN;
    let mut late: Vec<(usize, usize)> = acks
        .iter()
        .filter(|(_, a)| a.at <= killed_at)
        .filter(|(key, _)| first_reply(key).is_none_or(|t| *t > killed_at + allowed))
        .map(|(key, _)| *key)
        .collect();
    // How long each conversation with a message waiting at the kill went without any reply
    // after it: the takeover itself, whatever the queue behind it.
    let mut first_after_kill: HashMap<usize, Instant> = HashMap::new();
    for ((c, _), times) in &result.answers {
        for t in times.iter().filter(|t| **t > killed_at) {
            let first = first_after_kill.entry(*c).or_insert(*t);
            *first = (*first).min(*t);
        }
    }
    let mut silence: HashMap<usize, Duration> = HashMap::new();
    for ((c, _), _) in acks
        .iter()
        .filter(|(_, a)| a.at <= killed_at)
        .filter(|(key, _)| first_reply(key).is_none_or(|t| *t > killed_at))
    {
        let next = first_after_kill
            .get(c)
            .map_or(Duration::MAX, |t| *t - killed_at);
        silence.insert(*c, next);
    }
    let longest_silence = silence.values().max().copied();
    late.sort();
    let mut late_conversations: Vec<usize> = late.iter().map(|(c, _)| *c).collect();
    late_conversations.dedup();
    let mut latencies: Vec<Duration> = acks
        .iter()
        .filter_map(|(key, a)| first_reply(key).map(|t| t.saturating_duration_since(a.at)))
        .collect();
    latencies.sort();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let flagged = resent_after_crash as usize;
    let unflagged_twice = twice.len().saturating_sub(flagged);
    let seconds = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let mut per_gateway = [0; INSTANCES];
    for ack in acks.values() {
        per_gateway[ack.gateway] += 1;
    }

    let refused = lock(&load.refused).clone();
    let rows: Vec<(&str, String)> = vec![
        (
            "webhooks posted (every attempt)",
            load.posts.load(Ordering::Relaxed).to_string(),
        ),
        ("  original messages", MESSAGES.to_string()),
        (
            "  duplicates sent (same body, other gateway)",
            load.duplicates.load(Ordering::Relaxed).to_string(),
        ),
        (
            "  failed to connect, resent to the next",
            load.failed_to_connect.load(Ordering::Relaxed).to_string(),
        ),
        (
            "  other transport errors, resent",
            load.other_errors.load(Ordering::Relaxed).to_string(),
        ),
        (
            "  answered with another status, resent",
            format!("{refused:?}"),
        ),
        (
            "accepted (200)",
            load.accepted.load(Ordering::Relaxed).to_string(),
        ),
        ("  originals acknowledged by gateway 0/1/2", {
            let [a, b, c] = per_gateway;
            format!("{a}/{b}/{c}")
        }),
        (
            "replies received by the Graph API",
            replies.len().to_string(),
        ),
        ("read receipts received", graph.indicators().to_string()),
        ("messages answered exactly once", once.to_string()),
        ("lost (no reply)", lost.len().to_string()),
        ("answered twice or more", twice.len().to_string()),
        (
            "  resends flagged as maybe sent after the crash",
            flagged.to_string(),
        ),
        ("out of order", result.out_of_order.len().to_string()),
        (
            "replies to the wrong customer",
            result.misrouted.len().to_string(),
        ),
        (
            "replies that are not echoes",
            result.other.len().to_string(),
        ),
        ("LLM calls", asked.len().to_string()),
        (
            "  messages the LLM was asked about twice or more",
            asked_twice.to_string(),
        ),
        (
            "killed gateway's unanswered messages at the kill",
            orphans.len().to_string(),
        ),
        (
            "takeover: their last reply after the kill",
            takeover.map_or("n/a".into(), seconds),
        ),
        ("  takeover_ms + confirm_wait_ms + margin", seconds(allowed)),
        (
            "any message waiting at the kill: last reply after",
            waiting.map_or("n/a".into(), seconds),
        ),
        (
            "longest a waiting conversation had no reply after it",
            longest_silence.map_or("n/a".into(), seconds),
        ),
        (
            "waiting messages answered after kill + takeover + margin",
            late.len().to_string(),
        ),
        ("  in conversations", late_conversations.len().to_string()),
        ("reply latency from ack: median", seconds(percentile(50))),
        ("reply latency from ack: p99", seconds(percentile(99))),
        ("reply latency from ack: max", seconds(percentile(100))),
        (
            "gateway killed after (from the first webhook)",
            seconds(killed_after),
        ),
        ("every webhook acknowledged after", seconds(sent_in)),
        (
            "replies awaited until (incl. settling)",
            seconds(answered_in),
        ),
        ("whole test", seconds(started.elapsed())),
    ];
    println!(
        "\n{INSTANCES} gateways on one Redis (prefix {}, takeover_ms {TAKEOVER_MS}), gateway {VICTIM} SIGKILLed at {} acknowledged; logs in {}",
        redis.prefix,
        MESSAGES / 2,
        logs.display()
    );
    for (label, value) in &rows {
        println!("  {label:<56}{value:>12}");
    }

    // Each odd message with what the logs need: its conversation id, when it was
    // acknowledged and by whom, and when its replies came, relative to the kill.
    let relative = |t: Instant| {
        if t >= killed_at {
            format!("+{:.1}s", (t - killed_at).as_secs_f64())
        } else {
            format!("-{:.1}s", (killed_at - t).as_secs_f64())
        }
    };
    let ids = conversation_ids(&redis).await;
    let describe = |(c, k): &(usize, usize)| {
        let ack = acks.get(&(*c, *k)).map_or("never acked".to_string(), |a| {
            format!("acked by {} at {}", a.gateway, relative(a.at))
        });
        let answers: Vec<String> = result
            .answers
            .get(&(*c, *k))
            .map(|t| t.iter().map(|t| relative(*t)).collect())
            .unwrap_or_default();
        format!(
            "{} (conversation {}, {ack}, replies at [{}] from the kill)",
            text(*c, *k),
            ids[*c],
            answers.join(", ")
        )
    };
    let sample = |v: &[(usize, usize)]| {
        v.iter()
            .take(10)
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    for (what, list) in [
        ("lost", &lost),
        ("answered twice or more", &twice),
        ("out of order", &result.out_of_order),
        ("answered after kill + takeover + margin", &late),
    ] {
        if !list.is_empty() {
            println!("{what} ({}):\n  {}", list.len(), sample(list));
        }
    }
    for (what, list) in [
        ("misrouted", &result.misrouted),
        ("not echoes", &result.other),
    ] {
        if !list.is_empty() {
            println!(
                "{what} ({}):\n  {}",
                list.len(),
                list[..list.len().min(10)].join("\n  ")
            );
        }
    }

    assert_eq!(
        load.accepted.load(Ordering::Relaxed),
        MESSAGES + CONVERSATIONS,
        "every original and every duplicate acknowledged once"
    );
    assert!(lost.is_empty(), "lost:\n  {}", sample(&lost));
    // A kill between a send and its record may send a reply again, flagged as such (the
    // channel has no idempotency key); any other second reply is a bug.
    assert_eq!(
        unflagged_twice,
        0,
        "answered twice, more than the flagged resends:\n  {}",
        sample(&twice)
    );
    assert!(
        result.out_of_order.is_empty(),
        "out of order:\n  {}",
        sample(&result.out_of_order)
    );
    assert!(
        result.misrouted.is_empty(),
        "misrouted: {:?}",
        result.misrouted
    );
    assert!(result.other.is_empty(), "not echoes: {:?}", result.other);
    // How long the takeover took is a figure, not a verdict: on a shared machine it varies
    // with the load (every message being answered, in order, once, is asserted above).
    if let Some(takeover) = takeover
        && takeover > allowed
    {
        eprintln!(
            "note: the killed gateway's messages were answered up to {} after the kill (expected within {} on an idle machine); late:\n  {}",
            seconds(takeover),
            seconds(allowed),
            sample(&late)
        );
    }
}
