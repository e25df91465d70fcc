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
    let redis = match backend {
        Backend::Redis => match crate::redis_server::redis(
            "killed_during_media_downloads_every_photo_is_kept_and_answered_once_on_redis",
        ) {
            Some(redis) => Some(redis),
            None => return,
        },
        Backend::Sqlite => None,
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
    let bucket = match backend {
        Backend::Redis => match crate::media_bucket::bucket(
            "killed_during_media_downloads_every_photo_is_kept_and_answered_once_on_redis",
        )
        .await
        {
            Some(bucket) => Some(bucket),
            None => return,
        },
        Backend::Sqlite => None,
    };
    let mut env = Vec::new();
    if let Some(bucket) = &bucket {
        env.extend(bucket.overrides("kill"));
    }
    if let Some(redis) = &redis {
        env.push(("CONCIERGE__STORE__URL".to_string(), redis.url.clone()));
        env.push(("CONCIERGE__STORE__PREFIX".to_string(), redis.prefix.clone()));
        env.push((
            "CONCIERGE__STORE__TAKEOVER_MS".to_string(),
            "1500".to_string(),
        ));
    }
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

    let store: SharedStore = match &redis {
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
    };
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
