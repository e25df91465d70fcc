//! The real binary, killed with SIGKILL while customers keep writing, then restarted on the
//! same SQLite file: every acknowledged message is answered exactly once, in order.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use concierge::config::SyncMode;
use concierge::domain::{Content, ConversationId, Direction};
use concierge::orchestrator::faq::FaqIndex;
use concierge::store::SharedStore;
use concierge::store::sqlite::SqliteStore;

use crate::helpers::{Deployment, FAQ, PATIENCE, eventually, http_client, visitor_key};

const QUESTIONS: [&str; 5] = [
    "What are your opening hours?",
    "Do you ship internationally?",
    "Can I exchange an item?",
    "Do you sell gift cards?",
    "How do I take care of my candle?",
];

struct Gateway {
    child: Child,
    base: String,
    logs: std::thread::JoinHandle<Vec<String>>,
}

/// A send the gateway logged: the reply's message id, and whether it was flagged as
/// possibly sent already.
fn sends_in(logs: &[String]) -> Vec<(String, bool)> {
    logs.iter()
        .filter(|l| l.contains("reply accepted by the channel"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["fields"]["message_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["fields"]["maybe_sent"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

impl Gateway {
    /// Starts `concierge serve` and reads the address it listens on from its JSON logs.
    fn start(deployment: &Deployment) -> Gateway {
        Gateway::start_with(deployment, &[])
    }

    /// [`Gateway::start`] with more environment (a store on Redis, say).
    fn start_with(deployment: &Deployment, env: &[(String, String)]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_concierge"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(deployment.config_path())
            .env("RUST_LOG", "info,concierge_engine::delivery=debug")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::thread::spawn(move || {
            let mut sent = false;
            let mut kept = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("reply accepted by the channel") {
                    kept.push(line.clone());
                }
                if !sent && line.contains("Concierge is listening") {
                    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    if let Some(addr) = value["fields"]["addr"].as_str() {
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
            }
            kept
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the gateway says where it listens");
        Gateway {
            child,
            base: format!("http://{addr}"),
            logs,
        }
    }

    /// SIGKILL; returns the sends it logged.
    fn kill(mut self) -> Vec<String> {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
        self.logs.join().unwrap_or_default()
    }

    /// SIGTERM, a graceful stop; returns the exit status and the sends it logged.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        (status, self.logs.join().unwrap_or_default())
    }
}

/// Waits until `count` replies of the conversations `ids` are marked sent.
async fn until_sent(store: &SharedStore, ids: &[ConversationId], count: usize) {
    eventually("every message answered and every reply sent", || {
        let (store, ids) = (store.clone(), ids.to_vec());
        async move {
            let mut sent = 0;
            for id in &ids {
                let messages = store.messages(id, 0, 1000).await.unwrap_or_default();
                sent += messages
                    .iter()
                    .filter(|m| {
                        m.direction == Direction::Outbound
                            && m.status == concierge::domain::DeliveryStatus::Sent
                    })
                    .count();
            }
            sent == count
        }
    })
    .await;
}

/// What the channel was handed across every run (from the logs): each reply at least once,
/// and again only when flagged as possibly sent (a kill between the send and its record),
/// which the channel dedupes on the message id. Returns the sends and the ids sent.
fn handed_once(
    logs: &[String],
    reply_ids: &HashSet<String>,
) -> (Vec<(String, bool)>, HashSet<String>) {
    let sends = sends_in(logs);
    let sent_ids: HashSet<String> = sends.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(&sent_ids, reply_ids, "every reply handed to the channel");
    let mut seen = HashSet::new();
    for (id, maybe_sent) in &sends {
        if !seen.insert(id.clone()) {
            assert!(maybe_sent, "{id} sent twice without the maybe-sent flag");
        }
    }
    (sends, sent_ids)
}

/// Posts until the gateway acknowledges, as a platform retries an unacknowledged webhook.
async fn post_until_acked(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    text: &str,
) -> bool {
    let body = serde_json::json!({ "id": id, "text": text });
    let response = client
        .post(format!("{base}/webhooks/web"))
        .header("x-webchat-key", key)
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    matches!(response, Ok(r) if r.status() == 200)
}

#[tokio::test]
async fn killed_mid_traffic_every_message_is_answered_once_in_order() {
    let deployment = Deployment::new("");
    let client = http_client();
    let conversations = 8;
    let per_conversation = 25;
    let mut gateway = Gateway::start(&deployment);
    let mut kills = 0;
    let mut logs = Vec::new();
    // Send round-robin over the conversations, killing the gateway every 45 acknowledged
    // messages, and re-sending whatever was not acknowledged.
    let mut acked = 0;
    for i in 0..per_conversation {
        for c in 0..conversations {
            let key = visitor_key(&format!("k{c}"));
            let id = format!("m-{c}-{i}");
            let text = QUESTIONS[(i + c) % QUESTIONS.len()];
            while !post_until_acked(&client, &gateway.base, &key, &id, text).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked += 1;
            if acked % 45 == 0 {
                logs.extend(gateway.kill());
                kills += 1;
                // Some webhooks are redelivered after the restart, as a platform would.
                gateway = Gateway::start(&deployment);
                let again = format!("m-{c}-{i}");
                assert!(post_until_acked(&client, &gateway.base, &key, &again, text).await);
            }
        }
    }
    assert!(kills >= 3);

    // Read the outcome from the same SQLite file, while the last gateway finishes.
    let store: SharedStore = Arc::new(
        SqliteStore::open(&deployment.path().join("data/test.db"), SyncMode::Normal)
            .await
            .expect("open the gateway's store"),
    );
    let index = FaqIndex::parse(FAQ).unwrap();
    let mut conversation_ids: Vec<ConversationId> = Vec::new();
    for c in 0..conversations {
        let key = visitor_key(&format!("k{c}"));
        conversation_ids.push(crate::helpers::visitor_conversation_in(&store, "web", &key).await);
    }
    until_sent(&store, &conversation_ids, conversations * per_conversation).await;

    let mut counts = HashMap::new();
    let mut reply_ids = HashSet::new();
    for (c, id) in conversation_ids.iter().enumerate() {
        let messages = store.messages(id, 0, 1000).await.unwrap();
        let (inbound, outbound): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| m.direction == Direction::Inbound);
        counts.insert(c, (inbound.len(), outbound.len()));
        reply_ids.extend(outbound.iter().map(|m| m.id.to_string()));
        assert_eq!(
            inbound.len(),
            per_conversation,
            "no message lost or stored twice"
        );
        assert_eq!(outbound.len(), per_conversation, "one reply per message");
        // In order: reply i answers question i.
        for (i, reply) in outbound.iter().enumerate() {
            let question = QUESTIONS[(i + c) % QUESTIONS.len()];
            let expected = &index.best_match(question).unwrap().entry.answer;
            assert_eq!(
                reply.content,
                Content::text(expected.clone()),
                "conversation {c} reply {i}"
            );
        }
        for (i, message) in inbound.iter().enumerate() {
            let platform_id = message.platform_id.as_ref().unwrap().as_str();
            assert!(
                platform_id.ends_with(&format!(":m-{c}-{i}")),
                "{platform_id}"
            );
        }
    }
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let (status, last) = gateway.terminate();
    assert!(
        status.success(),
        "SIGTERM stops the gateway with exit 0: {status:?}"
    );
    logs.extend(last);

    let (sends, sent_ids) = handed_once(&logs, &reply_ids);
    let resent = sends.len() - sent_ids.len();
    eprintln!(
        "{} replies, {resent} re-sent after a kill (flagged, deduped by id)",
        sent_ids.len()
    );
}

/// The environment that puts a gateway's store on `redis` and its media in `bucket` (under
/// `prefix`), when given.
fn media_env(
    redis: Option<&crate::redis_server::TestRedis>,
    bucket: Option<&concierge_testkit::moto::TestBucket>,
    prefix: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(bucket) = bucket {
        env.extend(bucket.overrides(prefix));
    }
    if let Some(redis) = redis {
        env.push(("CONCIERGE__STORE__URL".to_string(), redis.url.clone()));
        env.push(("CONCIERGE__STORE__PREFIX".to_string(), redis.prefix.clone()));
        env.push((
            "CONCIERGE__STORE__TAKEOVER_MS".to_string(),
            "1500".to_string(),
        ));
    }
    env
}

/// The store the gateway of `deployment` writes: its SQLite file, or `redis`.
async fn gateways_store(
    deployment: &Deployment,
    redis: Option<&crate::redis_server::TestRedis>,
) -> SharedStore {
    match redis {
        None => Arc::new(
            SqliteStore::open(&deployment.path().join("data/test.db"), SyncMode::Normal)
                .await
                .expect("open the gateway's store"),
        ),
        Some(redis) => Arc::new(
            concierge::store::redis::RedisStore::open(concierge::store::redis::RedisSettings {
                url: redis.url.clone(),
                prefix: redis.prefix.clone(),
                partitions: 16,
                takeover_ms: 1_500,
                dedupe_ttl_secs: 3_600,
            })
            .await
            .expect("open the Redis store"),
        ),
    }
}

/// The Redis and the bucket a media kill run on `backend` uses (none on SQLite); `None`,
/// after saying why, when `test` cannot have them.
async fn media_backends(
    backend: Backend,
    test: &str,
) -> Option<(
    Option<crate::redis_server::TestRedis>,
    Option<concierge_testkit::moto::TestBucket>,
)> {
    match backend {
        Backend::Sqlite => Some((None, None)),
        Backend::Redis => {
            let redis = crate::redis_server::redis(test)?;
            let bucket = crate::media_bucket::bucket(test).await?;
            Some((Some(redis), Some(bucket)))
        }
    }
}

/// Which store a media kill run is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Redis,
}

#[tokio::test]
async fn killed_during_media_downloads_every_photo_is_kept_and_answered_once_on_sqlite() {
    killed_during_media_downloads(Backend::Sqlite).await;
}

#[tokio::test]
async fn killed_during_media_downloads_every_photo_is_kept_and_answered_once_on_redis() {
    killed_during_media_downloads(Backend::Redis).await;
}

/// Customers send photos captioned with FAQ questions while the gateway is killed every few
/// acknowledgements, each download slow enough that kills land during downloads: after the
/// restarts every photo is kept on its message and answered once, in order. On Redis the
/// photos are kept in an S3 bucket (moto), as several instances on Redis would share them.
async fn killed_during_media_downloads(backend: Backend) {
    use concierge_testkit::load::{self, Carries};
    let Some((redis, bucket)) = media_backends(
        backend,
        "killed_during_media_downloads_every_photo_is_kept_and_answered_once_on_redis",
    )
    .await
    else {
        return;
    };
    const SECRET: &str = "kill-media-secret";
    let graph = concierge_testkit::platform::FakeApi::start()
        .await
        .expect("the fake platform");
    let deployment = Deployment::new("[media]\nwait_ms = 60000\n");
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"t\"\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\n",
            load::PHONE_NUMBER_ID,
            graph.url
        ),
    )
    .unwrap();
    let env = media_env(redis.as_ref(), bucket.as_ref(), "kill");
    let (conversations, per_conversation) = (4, 6);
    let count = conversations * per_conversation;
    let question = |i: usize| QUESTIONS[i % QUESTIONS.len()].to_string();
    let shots = load::shots_of(
        Carries::Photo { photos: count },
        count,
        conversations,
        SECRET,
        "kill",
        question,
    );
    let mut photos = Vec::new();
    for n in 0..count {
        // Each its own bytes (kept once each), each download slow: kills land during them.
        let photo = crate::media::png(60 + n as u32, 40);
        graph.serve_media(&load::photo_id(n), "image/png", photo.clone());
        graph.slow_media(&load::photo_id(n), Duration::from_millis(250));
        photos.push(photo);
    }
    let client = http_client();
    let post = |base: String, shot: usize| {
        let client = client.clone();
        let (body, signature) = (shots[shot].body.clone(), shots[shot].signature.clone());
        async move {
            let response = client
                .post(format!("{base}/webhooks/whatsapp"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            matches!(response, Ok(r) if r.status() == 200)
        }
    };
    let mut gateway = Gateway::start_with(&deployment, &env);
    let mut logs = Vec::new();
    let mut kills = 0;
    for shot in 0..count {
        while !post(gateway.base.clone(), shot).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if shot % 5 == 4 {
            // Give the lanes a moment to be in the middle of downloads.
            tokio::time::sleep(Duration::from_millis(120)).await;
            logs.extend(gateway.kill());
            kills += 1;
            gateway = Gateway::start_with(&deployment, &env);
            // The platform redelivers what it may not have seen acknowledged.
            assert!(post(gateway.base.clone(), shot).await);
        }
    }
    assert!(kills >= 4);

    let store = gateways_store(&deployment, redis.as_ref()).await;
    let mut ids = Vec::new();
    for c in 0..conversations {
        ids.push(crate::helpers::conversation_in(&store, "whatsapp", &load::phone(c)).await);
    }
    until_sent(&store, &ids, count).await;
    let index = FaqIndex::parse(FAQ).unwrap();
    let mut reply_ids = HashSet::new();
    for (c, id) in ids.iter().enumerate() {
        let messages = store.messages(id, 0, 1000).await.unwrap();
        let (inbound, outbound): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| m.direction == Direction::Inbound);
        assert_eq!(
            inbound.len(),
            per_conversation,
            "conversation {c}: no photo lost or stored twice"
        );
        assert_eq!(
            outbound.len(),
            per_conversation,
            "conversation {c}: one reply per photo"
        );
        reply_ids.extend(outbound.iter().map(|m| m.id.to_string()));
        for (i, (photo, reply)) in inbound.iter().zip(&outbound).enumerate() {
            let n = c + i * conversations;
            let Content::Media {
                kept: Some(concierge::domain::KeptMedia::Stored(stored)),
                ..
            } = &photo.content
            else {
                panic!("conversation {c} photo {i} not kept: {:?}", photo.content);
            };
            assert_eq!(
                stored.bytes,
                photos[n].len() as u64,
                "conversation {c} photo {i} is its own"
            );
            let expected = &index.best_match(&question(n)).unwrap().entry.answer;
            assert_eq!(
                reply.content,
                Content::text(expected.clone()),
                "conversation {c} reply {i} answers its photo, in order"
            );
        }
    }
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let (status, last) = gateway.terminate();
    assert!(status.success(), "{status:?}");
    logs.extend(last);
    let (sends, sent_ids) = handed_once(&logs, &reply_ids);
    let downloads: usize = (0..count)
        .map(|n| graph.media_downloads(&load::photo_id(n)))
        .sum();
    if let Some(bucket) = &bucket {
        let blobs = bucket.keys("kill/blobs/").await;
        assert_eq!(
            blobs.len(),
            count,
            "every photo in the bucket, once: {blobs:?}"
        );
        assert!(
            !deployment.path().join("data/media").exists(),
            "nothing kept on the machine"
        );
    }
    eprintln!(
        "{backend:?}: {count} photos over {kills} kills: every one kept and answered once; {downloads} downloads ({} again after a kill), {} replies re-sent (flagged)",
        downloads.saturating_sub(count),
        sends.len() - sent_ids.len()
    );
}

#[tokio::test]
async fn killed_while_a_concierge_sends_photos_each_goes_once_on_sqlite() {
    killed_while_a_concierge_sends_photos(Backend::Sqlite).await;
}

#[tokio::test]
async fn killed_while_a_concierge_sends_photos_each_goes_once_on_redis() {
    killed_while_a_concierge_sends_photos(Backend::Redis).await;
}

/// A concierge uploads a photo to each of several threads and replies with it, retrying each
/// request (same `Idempotency-Key`) while the gateway is killed between and during sends
/// (each send held so kills land in them): every photo reaches WhatsApp as an upload then an
/// image message, once (a send a kill cut short is confirmed by its status webhook, not
/// sent again), with its own bytes. On Redis the photos are kept in an S3 bucket (moto).
async fn killed_while_a_concierge_sends_photos(backend: Backend) {
    use concierge_testkit::load;
    let Some((redis, bucket)) = media_backends(
        backend,
        "killed_while_a_concierge_sends_photos_each_goes_once_on_redis",
    )
    .await
    else {
        return;
    };
    const SECRET: &str = "kill-send-media-secret";
    let graph = concierge_testkit::platform::FakeApi::start()
        .await
        .expect("the fake platform");
    graph.delay_accepts(Duration::from_millis(150));
    let deployment = Deployment::new(&format!(
        "{}\n[media]\nwait_ms = 60000\n",
        crate::handoff::PEOPLE
    ));
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"t\"\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\n",
            load::PHONE_NUMBER_ID,
            graph.url
        ),
    )
    .unwrap();
    let mut env = media_env(redis.as_ref(), bucket.as_ref(), "sent");
    // One port across restarts, so the platform's status webhooks reach whichever gateway
    // runs: a send whose answer a kill cut short is confirmed by its status, not sent again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    env.push((
        "CONCIERGE__SERVER__BIND".to_string(),
        format!("127.0.0.1:{port}"),
    ));
    graph.report_statuses_to(
        &format!("http://127.0.0.1:{port}/webhooks/whatsapp"),
        SECRET,
    );
    let threads = 6;
    let client = http_client();
    let mut gateway = Gateway::start_with(&deployment, &env);
    // Each customer asks for a person; the threads queue.
    for c in 0..threads {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550100000", "phone_number_id": load::PHONE_NUMBER_ID },
                "contacts": [{ "profile": { "name": format!("Customer {c}") }, "wa_id": load::phone(c) }],
                "messages": [{ "from": load::phone(c), "id": format!("wamid.ASK{c}"),
                    "timestamp": (concierge::domain::now_millis() / 1000).to_string(),
                    "type": "text", "text": { "body": "I want to talk to a human please" } }],
            }}]}]
        })
        .to_string();
        let signature = load::sign(SECRET, body.as_bytes());
        let response = client
            .post(format!("{}/webhooks/whatsapp", gateway.base))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let store = gateways_store(&deployment, redis.as_ref()).await;
    let mut ids = Vec::new();
    for c in 0..threads {
        ids.push(crate::helpers::conversation_in(&store, "whatsapp", &load::phone(c)).await);
    }
    for id in &ids {
        eventually("the thread is queued", || async {
            matches!(
                store.thread_state(id).await,
                Ok(concierge::domain::ThreadState::Queued { .. })
            )
        })
        .await;
    }
    let token = concierge::handoff::access::issue(store.as_ref(), "ana")
        .await
        .unwrap();

    // Ana sends each thread its photo; every second reply, the gateway is killed mid-send.
    let photos: Vec<Vec<u8>> = (0..threads)
        .map(|c| crate::media::png(100 + c as u32, 80))
        .collect();
    let mut logs = Vec::new();
    let mut kills = 0;
    for (c, id) in ids.iter().enumerate() {
        let uploaded = loop {
            let answer = client
                .post(format!(
                    "{}/api/v1/conversations/{id}/media?name=photo-{c}.png",
                    gateway.base
                ))
                .bearer_auth(&token)
                .body(photos[c].clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(answer) = answer
                && answer.status() == 201
            {
                break answer.json::<serde_json::Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let reply = serde_json::json!({
            "text": format!("Here is your replacement, customer {c}"),
            "media": { "id": uploaded["id"], "name": format!("photo-{c}.png") },
        });
        let key = format!("photo-reply-{c}");
        let send = |base: String| {
            let (client, token, reply, key) =
                (client.clone(), token.clone(), reply.clone(), key.clone());
            let path = format!("/api/v1/conversations/{id}/messages");
            async move {
                let answer = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(token)
                    .header("idempotency-key", key)
                    .json(&reply)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                matches!(answer, Ok(a) if a.status() == 202)
            }
        };
        while !send(gateway.base.clone()).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if c % 2 == 1 {
            // In the middle of the upload or the send.
            tokio::time::sleep(Duration::from_millis(100)).await;
            logs.extend(gateway.kill());
            kills += 1;
            gateway = Gateway::start_with(&deployment, &env);
            // The client did not see its answer, say: it retries with the same key (its
            // pooled connection to the killed gateway fails first).
            while !send(gateway.base.clone()).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(kills >= 3);

    // One image message per thread, once, after the handoff's acknowledgement.
    let mut reply_ids = HashSet::new();
    eventually("every photo reply is sent", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            let mut sent = 0;
            for id in &ids {
                sent += store
                    .messages(id, 0, 100)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .filter(|m| {
                        matches!(m.content, Content::Media { .. })
                            && m.status == concierge::domain::DeliveryStatus::Sent
                    })
                    .count();
            }
            sent == ids.len()
        }
    })
    .await;
    for (c, id) in ids.iter().enumerate() {
        let messages = store.messages(id, 0, 100).await.unwrap();
        let files: Vec<_> = messages
            .iter()
            .filter(|m| matches!(m.content, Content::Media { .. }))
            .collect();
        assert_eq!(files.len(), 1, "thread {c}: the reply queued once");
        reply_ids.extend(
            messages
                .iter()
                .filter(|m| m.direction == Direction::Outbound)
                .map(|m| m.id.to_string()),
        );
    }
    let (status, last) = gateway.terminate();
    assert!(status.success(), "{status:?}");
    logs.extend(last);
    // What the customers' phones show is the bar: each its acknowledgement and its photo,
    // once. (A killed gateway's last log lines die with it: the logs are not the record.)
    let accepted = graph.accepted();
    for c in 0..threads {
        let to = load::phone(c);
        assert_eq!(
            accepted.iter().filter(|a| a.to == to).count(),
            2,
            "thread {c}: the acknowledgement and the photo, each once"
        );
    }
    let logged: HashSet<String> = sends_in(&logs).into_iter().map(|(id, _)| id).collect();
    assert!(logged.is_subset(&reply_ids));
    let uploads = graph.uploads();
    for (c, photo) in photos.iter().enumerate() {
        let to = load::phone(c);
        let images: Vec<_> = graph
            .accepted()
            .into_iter()
            .filter(|a| a.to == to && a.text.contains("\"type\":\"image\""))
            .collect();
        assert_eq!(
            images.len(),
            1,
            "thread {c}: the photo reached WhatsApp once"
        );
        let sent: serde_json::Value = serde_json::from_str(&images[0].text).unwrap();
        let upload = sent["image"]["id"].as_str().unwrap();
        assert_eq!(
            graph.media(upload).unwrap().1.as_ref(),
            photo.as_slice(),
            "thread {c}: its own photo"
        );
        assert_eq!(
            sent["image"]["caption"],
            format!("Here is your replacement, customer {c}")
        );
    }
    if let Some(bucket) = &bucket {
        assert_eq!(bucket.keys("sent/blobs/").await.len(), threads);
    }
    eprintln!(
        "{backend:?}: {threads} photo replies over {kills} kills: each on WhatsApp once; {} of {} sends missing from the logs (a killed gateway's last lines), {} uploads",
        reply_ids.len() - logged.len(),
        reply_ids.len(),
        uploads
            .iter()
            .filter(|(p, _)| p.ends_with("/media"))
            .count(),
    );
}

#[tokio::test]
async fn killed_during_a_batch_of_5000_each_customer_gets_it_once_on_sqlite() {
    killed_during_a_batch(Backend::Sqlite).await;
}

#[tokio::test]
async fn killed_during_a_batch_of_5000_each_customer_gets_it_once_on_redis() {
    killed_during_a_batch(Backend::Redis).await;
}

/// A batch of 5,000 notifications, the gateway killed twice while it works through them:
/// every customer gets the template once (none twice, none skipped), at no more than the
/// configured pace, and the batch ends done with all 5,000 queued.
async fn killed_during_a_batch(backend: Backend) {
    use concierge_testkit::load;
    const TOTAL: usize = 5_000;
    const PER_SECOND: usize = 600;
    let redis = match backend {
        Backend::Sqlite => None,
        Backend::Redis => {
            match crate::redis_server::redis(
                "killed_during_a_batch_of_5000_each_customer_gets_it_once_on_redis",
            ) {
                Some(redis) => Some(redis),
                None => return,
            }
        }
    };
    const SECRET: &str = "kill-batch-secret";
    let graph = concierge_testkit::platform::FakeApi::start()
        .await
        .expect("the fake platform");
    let deployment = Deployment::new(&format!(
        "[notifications]\nbatch_per_second = {PER_SECOND}\n"
    ));
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"t\"\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\nmessages_per_second = 2000\nnew_conversations_per_minute = 0\n",
            load::PHONE_NUMBER_ID,
            graph.url
        ),
    )
    .unwrap();
    std::fs::create_dir(deployment.path().join("templates")).unwrap();
    std::fs::write(
        deployment.path().join("templates/back_in_stock.fr.toml"),
        "category = \"utility\"\nbody = \"Bonjour {{name}}, {{product}} est de retour.\"\n",
    )
    .unwrap();
    let mut env = media_env(redis.as_ref(), None, "batch");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    env.push((
        "CONCIERGE__SERVER__BIND".to_string(),
        format!("127.0.0.1:{port}"),
    ));
    // A send a kill cut short is confirmed by its status, not sent again.
    graph.report_statuses_to(
        &format!("http://127.0.0.1:{port}/webhooks/whatsapp"),
        SECRET,
    );
    let mut gateway = Gateway::start_with(&deployment, &env);
    let store = gateways_store(&deployment, redis.as_ref()).await;
    let token =
        concierge::handoff::access::issue_service(store.as_ref(), "crm", &["notify".into()])
            .await
            .unwrap();
    let recipients: Vec<serde_json::Value> = (0..TOTAL)
        .map(|c| serde_json::json!({"to": format!("+{}", load::phone(c)), "params": {"name": format!("Client {c}")}}))
        .collect();
    let body = serde_json::json!({
        "channel": "whatsapp",
        "template": {"name": "back_in_stock", "language": "fr", "params": {"product": "La bougie Figuier"}},
        "recipients": recipients,
    });
    let client = http_client();
    let started: serde_json::Value = client
        .post(format!("{}/api/v1/notifications/batch", gateway.base))
        .bearer_auth(&token)
        .header("idempotency-key", "december")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["batch"].as_str().expect("a batch").to_string();
    let mut logs = Vec::new();
    for after in [1_500, 2_500] {
        tokio::time::sleep(Duration::from_millis(after)).await;
        logs.extend(gateway.kill());
        gateway = Gateway::start_with(&deployment, &env);
    }
    // Paced, 5,000 take a while on a loaded machine (each send, and each of the statuses
    // the platform reports, is a write): a few minutes at most.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut shown = std::time::Instant::now();
    loop {
        if shown.elapsed() > Duration::from_secs(10) {
            shown = std::time::Instant::now();
            eprintln!("batch kill test: {} accepted", graph.accepted_count());
        }
        let batch = store.batch(&id).await.ok().flatten();
        let done = batch
            .as_ref()
            .is_some_and(|b| b.state == concierge::store::BatchState::Done);
        if done && graph.accepted_count() >= TOTAL {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not done: {batch:?}, {} accepted",
            graph.accepted_count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Statuses and late sends settle.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    logs.extend(gateway.terminate().1);
    let batch = store.batch(&id).await.unwrap().unwrap();
    assert_eq!(
        (batch.total, batch.queued, batch.skipped),
        (TOTAL as u32, TOTAL as u32, 0)
    );
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    for accepted in graph.accepted() {
        *per_customer.entry(accepted.to.clone()).or_default() += 1;
    }
    assert_eq!(per_customer.len(), TOTAL, "nobody skipped");
    let twice: Vec<_> = per_customer.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messaged twice: {twice:?}");
    // The pace held across the restarts (a second's worth at most in any second, give or
    // take one tick).
    let mut at: Vec<std::time::Instant> = graph.accepted().iter().map(|a| a.at).collect();
    at.sort();
    let most = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= PER_SECOND + PER_SECOND / 5, "{most} in one second");
    let _ = logs;
}

#[tokio::test]
async fn killed_while_the_shop_posts_events_each_is_told_once_in_order_on_sqlite() {
    killed_while_the_shop_posts_events(Backend::Sqlite).await;
}

#[tokio::test]
async fn killed_while_the_shop_posts_events_each_is_told_once_in_order_on_redis() {
    killed_while_the_shop_posts_events(Backend::Redis).await;
}

/// The merchant's events ride the inbox like customers' messages: posted while the gateway
/// is killed and restarted (the last one posted again after each restart, as a provider
/// retries), each is stored once and told to the customer once, in the order posted, among
/// the customers' own messages.
async fn killed_while_the_shop_posts_events(backend: Backend) {
    use concierge_testkit::tokens::{answer, token, tokens};
    const CUSTOMERS: usize = 4;
    const EVENTS: usize = 20;
    let redis = match backend {
        Backend::Sqlite => None,
        Backend::Redis => match crate::redis_server::redis(
            "killed_while_the_shop_posts_events_each_is_told_once_in_order_on_redis",
        ) {
            Some(redis) => Some(redis),
            None => return,
        },
    };
    let llm = concierge_testkit::llm::FakeLlm::with(concierge_testkit::llm::Options {
        record: false,
        fallback: Arc::new(answer),
        ..Default::default()
    })
    .await
    .expect("the fake LLM");
    let deployment = Deployment::new(&format!(
        "[llm]\nprovider = \"openai_compatible\"\nmodel = \"kill\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\ntimeout_secs = 10\nmax_retries = 0\n\n[agents]\nllm_calls_per_minute = 0\n\n[faq]\nthreshold = 1.0\n\n[merchant]\nname = \"Maison Kill\"\ntimezone = \"Europe/Paris\"\n",
        llm.url
    ));
    std::fs::write(
        deployment.path().join("prompts/front_desk.md"),
        "+++\ndescription = \"Answers.\"\nentry = true\n+++\nYou are the concierge of {{ merchant }}.\n",
    )
    .unwrap();
    let env = media_env(redis.as_ref(), None, "events");
    let mut gateway = Gateway::start_with(&deployment, &env);
    let store = gateways_store(&deployment, redis.as_ref()).await;
    let token_for_shop =
        concierge::handoff::access::issue_service(store.as_ref(), "shop", &["events".into()])
            .await
            .unwrap();
    let client = http_client();
    // Each customer writes first (message numbers 0..CUSTOMERS), then the shop posts.
    let mut expected: Vec<Vec<usize>> = vec![Vec::new(); CUSTOMERS];
    let mut conversations = Vec::new();
    for (c, numbers) in expected.iter_mut().enumerate() {
        let key = visitor_key(&format!("shop{c}"));
        while !post_until_acked(&client, &gateway.base, &key, &format!("hi-{c}"), &token(c)).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        numbers.push(c);
        conversations.push(crate::helpers::visitor_conversation_in(&store, "web", &key).await);
    }
    let post = |base: String, conversation: String, n: usize| {
        let (client, token_for_shop) = (client.clone(), token_for_shop.clone());
        async move {
            let answer = client
                .post(format!("{base}/api/v1/conversations/{conversation}/events"))
                .bearer_auth(&token_for_shop)
                .json(&serde_json::json!({
                    "id": format!("evt-{n}"), "type": "order.update", "data": { "ref": token(n) },
                }))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            matches!(answer, Ok(r) if r.status() == 202)
        }
    };
    let (mut logs, mut kills, mut n) = (Vec::new(), 0, CUSTOMERS);
    for i in 0..EVENTS {
        for (c, conversation) in conversations.iter().enumerate() {
            while !post(gateway.base.clone(), conversation.to_string(), n).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            expected[c].push(n);
            if (i * CUSTOMERS + c) % 23 == 22 {
                logs.extend(gateway.kill());
                kills += 1;
                gateway = Gateway::start_with(&deployment, &env);
                // The provider did not hear the answer: it posts the same event again.
                assert!(post(gateway.base.clone(), conversation.to_string(), n).await);
            }
            n += 1;
        }
    }
    assert!(kills >= 3, "{kills} kills");
    let told = |store: SharedStore, id: ConversationId| async move {
        let messages = store.messages(&id, 0, 1000).await.unwrap_or_default();
        let replies: Vec<_> = messages
            .iter()
            .filter(|m| m.direction == Direction::Outbound)
            .cloned()
            .collect();
        (messages, replies)
    };
    eventually("every event is told and every reply sent", || {
        let (store, conversations, expected) =
            (store.clone(), conversations.clone(), expected.clone());
        async move {
            for (c, id) in conversations.iter().enumerate() {
                let (_, replies) = told(store.clone(), id.clone()).await;
                let said: Vec<usize> = replies
                    .iter()
                    .filter(|m| m.status == concierge::domain::DeliveryStatus::Sent)
                    .flat_map(|m| tokens(&m.content.describe()))
                    .collect();
                if said.len() < expected[c].len() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let mut reply_ids = HashSet::new();
    for (c, id) in conversations.iter().enumerate() {
        let (messages, replies) = told(store.clone(), id.clone()).await;
        let events = messages
            .iter()
            .filter(|m| matches!(m.content, Content::Event { .. }))
            .count();
        assert_eq!(events, EVENTS, "conversation {c}: each event stored once");
        let said: Vec<usize> = replies
            .iter()
            .flat_map(|m| tokens(&m.content.describe()))
            .collect();
        assert_eq!(
            said, expected[c],
            "conversation {c}: told once each, in order"
        );
        reply_ids.extend(replies.iter().map(|m| m.id.to_string()));
    }
    logs.extend(gateway.terminate().1);
    handed_once(&logs, &reply_ids);
}
