//! The one fake WhatsApp Cloud API of the bench, the chaos run and the load tests: it fails
//! the way the real one does: 429 with a retry-after, a
//! 500, an answer that comes too late, a connection closed after the message was accepted
//! or before it was. Served over raw HTTP/1.1 so a connection can be dropped mid-request.
//! Every message it accepts is recorded (what the customer's phone would show), and its
//! status is reported back to the gateway's webhook, signed, echoing
//! `biz_opaque_callback_data`, retried until the gateway takes it, as Meta does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::KitError;

/// How the platform treats one message send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Accepted and answered with its id.
    None,
    /// Refused with 429 and `Retry-After` (seconds), Meta's throughput error 130429.
    TooMany { retry_after_secs: u64 },
    /// Refused with a 500.
    ServerError,
    /// Accepted, but the answer comes only after `hold` (longer than the gateway waits).
    SlowAnswer { hold: Duration },
    /// Accepted, then the connection is closed without an answer.
    CloseAfterAccept,
    /// The connection is closed before the message is accepted: nothing was sent.
    CloseBeforeAccept,
}

impl Fault {
    /// The kinds a chaos run draws from.
    pub const RANDOM: [Fault; 5] = [
        Fault::TooMany {
            retry_after_secs: 1,
        },
        Fault::ServerError,
        Fault::SlowAnswer {
            hold: Duration::from_secs(4),
        },
        Fault::CloseAfterAccept,
        Fault::CloseBeforeAccept,
    ];
}

/// One message the platform accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub to: String,
    /// The text, or the body as JSON for other kinds.
    pub text: String,
    /// What the gateway gave as `biz_opaque_callback_data`.
    pub callback: Option<String>,
    pub wamid: String,
    pub at: Instant,
}

struct Callbacks {
    url: String,
    secret: String,
}

#[derive(Default)]
struct Inner {
    accepted: Mutex<Vec<Accepted>>,
    script: Mutex<VecDeque<Fault>>,
    /// Share of sends (0..1) failed with a random fault when the script is empty.
    fault_rate: Mutex<f64>,
    callbacks: Mutex<Option<Callbacks>>,
    /// Faults injected, by kind name.
    faults: Mutex<Vec<&'static str>>,
    indicators: AtomicU64,
    /// Bodies that were neither a message nor an indicator.
    unknown: AtomicU64,
    /// How long a message takes to be accepted (work in flight when a sender is killed).
    accept_delay: Mutex<Duration>,
    /// Status webhooks the gateway took (200).
    statuses_delivered: AtomicU64,
    /// Status webhooks still being retried.
    statuses_pending: AtomicU64,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake platform; cheap to clone.
#[derive(Clone)]
pub struct Platform {
    /// The base to configure as the channel's `api_base` (ends in the version segment).
    pub api_base: String,
    inner: Arc<Inner>,
}

impl Platform {
    pub async fn start() -> Result<Platform, KitError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| KitError::Io("bind the fake platform".into(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KitError::Io("read the fake platform's address".into(), e))?;
        let platform = Platform {
            api_base: format!("http://{addr}/v23.0"),
            inner: Arc::new(Inner::default()),
        };
        let serving = platform.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serving.clone().connection(stream));
            }
        });
        Ok(platform)
    }

    /// Report statuses to `url` (the gateway's WhatsApp webhook), signed with `secret`.
    pub fn report_statuses_to(&self, url: &str, secret: &str) {
        *lock(&self.inner.callbacks) = Some(Callbacks {
            url: url.to_string(),
            secret: secret.to_string(),
        });
    }

    /// The next message sends meet these faults, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.script).extend(faults);
    }

    /// Past the script, this share (0..1) of sends meets a random fault.
    pub fn fail_randomly(&self, rate: f64) {
        *lock(&self.inner.fault_rate) = rate.clamp(0.0, 1.0);
    }

    /// Each message send waits this long before it is accepted.
    pub fn delay_accepts(&self, delay: Duration) {
        *lock(&self.inner.accept_delay) = delay;
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        lock(&self.inner.accepted).clone()
    }

    /// How many messages were accepted, without copying them.
    pub fn accepted_count(&self) -> usize {
        lock(&self.inner.accepted).len()
    }

    /// When each message to `recipient` was accepted, in order.
    pub fn accepted_at(&self, recipient: &str) -> Vec<Instant> {
        lock(&self.inner.accepted)
            .iter()
            .filter(|a| a.to == recipient)
            .map(|a| a.at)
            .collect()
    }

    /// Bodies that were neither a message nor an indicator (answered 400).
    pub fn unknown(&self) -> u64 {
        self.inner.unknown.load(Ordering::Relaxed)
    }

    /// The faults injected so far, by kind.
    pub fn faults(&self) -> Vec<&'static str> {
        lock(&self.inner.faults).clone()
    }

    pub fn indicators(&self) -> u64 {
        self.inner.indicators.load(Ordering::Relaxed)
    }

    pub fn statuses_delivered(&self) -> u64 {
        self.inner.statuses_delivered.load(Ordering::Relaxed)
    }

    /// Status webhooks not yet taken by the gateway.
    pub fn statuses_pending(&self) -> u64 {
        self.inner.statuses_pending.load(Ordering::Relaxed)
    }

    fn next_fault(&self) -> Fault {
        if let Some(fault) = lock(&self.inner.script).pop_front() {
            return fault;
        }
        let rate = *lock(&self.inner.fault_rate);
        let mut rng = rand::rng();
        if rate > 0.0 && rng.random_bool(rate) {
            Fault::RANDOM[rng.random_range(0..Fault::RANDOM.len())]
        } else {
            Fault::None
        }
    }

    /// Serves one keep-alive connection until the client or a fault closes it.
    async fn connection(self, mut stream: TcpStream) {
        let mut buffer = Vec::with_capacity(4096);
        loop {
            let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            let post = head.starts_with("POST ");
            let messages = head
                .split_whitespace()
                .nth(1)
                .is_some_and(|path| path.ends_with("/messages"));
            if !post || !messages {
                let _ = write_response(
                    &mut stream,
                    404,
                    &[],
                    r#"{"error":{"message":"unknown path","code":100}}"#,
                )
                .await;
                continue;
            }
            let json: Value = serde_json::from_slice(&body).unwrap_or_default();
            if json.get("status").is_some() {
                // A read receipt or typing indicator: never faulted.
                self.inner.indicators.fetch_add(1, Ordering::Relaxed);
                if write_response(&mut stream, 200, &[], r#"{"success":true}"#)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let fault = self.next_fault();
            if fault != Fault::None {
                lock(&self.inner.faults).push(fault_name(fault));
            }
            match fault {
                Fault::TooMany { retry_after_secs } => {
                    let after = retry_after_secs.to_string();
                    let body = r#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429}}"#;
                    if write_response(&mut stream, 429, &[("retry-after", &after)], body)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Fault::ServerError => {
                    let body = r#"{"error":{"message":"An unknown error occurred","type":"OAuthException","code":1}}"#;
                    if write_response(&mut stream, 500, &[], body).await.is_err() {
                        return;
                    }
                }
                Fault::CloseBeforeAccept => return,
                Fault::None | Fault::SlowAnswer { .. } | Fault::CloseAfterAccept => {
                    let delay = *lock(&self.inner.accept_delay);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let Some(to) = json["to"].as_str() else {
                        self.inner.unknown.fetch_add(1, Ordering::Relaxed);
                        let body = r#"{"error":{"message":"(#100) The parameter to is required.","code":100}}"#;
                        let _ = write_response(&mut stream, 400, &[], body).await;
                        continue;
                    };
                    let wamid = self.accept(to, &json);
                    match fault {
                        Fault::CloseAfterAccept => return,
                        Fault::SlowAnswer { hold } => tokio::time::sleep(hold).await,
                        _ => {}
                    }
                    let answer = json!({
                        "messaging_product": "whatsapp",
                        "contacts": [{ "input": to, "wa_id": to }],
                        "messages": [{ "id": wamid }],
                    })
                    .to_string();
                    if write_response(&mut stream, 200, &[], &answer)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Records a message as the customer's phone would show it and reports its status.
    fn accept(&self, to: &str, body: &Value) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let wamid = format!("wamid.CHAOS{n:010}");
        let text = body["text"]["body"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let callback = body["biz_opaque_callback_data"]
            .as_str()
            .map(str::to_string);
        lock(&self.inner.accepted).push(Accepted {
            to: to.to_string(),
            text,
            callback: callback.clone(),
            wamid: wamid.clone(),
            at: Instant::now(),
        });
        if let Some(callbacks) = lock(&self.inner.callbacks).as_ref() {
            let status = status_webhook(to, &wamid, callback.as_deref());
            let signature = crate::load::sign(&callbacks.secret, status.as_bytes());
            self.inner.statuses_pending.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(report(
                self.inner.clone(),
                callbacks.url.clone(),
                status,
                signature,
            ));
        }
        wamid
    }
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::None => "none",
        Fault::TooMany { .. } => "429",
        Fault::ServerError => "500",
        Fault::SlowAnswer { .. } => "timeout",
        Fault::CloseAfterAccept => "closed_after_accept",
        Fault::CloseBeforeAccept => "closed_before_accept",
    }
}

/// The `sent` status of one message, as Meta posts it.
fn status_webhook(to: &str, wamid: &str, callback: Option<&str>) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut status = json!({
        "id": wamid, "status": "sent", "timestamp": timestamp.to_string(), "recipient_id": to,
    });
    if let (Some(callback), Some(object)) = (callback, status.as_object_mut()) {
        object.insert("biz_opaque_callback_data".into(), callback.into());
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": crate::load::PHONE_NUMBER_ID },
            "statuses": [status],
        }}]}]
    })
    .to_string()
}

/// Posts one status webhook until the gateway answers 200 (for up to ten minutes).
async fn report(inner: Arc<Inner>, url: String, body: String, signature: String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut wait = Duration::from_millis(50);
    while Instant::now() < deadline {
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            inner.statuses_delivered.fetch_add(1, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    inner.statuses_pending.fetch_sub(1, Ordering::Relaxed);
}

/// Reads one request (head and `Content-Length` body) from `stream`; `None` at the end of
/// the connection or on anything this fake does not speak.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buffer.len() < start + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some((head, body))
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}
