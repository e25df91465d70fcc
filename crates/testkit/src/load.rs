//! The load generator: signed WhatsApp webhooks, built before the clock starts, sent with a
//! fixed concurrency (closed loop) or at a target rate (open loop, each latency counted from
//! the moment the request was due, so a stalled server cannot hide its queue).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;

pub const PHONE_NUMBER_ID: &str = "100000000000001";

/// How the webhooks are sent.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// This many requests in flight at all times.
    Concurrency(usize),
    /// This many requests a second, whatever the answers.
    Rate(f64),
}

/// One webhook, ready to send.
pub struct Shot {
    pub body: Bytes,
    pub signature: String,
    pub conversation: usize,
}

/// The customer's phone number of conversation `c`.
pub fn phone(c: usize) -> String {
    format!("1555{c:07}")
}

/// What each message of a load carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// A text message: `text(i)`.
    Text,
    /// A photo, Graph media id `bench-media-{i % photos}`, captioned `text(i)`.
    Photo { photos: usize },
    /// Every `every`th message (0, `every`, …) a photo, `bench-media-{(i / every) % photos}`,
    /// captioned `text(i)`; the others text.
    Mixed { every: usize, photos: usize },
}

impl Carries {
    /// The photo message `i` carries, if any.
    pub fn photo_of(self, i: usize) -> Option<usize> {
        match self {
            Carries::Text => None,
            Carries::Photo { photos } => Some(i % photos.max(1)),
            Carries::Mixed { every, photos } => {
                let every = every.max(1);
                i.is_multiple_of(every).then(|| (i / every) % photos.max(1))
            }
        }
    }
}

/// The Graph media id of photo `n` of a [`Carries::Photo`] load.
pub fn photo_id(n: usize) -> String {
    format!("bench-media-{n}")
}

/// `count` webhooks, round-robin over `conversations` customers, each with one text message
/// (`text(i)`) and a fresh message id, signed with `secret`.
pub fn shots(
    count: usize,
    conversations: usize,
    secret: &str,
    run: &str,
    text: impl Fn(usize) -> String,
) -> Vec<Shot> {
    shots_of(Carries::Text, count, conversations, secret, run, text)
}

/// [`shots`], each message carrying `carries`.
pub fn shots_of(
    carries: Carries,
    count: usize,
    conversations: usize,
    secret: &str,
    run: &str,
    text: impl Fn(usize) -> String,
) -> Vec<Shot> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let conversations = conversations.max(1);
    let message = |i: usize, from: &str| {
        let id = format!("wamid.bench-{run}-{i}");
        match carries.photo_of(i) {
            None => json!({ "from": from, "id": id, "timestamp": now.to_string(),
                            "type": "text", "text": { "body": text(i) } }),
            Some(n) => json!({ "from": from, "id": id,
                "timestamp": now.to_string(), "type": "image",
                "image": { "id": photo_id(n), "mime_type": "image/jpeg",
                           "sha256": "bench", "caption": text(i) } }),
        }
    };
    (0..count)
        .map(|i| {
            let c = i % conversations;
            let from = phone(c);
            let body = json!({
                "object": "whatsapp_business_account",
                "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550100000", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": [{ "profile": { "name": format!("Customer {c}") }, "wa_id": from }],
                    "messages": [message(i, &from)]
                }}]}]
            })
            .to_string();
            let signature = sign(secret, body.as_bytes());
            Shot {
                body: Bytes::from(body),
                signature,
                conversation: c,
            }
        })
        .collect()
}

/// Meta's `X-Hub-Signature-256` of a body (`sha256=` and the hex HMAC), computed here rather
/// than by the gateway's own code, so a test signs as the platform does.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What one request gave.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub index: usize,
    /// When it was due (open loop) or started (closed loop).
    pub due: Instant,
    pub latency: Duration,
    /// The status, or 0 when no answer came.
    pub status: u16,
}

/// Every request of a run.
pub struct LoadResult {
    pub sent: Vec<Sent>,
    pub started: Instant,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn ok(&self) -> usize {
        self.sent
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.sent.len() - self.ok()
    }

    pub fn acks_per_second(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn latencies(&self) -> Vec<Duration> {
        self.sent.iter().map(|s| s.latency).collect()
    }
}

/// A client made for loopback load: no proxy, Nagle off, a connection kept per worker.
pub fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

async fn send(client: &reqwest::Client, url: &str, shot: &Shot) -> u16 {
    let result = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &shot.signature)
        .body(shot.body.clone())
        .send()
        .await;
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            // The body is read so the connection goes back to the pool.
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

/// Sends every shot to `url` with the given shape.
pub async fn drive(
    client: &reqwest::Client,
    url: &str,
    shots: Arc<Vec<Shot>>,
    shape: Shape,
) -> LoadResult {
    let started = Instant::now();
    let mut sent = match shape {
        Shape::Concurrency(n) => closed_loop(client, url, shots, n.max(1)).await,
        Shape::Rate(rate) => open_loop(client, url, shots, rate).await,
    };
    let elapsed = started.elapsed();
    sent.sort_by_key(|s| s.index);
    LoadResult {
        sent,
        started,
        elapsed,
    }
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    shots: Arc<Vec<Shot>>,
    workers: usize,
) -> Vec<Sent> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, url, shots, next) =
            (client.clone(), url.to_string(), shots.clone(), next.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(shot) = shots.get(index) else {
                    return mine;
                };
                let due = Instant::now();
                let status = send(&client, &url, shot).await;
                mine.push(Sent {
                    index,
                    due,
                    latency: due.elapsed(),
                    status,
                });
            }
        });
    }
    let mut all = Vec::with_capacity(shots.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(mine) = done {
            all.extend(mine);
        }
    }
    all
}

async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    shots: Arc<Vec<Shot>>,
    rate: f64,
) -> Vec<Sent> {
    let interval = Duration::try_from_secs_f64(1.0 / rate.max(0.001)).unwrap_or(Duration::ZERO);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..shots.len() {
        let due = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let (client, url, shots) = (client.clone(), url.to_string(), shots.clone());
        let due = due.into_std();
        tasks.spawn(async move {
            let status = match shots.get(index) {
                Some(shot) => send(&client, &url, shot).await,
                None => 0,
            };
            Sent {
                index,
                due,
                latency: due.elapsed(),
                status,
            }
        });
    }
    let mut all = Vec::with_capacity(shots.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(sent) = done {
            all.push(sent);
        }
    }
    all
}

/// The value below which a share `q` (0..=1) of the sorted samples fall.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_hundred() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn signs_as_meta_does() {
        // The shared protocol vectors: Meta's signature of a fixture file's exact bytes.
        let body = include_bytes!("../../../tests/fixtures/protocols/whatsapp_image.json");
        assert_eq!(
            sign("fake-app-secret-0001", body),
            "sha256=d84af336b325df1056d21928059e65dfa8ed95990b8bb02f3cbca9c8256aa2d2"
        );
    }

    #[test]
    fn shots_go_round_robin_with_fresh_ids() {
        let shots = shots(3, 2, "secret", "r1", |i| format!("m{i}"));
        assert_eq!(shots.len(), 3);
        assert_eq!(shots[2].conversation, 0);
        assert_eq!(shots[1].signature, sign("secret", &shots[1].body));
        let body: serde_json::Value = serde_json::from_slice(&shots[1].body).unwrap_or_default();
        let message = &body["entry"][0]["changes"][0]["value"]["messages"][0];
        assert_eq!(message["from"], "15550000001");
        assert_eq!(message["id"], "wamid.bench-r1-1");
        assert_eq!(message["text"]["body"], "m1");
    }
}
