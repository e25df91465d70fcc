//! The one fake platform of the tests, the bench and the chaos run: the Graph API (WhatsApp
//! Cloud), the Telegram Bot API, Twilio and a BlueBubbles server, on one port, over raw
//! HTTP/1.1 so that a connection can be dropped mid-request.
//!
//! Every request is recorded, so a test can assert on every byte the gateway sent. Each
//! send (not a receipt, typing indicator, lookup or Telegram side call) meets the next
//! [`Fault`] of a script, or past it a random one at a set rate, else is accepted: a
//! scripted answer (a status, body and `Retry-After`: a 429, a 500, a Telegram
//! `{"ok":false,…}`, a Graph error code), an answer held past the gateway's timeout, a
//! connection closed after the message was accepted or before it was. Every message the
//! Graph API accepts is kept (what the customer's phone would show), and its status is
//! reported back to the gateway's webhook, signed, echoing `biz_opaque_callback_data`,
//! retried until the gateway takes it, as Meta does.

mod http1;
mod multipart;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::KitError;
pub use multipart::{FilePart, Form};

/// A file Twilio fetched from a `MediaUrl` it was given: the URL, the answer's status, type
/// and bytes.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub mime: Option<String>,
    pub bytes: Bytes,
}

/// One request the platform received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// The path without its query, still percent-encoded.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON; a multipart form's text fields as an object.
    pub fn json(&self) -> Value {
        match multipart::read(&self.headers, &self.body) {
            Some(form) => Value::Object(
                form.fields
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            ),
            None => serde_json::from_slice(&self.body).unwrap_or(Value::Null),
        }
    }
}

/// One scripted answer to a send, given as is (the message is not accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        retry_after: None,
    }
}

/// How the platform treats one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Accepted and answered with its id.
    None,
    /// Answered with this status and body, not accepted: an error of the platform's own.
    Answer(Answer),
    /// Accepted, but the answer comes only after `hold` (longer than the gateway waits).
    SlowAnswer { hold: Duration },
    /// Accepted, then the connection is closed without an answer.
    CloseAfterAccept,
    /// The connection is closed before the message is accepted: nothing was sent.
    CloseBeforeAccept,
}

impl Fault {
    /// Refused with 429 and `Retry-After`, as Meta's throughput error 130429.
    pub fn too_many(retry_after_secs: u64) -> Fault {
        Fault::Answer(Answer {
            retry_after: Some(retry_after_secs),
            ..answer(
                429,
                r#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429}}"#,
            )
        })
    }

    /// Refused with a 500, as the Graph API's unknown error.
    pub fn server_error() -> Fault {
        Fault::Answer(answer(
            500,
            r#"{"error":{"message":"An unknown error occurred","type":"OAuthException","code":1}}"#,
        ))
    }

    /// One of the kinds a chaos run draws from.
    fn random(rng: &mut impl Rng) -> Fault {
        match rng.random_range(0..5) {
            0 => Fault::too_many(1),
            1 => Fault::server_error(),
            2 => Fault::SlowAnswer {
                hold: Duration::from_secs(4),
            },
            3 => Fault::CloseAfterAccept,
            _ => Fault::CloseBeforeAccept,
        }
    }

    /// Its kind, as [`FakeApi::faults`] counts it; `None` for no fault (a 2xx answer is one).
    fn kind(&self) -> Option<&'static str> {
        match self {
            Fault::None => None,
            Fault::Answer(answer) => match answer.status {
                200..=299 => None,
                429 => Some("429"),
                500 => Some("500"),
                501.. => Some("5xx"),
                _ => Some("4xx"),
            },
            Fault::SlowAnswer { .. } => Some("timeout"),
            Fault::CloseAfterAccept => Some("closed_after_accept"),
            Fault::CloseBeforeAccept => Some("closed_before_accept"),
        }
    }
}

impl From<Answer> for Fault {
    fn from(answer: Answer) -> Fault {
        Fault::Answer(answer)
    }
}

/// One message the Graph API accepted.
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

/// What the platform was told and what it saw.
#[derive(Default)]
struct State {
    /// Every request, in the order it came.
    requests: Vec<Recorded>,
    /// The templates of the Business account (`GET /{waba_id}/message_templates`).
    templates: Vec<Value>,
    /// The messages the Graph API accepted, in order.
    accepted: Vec<Accepted>,
    /// Faults met, by kind.
    faults: Vec<&'static str>,
    script: VecDeque<Fault>,
    /// Share of sends (0..1) failed with a random fault when the script is empty.
    fault_rate: f64,
    /// How long a send takes to be accepted (work in flight when a sender is killed).
    accept_delay: Duration,
    callbacks: Option<Callbacks>,
    /// Telegram updates served by getUpdates.
    updates: Vec<Value>,
    /// Media served by id (a Graph media id, a Telegram file id, a Twilio media sid, a
    /// BlueBubbles attachment guid): its type and bytes. Others get `FAKE-JPEG-BYTES`.
    media: std::collections::HashMap<String, (String, Bytes)>,
    /// Downloads of a media id still to fail with a 500.
    media_failures: std::collections::HashMap<String, usize>,
    /// How long a download of a media id takes before its answer.
    media_delays: std::collections::HashMap<String, Duration>,
    /// Multipart requests (uploads and file sends), by path, in order.
    uploads: Vec<(String, Form)>,
    /// What Twilio fetched of the media URLs it was sent.
    fetched: Vec<Fetched>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Receipts and typing indicators.
    indicators: AtomicU64,
    /// Graph sends with no recipient (answered 400).
    unknown: AtomicU64,
    /// Status webhooks the gateway took (200).
    statuses_delivered: AtomicU64,
    /// Status webhooks still being retried.
    statuses_pending: AtomicU64,
    next_id: AtomicU64,
    /// Posts the status webhooks: one client for every report (building one per status,
    /// its TLS roots each time, costs more than the gateway spends on the status). Made on
    /// first use, inside the runtime of the test.
    reporter: std::sync::OnceLock<reqwest::Client>,
}

/// Which platform a send is for, by its path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Graph,
    Telegram,
    Twilio,
    BlueBubbles,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        if path.starts_with("/bot") {
            Some(Route::Telegram)
        } else if path.ends_with("/messages") {
            Some(Route::Graph)
        } else if path.ends_with("/Messages.json") {
            Some(Route::Twilio)
        } else if path.starts_with("/api/v1/") {
            Some(Route::BlueBubbles)
        } else {
            None
        }
    }
}

/// What the platform does with one request.
enum Reply {
    Json(Answer),
    Media { mime: String, bytes: Bytes },
    Close,
}

fn ok(body: Value) -> Reply {
    Reply::Json(answer(200, &body.to_string()))
}

/// The fake platform; cheap to clone.
#[derive(Clone)]
pub struct FakeApi {
    /// The base to configure as a channel's API base (the Graph API's version segment not
    /// included: see [`FakeApi::graph_api_base`]).
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeApi {
    pub async fn start() -> Result<FakeApi, KitError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| KitError::Io("bind the fake platform".into(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KitError::Io("read the fake platform's address".into(), e))?;
        let platform = FakeApi {
            url: format!("http://{addr}"),
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

    /// The base of the Graph API, version included, for a WhatsApp channel's `api_base`.
    pub fn graph_api_base(&self) -> String {
        format!("{}/v23.0", self.url)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Report the statuses of Graph sends to `url` (the gateway's WhatsApp webhook), signed
    /// with `secret`.
    pub fn report_statuses_to(&self, url: &str, secret: &str) {
        self.state().callbacks = Some(Callbacks {
            url: url.to_string(),
            secret: secret.to_string(),
        });
    }

    /// The next sends meet these, in order: [`Answer`]s or [`Fault`]s.
    pub fn script<F: Into<Fault>>(&self, faults: impl IntoIterator<Item = F>) {
        self.state()
            .script
            .extend(faults.into_iter().map(Into::into));
    }

    /// Past the script, this share (0..1) of sends meets a random fault.
    pub fn fail_randomly(&self, rate: f64) {
        self.state().fault_rate = rate.clamp(0.0, 1.0);
    }

    /// Each send waits this long before it is accepted.
    pub fn delay_accepts(&self, delay: Duration) {
        self.state().accept_delay = delay;
    }

    /// Adds Telegram updates for getUpdates to serve.
    pub fn push_updates(&self, updates: Vec<Value>) {
        self.state().updates.extend(updates);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The POSTs `keep` keeps.
    fn posts(&self, keep: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == Method::POST && keep(r))
            .cloned()
            .collect()
    }

    /// The JSON bodies of Graph message sends (read receipts left out).
    pub fn sends(&self) -> Vec<Value> {
        self.graph_posts(false)
    }

    /// The read-and-typing receipts sent to the Graph API.
    pub fn receipts(&self) -> Vec<Value> {
        self.graph_posts(true)
    }

    fn graph_posts(&self, receipts: bool) -> Vec<Value> {
        self.posts(|r| r.path.ends_with("/messages"))
            .iter()
            .map(Recorded::json)
            .filter(|b| b.get("status").is_some() == receipts)
            .collect()
    }

    /// The form bodies of Twilio message creations.
    pub fn forms(&self) -> Vec<Vec<(String, String)>> {
        self.posts(|r| r.path.ends_with("/Messages.json"))
            .iter()
            .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap_or_default())
            .collect()
    }

    /// The JSON bodies sent to a BlueBubbles server's message routes, with their paths.
    pub fn bluebubbles_sends(&self) -> Vec<(String, Value)> {
        self.posts(|r| r.path.starts_with("/api/v1/message/"))
            .into_iter()
            .map(|r| (r.path.clone(), r.json()))
            .collect()
    }

    /// Telegram Bot API calls: the method and its JSON body.
    pub fn telegram_calls(&self) -> Vec<(String, Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/bot"))
            .map(|r| {
                let method = r.path.rsplit('/').next().unwrap_or_default().to_string();
                (method, r.json())
            })
            .collect()
    }

    /// The messages the Graph API accepted.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.state().accepted.clone()
    }

    /// How many messages the Graph API accepted, without copying them.
    pub fn accepted_count(&self) -> usize {
        self.state().accepted.len()
    }

    /// When each message to `recipient` was accepted, in order.
    pub fn accepted_at(&self, recipient: &str) -> Vec<Instant> {
        self.state()
            .accepted
            .iter()
            .filter(|a| a.to == recipient)
            .map(|a| a.at)
            .collect()
    }

    /// Graph sends that named no recipient (answered 400).
    pub fn unknown(&self) -> u64 {
        self.inner.unknown.load(Ordering::Relaxed)
    }

    /// The faults met so far, by kind.
    pub fn faults(&self) -> Vec<&'static str> {
        self.state().faults.clone()
    }

    /// Receipts and typing indicators received.
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

    /// Serves one keep-alive connection until the client or a fault closes it.
    async fn connection(self, mut stream: TcpStream) {
        let mut buffer = Vec::with_capacity(4096);
        while let Some(request) = http1::read_request(&mut stream, &mut buffer).await {
            let request = Recorded {
                method: request.method,
                path: request.path,
                headers: request.headers,
                body: Bytes::from(request.body),
            };
            self.state().requests.push(request.clone());
            let written = match self.reply(&request).await {
                Reply::Close => return,
                Reply::Media { mime, bytes } => {
                    let headers = [("content-type", mime)];
                    http1::write_response(&mut stream, 200, &headers, &bytes).await
                }
                Reply::Json(answer) => {
                    let mut headers = vec![("content-type", "application/json".to_string())];
                    if let Some(after) = answer.retry_after {
                        headers.push(("retry-after", after.to_string()));
                    }
                    let body = answer.body.as_bytes();
                    http1::write_response(&mut stream, answer.status, &headers, body).await
                }
            };
            if written.is_err() {
                return;
            }
        }
    }

    async fn reply(&self, request: &Recorded) -> Reply {
        if request.method == Method::GET {
            let delay = {
                let state = self.state();
                state
                    .media_delays
                    .iter()
                    .find(|(id, _)| {
                        request.path.starts_with("/download/")
                            && request.path.ends_with(id.as_str())
                    })
                    .map(|(_, delay)| *delay)
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if request.path.contains("/message_templates") {
                let templates = self.state().templates.clone();
                return ok(json!({ "data": templates, "paging": { "cursors": {} } }));
            }
            return self.lookup(&request.path);
        }
        let path = request.path.as_str();
        let form = multipart::read(&request.headers, &request.body);
        if let Some(form) = &form {
            self.state().uploads.push((path.to_string(), form.clone()));
        }
        let json = request.json();
        if let Some(form) = &form
            && path.starts_with("/v")
            && path.ends_with("/media")
        {
            return self.graph_upload(form);
        }
        if path.ends_with("/Indicators/Typing.json")
            || path.starts_with("/api/v1/chat/")
            || json.get("status").is_some()
        {
            // A read receipt or typing indicator: never faulted.
            self.inner.indicators.fetch_add(1, Ordering::Relaxed);
            return ok(json!({ "success": true }));
        }
        let Some(route) = Route::of(path) else {
            return Reply::Json(answer(
                404,
                r#"{"error":{"message":"unknown path","code":100}}"#,
            ));
        };
        if route == Route::Telegram
            && let Some(reply) = self.telegram_side_call(path, &json).await
        {
            return reply;
        }
        let media_url = (route == Route::Twilio)
            .then(|| {
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(&request.body)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == "MediaUrl")
                    .map(|(_, v)| v)
            })
            .flatten();
        let reply = self.send(route, &json).await;
        if let (Some(url), Reply::Json(answer)) = (media_url, &reply)
            && (200..300).contains(&answer.status)
        {
            // As Twilio does: the file is fetched from the URL once the message is taken.
            tokio::spawn(self.clone().fetch_media_url(url));
        }
        reply
    }

    /// A Graph API media upload: kept under a new id, served from it, answered with it.
    fn graph_upload(&self, form: &Form) -> Reply {
        let Some(file) = form.files.iter().find(|f| f.field == "file") else {
            return Reply::Json(answer(
                400,
                r#"{"error":{"message":"(#100) The parameter file is required.","code":100}}"#,
            ));
        };
        if form.field("messaging_product") != Some("whatsapp") {
            return Reply::Json(answer(
                400,
                r#"{"error":{"message":"(#100) The parameter messaging_product is required.","code":100}}"#,
            ));
        }
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("UPLOAD-{n}");
        let mime = form
            .field("type")
            .or(file.mime.as_deref())
            .unwrap_or("application/octet-stream")
            .to_string();
        self.state()
            .media
            .insert(id.clone(), (mime, file.bytes.clone()));
        ok(json!({ "id": id }))
    }

    async fn fetch_media_url(self, url: String) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let fetched = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let mime = response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bytes = response.bytes().await.unwrap_or_default();
                Fetched {
                    url,
                    status,
                    mime,
                    bytes,
                }
            }
            Err(_) => Fetched {
                url,
                status: 0,
                mime: None,
                bytes: Bytes::new(),
            },
        };
        self.state().fetched.push(fetched);
    }

    /// The multipart requests (uploads, files sent) by path, in order.
    pub fn uploads(&self) -> Vec<(String, Form)> {
        self.state().uploads.clone()
    }

    /// What was fetched of the `MediaUrl`s Twilio was sent.
    pub fn fetched(&self) -> Vec<Fetched> {
        self.state().fetched.clone()
    }

    /// The bytes of media served under `id` (an upload's, or one set by `serve_media`).
    pub fn media(&self, id: &str) -> Option<(String, Bytes)> {
        self.state().media.get(id).cloned()
    }

    /// A media lookup (Graph: its download URL) or download (all platforms).
    fn lookup(&self, path: &str) -> Reply {
        let download = if let Some(id) = path.strip_prefix("/download/") {
            Some(id)
        } else if let Some(rest) = path.strip_suffix("/download") {
            Some(rest.rsplit('/').next().unwrap_or_default())
        } else if path.starts_with("/file/") {
            Some(path.rsplit('/').next().unwrap_or_default())
        } else {
            None
        };
        if let Some(id) = download {
            let mut state = self.state();
            if let Some(left) = state.media_failures.get_mut(id)
                && *left > 0
            {
                *left -= 1;
                return Reply::Json(answer(500, r#"{"error":"media server error"}"#));
            }
            return match state.media.get(id) {
                Some((mime, bytes)) => Reply::Media {
                    mime: mime.clone(),
                    bytes: bytes.clone(),
                },
                None => Reply::Media {
                    mime: "image/jpeg".to_string(),
                    bytes: Bytes::from_static(b"FAKE-JPEG-BYTES"),
                },
            };
        }
        let id = path.rsplit('/').next().unwrap_or_default();
        if id == "missing" {
            return Reply::Json(answer(404, "{}"));
        }
        let (mime, size) = match self.state().media.get(id) {
            Some((mime, bytes)) => (mime.clone(), bytes.len()),
            None => ("image/jpeg".to_string(), 15),
        };
        ok(json!({
            "messaging_product": "whatsapp",
            "url": format!("{}/download/{id}", self.url),
            "mime_type": mime,
            "sha256": "fa4e",
            "file_size": size.to_string(),
            "id": id,
        }))
    }

    /// The Business account's templates, as `GET /{waba_id}/message_templates` lists them.
    pub fn serve_templates(&self, templates: Vec<Value>) {
        self.state().templates = templates;
    }

    /// Serves `bytes` as media `id` (of type `mime`) from now on.
    pub fn serve_media(&self, id: &str, mime: &str, bytes: impl Into<Bytes>) {
        self.state()
            .media
            .insert(id.to_string(), (mime.to_string(), bytes.into()));
    }

    /// Each download of media `id` takes `delay` before it is answered.
    pub fn slow_media(&self, id: &str, delay: Duration) {
        self.state().media_delays.insert(id.to_string(), delay);
    }

    /// The next `times` downloads of media `id` fail with a 500.
    pub fn fail_media(&self, id: &str, times: usize) {
        self.state().media_failures.insert(id.to_string(), times);
    }

    /// The downloads of media `id` the platform was asked for.
    pub fn media_downloads(&self, id: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| {
                r.method == Method::GET
                    && (r.path.ends_with(&format!("/{id}"))
                        || r.path.ends_with(&format!("/{id}/download")))
                    && (r.path.starts_with("/download/")
                        || r.path.starts_with("/file/")
                        || r.path.ends_with("/download"))
            })
            .count()
    }

    /// The Bot API calls that are not sends: never scripted.
    async fn telegram_side_call(&self, path: &str, json: &Value) -> Option<Reply> {
        let method = path.rsplit('/').next().unwrap_or_default();
        let result = match method {
            "getUpdates" => {
                // Like Telegram: every update from the offset on, until confirmed by a later
                // offset.
                let offset = json.get("offset").and_then(Value::as_i64).unwrap_or(0);
                let pending: Vec<Value> = self
                    .state()
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                    .cloned()
                    .collect();
                if pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                json!(pending)
            }
            "setWebhook" => {
                return Some(ok(
                    json!({ "ok": true, "result": true, "description": "Webhook was set" }),
                ));
            }
            "getFile" => {
                let id = json["file_id"].as_str().unwrap_or("f").to_string();
                match self.state().media.get(&id) {
                    Some((_, bytes)) => {
                        json!({ "file_id": id, "file_unique_id": "u", "file_size": bytes.len(), "file_path": format!("media/{id}") })
                    }
                    None => {
                        json!({ "file_id": "f", "file_unique_id": "u", "file_size": 15, "file_path": "photos/file_1.jpg" })
                    }
                }
            }
            "sendChatAction" | "answerCallbackQuery" => json!(true),
            _ => return None,
        };
        Some(ok(json!({ "ok": true, "result": result })))
    }

    fn next_fault(&self) -> Fault {
        let mut state = self.state();
        if let Some(fault) = state.script.pop_front() {
            return fault;
        }
        let mut rng = rand::rng();
        if state.fault_rate > 0.0 && rng.random_bool(state.fault_rate) {
            Fault::random(&mut rng)
        } else {
            Fault::None
        }
    }

    /// One send: meets the next fault, else is accepted and answered as `route` does.
    async fn send(&self, route: Route, json: &Value) -> Reply {
        let fault = self.next_fault();
        if let Some(kind) = fault.kind() {
            self.state().faults.push(kind);
        }
        match fault {
            Fault::Answer(answer) => return Reply::Json(answer),
            Fault::CloseBeforeAccept => return Reply::Close,
            Fault::None | Fault::SlowAnswer { .. } | Fault::CloseAfterAccept => {}
        }
        let delay = self.state().accept_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some(body) = self.accept(route, json) else {
            self.inner.unknown.fetch_add(1, Ordering::Relaxed);
            return Reply::Json(answer(
                400,
                r#"{"error":{"message":"(#100) The parameter to is required.","code":100}}"#,
            ));
        };
        match fault {
            Fault::CloseAfterAccept => return Reply::Close,
            Fault::SlowAnswer { hold } => tokio::time::sleep(hold).await,
            _ => {}
        }
        ok(body)
    }

    /// Accepts a send: its answer, `None` for a Graph send to nobody.
    fn accept(&self, route: Route, json: &Value) -> Option<Value> {
        if route == Route::Graph {
            let to = json.get("to").or_else(|| json.get("recipient"))?.as_str()?;
            let wamid = self.accept_graph(to, json);
            return Some(json!({
                "messaging_product": "whatsapp",
                "contacts": [{ "input": to, "wa_id": to }],
                "messages": [{ "id": wamid }],
            }));
        }
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        Some(match route {
            Route::Telegram => json!({ "ok": true, "result": {
                "message_id": 7000 + n, "date": 0,
                "chat": { "id": json.get("chat_id").cloned().unwrap_or_default(), "type": "private" },
            }}),
            Route::Twilio => json!({ "sid": format!("SMOUT{n:030}"), "status": "queued" }),
            _ => {
                json!({ "status": 200, "message": "Message sent!", "data": { "guid": format!("BBOUT-{n}") } })
            }
        })
    }

    /// Records a message as the customer's phone would show it and reports its status.
    fn accept_graph(&self, to: &str, body: &Value) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let wamid = format!("wamid.OUT-{n}");
        let text = body["text"]["body"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let callback = body["biz_opaque_callback_data"]
            .as_str()
            .map(str::to_string);
        let mut state = self.state();
        state.accepted.push(Accepted {
            to: to.to_string(),
            text,
            callback: callback.clone(),
            wamid: wamid.clone(),
            at: Instant::now(),
        });
        if let Some(callbacks) = state.callbacks.as_ref() {
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
    let client = inner.reporter.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    });
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends `request` on a new connection; all the platform wrote before closing it.
    async fn exchange(platform: &FakeApi, request: &str) -> String {
        let address = platform.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn a_chunked_body_is_recorded_whole() {
        let platform = FakeApi::start().await.unwrap();
        let answer = exchange(
            &platform,
            "POST /2010-04-01/Accounts/AC1/Messages.json?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nTo=a&\r\n6\r\nBody=b\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\"sid\":\"SMOUT"), "{answer}");
        let forms = platform.forms();
        assert_eq!(
            forms,
            [vec![
                ("To".to_string(), "a".to_string()),
                ("Body".to_string(), "b".to_string())
            ]]
        );
        assert_eq!(
            platform.requests()[0].path,
            "/2010-04-01/Accounts/AC1/Messages.json"
        );
    }

    #[tokio::test]
    async fn sends_meet_the_script_in_order_and_indicators_never_do() {
        let platform = FakeApi::start().await.unwrap();
        platform.script([Fault::CloseBeforeAccept, Fault::too_many(3)]);
        let send = |body: &str| {
            format!(
                "POST /v23.0/1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let receipt = exchange(&platform, &send(r#"{"status":"read"}"#)).await;
        assert!(receipt.contains(r#"{"success":true}"#), "{receipt}");
        let closed = exchange(&platform, &send(r#"{"to":"1555"}"#)).await;
        assert_eq!(closed, "");
        let refused = exchange(&platform, &send(r#"{"to":"1555"}"#)).await;
        assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
        assert!(refused.contains("retry-after: 3\r\n"), "{refused}");
        let sent = exchange(&platform, &send(r#"{"to":"1555","text":{"body":"hi"}}"#)).await;
        assert!(sent.contains("wamid.OUT-1"), "{sent}");
        assert_eq!(platform.faults(), ["closed_before_accept", "429"]);
        assert_eq!(platform.indicators(), 1);
        let accepted = platform.accepted();
        assert_eq!((accepted.len(), accepted[0].text.as_str()), (1, "hi"));
        assert_eq!(platform.sends().len(), 3);
        assert_eq!(platform.receipts().len(), 1);
    }
}
