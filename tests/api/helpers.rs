//! Starting an app in a temporary deployment folder, and typed helpers to talk to it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use concierge::app::{App, Parts};
use concierge::channels::webchat::ChatEvent;
use concierge::config::Config;
use concierge::orchestrator::Responder;
use concierge::store::SharedStore;
use futures_util::StreamExt;
use tempfile::TempDir;

pub const FAQ: &str = include_str!("../../prompts/faq.md");

/// The token the test deployments set in `[server] metrics_token`, for [`TestApp::metrics`].
pub const METRICS_TOKEN: &str = "test-metrics-token";

/// How long a test waits for something that should happen at once; only a deadlock guard.
pub const PATIENCE: Duration = Duration::from_secs(20);

static INIT: Once = Once::new();

pub(crate) fn init() {
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("TEST_LOG").is_some() {
            concierge::telemetry::init_logs(concierge::telemetry::LogFormat::Human);
        }
    });
}

/// An HTTP client, with the process's TLS provider installed first.
pub fn http_client() -> reqwest::Client {
    init();
    reqwest::Client::new()
}

/// A deployment folder: concierge.toml, channels/web.toml, prompts/faq.md.
pub struct Deployment {
    pub dir: Arc<TempDir>,
}

impl Deployment {
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let deployment = Self { dir: Arc::new(dir) };
        deployment.write_main(extra);
        std::fs::create_dir_all(deployment.path().join("channels")).expect("channels dir");
        std::fs::create_dir_all(deployment.path().join("prompts")).expect("prompts dir");
        std::fs::write(
            deployment.path().join("channels/web.toml"),
            "kind = \"webchat\"\ntitle = \"Test shop\"\n",
        )
        .expect("channel file");
        std::fs::write(deployment.path().join("prompts/faq.md"), FAQ).expect("faq");
        deployment
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("concierge.toml")
    }

    /// Rewrites concierge.toml with `extra` appended to the server and store sections
    /// (`/metrics` served on the public port behind [`METRICS_TOKEN`]).
    /// Each message is answered on its own, with no contact rate limit, unless `extra` sets
    /// a burst window or a rate.
    pub fn write_main(&self, extra: &str) {
        // The signed fixtures are recordings dated 2026-01-01: a limit of ten years keeps them
        // answerable (tests/api/security/stale.rs checks the default limit).
        const FIXTURE_AGE: &str = "max_event_age_secs = 315360000\n";
        let extra = if extra.contains("burst_window_ms") {
            extra.to_string()
        } else if extra.contains("[orchestrator]\n") {
            extra.replacen(
                "[orchestrator]\n",
                "[orchestrator]\nburst_window_ms = 0\n",
                1,
            )
        } else {
            format!("[orchestrator]\nburst_window_ms = 0\n\n{extra}")
        };
        // Nor is any contact rate-limited unless `extra` says so.
        let extra = if extra.contains("contact_turns_per_minute") {
            extra
        } else {
            extra.replacen(
                "[orchestrator]\n",
                "[orchestrator]\ncontact_turns_per_minute = 0\n",
                1,
            )
        };
        let main = format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\nmetrics_token = \"{METRICS_TOKEN}\"\n{FIXTURE_AGE}\n[store]\nurl = \"sqlite:data/test.db\"\nsync = \"normal\"\n\n{extra}\n"
        );
        std::fs::write(self.config_path(), main).expect("concierge.toml");
    }

    /// The deployment's configuration with its store on `redis`, as the environment
    /// overrides set it, with `more` overrides.
    pub fn config_on_redis(
        &self,
        redis: &crate::redis_server::TestRedis,
        more: &[(&str, &str)],
    ) -> Config {
        let env = |_: &str| None;
        let overrides: Vec<(String, String)> = [
            ("CONCIERGE__STORE__URL", redis.url.as_str()),
            ("CONCIERGE__STORE__PREFIX", redis.prefix.as_str()),
        ]
        .iter()
        .chain(more)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::load_with(&self.config_path(), &env, &overrides)
            .unwrap_or_else(|problems| panic!("test config invalid:\n{problems}"))
    }

    pub fn config(&self) -> Config {
        let env = |_: &str| None;
        // Quick retries, so tests of failing sends take milliseconds.
        let overrides = [
            ("CONCIERGE__DELIVERY__INITIAL_BACKOFF_MS", "20"),
            ("CONCIERGE__DELIVERY__MAX_BACKOFF_SECS", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        match Config::load_with(&self.config_path(), &env, &overrides) {
            Ok(config) => config,
            Err(problems) => panic!("test config invalid:\n{problems}"),
        }
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub app: App,
    pub deployment: Deployment,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_in(Deployment::new(""), Parts::default()).await
}

pub async fn spawn_with_responder(responder: Arc<dyn Responder>) -> TestApp {
    spawn_in(
        Deployment::new(""),
        Parts {
            responder: Some(responder),
            ..Parts::default()
        },
    )
    .await
}

/// A gateway with one more channel, `channels/<file>` holding `body`, and an optional
/// responder in place of the configured chain.
pub async fn spawn_with_channel(
    file: &str,
    body: String,
    responder: Option<Arc<dyn Responder>>,
) -> TestApp {
    let deployment = Deployment::new("");
    std::fs::write(deployment.path().join("channels").join(file), body).expect("channel file");
    spawn_in(
        deployment,
        Parts {
            responder,
            ..Parts::default()
        },
    )
    .await
}

pub async fn spawn_in(deployment: Deployment, parts: Parts) -> TestApp {
    let config = deployment.config();
    spawn_with(deployment, config, parts).await
}

/// A gateway of `deployment` started with `config` (its own, changed: on Redis, say).
pub async fn spawn_with(deployment: Deployment, config: Config, parts: Parts) -> TestApp {
    init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app = App::start_with(config, listener, parts)
        .await
        .expect("app starts");
    TestApp {
        addr: app.addr,
        app,
        deployment,
        client: reqwest::Client::new(),
    }
}

/// A visitor key, as the page makes one.
pub fn visitor_key(name: &str) -> String {
    format!("visitor-{name}-0123456789abcdef")
}

/// The id the store gives the conversation of `contact` on `channel` (keyed with the
/// deployment's secret: a test cannot compute it, as nobody else can).
pub async fn conversation_in(
    store: &SharedStore,
    channel: &str,
    contact: &str,
) -> concierge::domain::ConversationId {
    let channel = concierge::domain::ChannelId::parse(channel).expect("a channel id");
    let contact = concierge::domain::ContactId::parse(contact).expect("a contact id");
    store
        .conversation_of(&channel, &contact)
        .await
        .expect("the store answers")
}

/// The conversation of the web chat visitor holding `key`, on the web chat `channel`.
pub async fn visitor_conversation_in(
    store: &SharedStore,
    channel: &str,
    key: &str,
) -> concierge::domain::ConversationId {
    let id = concierge::domain::ChannelId::parse(channel).expect("a channel id");
    let chat = concierge::channels::webchat::Webchat::new(id, Default::default());
    let contact = chat.contact_for_key(key).expect("a visitor key");
    conversation_in(store, channel, contact.as_str()).await
}

impl TestApp {
    /// The id of the conversation of `contact` on `channel`.
    pub async fn conversation(
        &self,
        channel: &str,
        contact: &str,
    ) -> concierge::domain::ConversationId {
        conversation_in(self.store(), channel, contact).await
    }

    /// The id of the conversation of the visitor holding `key` on the `web` channel.
    pub async fn visitor_conversation(&self, key: &str) -> concierge::domain::ConversationId {
        visitor_conversation_in(self.store(), "web", key).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn store(&self) -> &SharedStore {
        &self.app.store
    }

    /// Posts a text as the page does.
    pub async fn post_text(&self, key: &str, id: &str, text: &str) -> reqwest::Response {
        let body = serde_json::json!({ "id": id, "text": text });
        self.client
            .post(self.url("/webhooks/web"))
            .header("x-webchat-key", key)
            .json(&body)
            .send()
            .await
            .expect("post")
    }

    pub async fn open_stream(&self, key: &str) -> ChatStream {
        self.open_stream_after(key, 0).await
    }

    pub async fn open_stream_after(&self, key: &str, after: i64) -> ChatStream {
        let response = self
            .client
            .get(self.url(&format!("/chat/web/events?key={key}&after={after}")))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        ChatStream {
            inner: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Stops the app gracefully and hands back its folder, for a restart.
    pub async fn stop(self) -> Deployment {
        self.app.stop().await.expect("clean stop");
        self.deployment
    }
}

/// Reads one counter's value from the Prometheus text.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && labels.split(',').all(|part| l.contains(part)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// The page's server-sent event stream.
pub struct ChatStream {
    inner: ByteStream,
    buffer: String,
}

impl ChatStream {
    /// The next `message` event, or `None` when none comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<ChatEvent> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// The next `message` event; panics if none comes within [`PATIENCE`].
    pub async fn next(&mut self) -> ChatEvent {
        self.next_within(PATIENCE)
            .await
            .expect("an event on the chat stream")
    }

    async fn next_event(&mut self) -> Option<ChatEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                let is_message = block.lines().any(|l| l == "event: message");
                if is_message && !data.is_empty() {
                    return Some(serde_json::from_str(&data).expect("a chat event"));
                }
                continue;
            }
            let chunk = self.inner.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Waits until `check` holds, polling; panics after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until a reply of the conversation is marked sent.
pub async fn until_a_reply_is_sent(
    store: &SharedStore,
    conversation: &concierge::domain::ConversationId,
) {
    eventually("a reply is marked sent", || async {
        store
            .messages(conversation, 0, 100)
            .await
            .unwrap()
            .iter()
            .any(|m| m.status == concierge::domain::DeliveryStatus::Sent)
    })
    .await;
}

/// The first reply of the conversation.
pub async fn first_reply(
    store: &SharedStore,
    conversation: &concierge::domain::ConversationId,
) -> concierge::domain::Message {
    store
        .messages(conversation, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.direction == concierge::domain::Direction::Outbound)
        .expect("a reply")
}

/// Waits for the conversation's first message from the customer, and returns it.
pub async fn first_inbound(
    store: &SharedStore,
    conversation: &concierge::domain::ConversationId,
) -> concierge::domain::Message {
    let mut found = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while found.is_none() && tokio::time::Instant::now() < deadline {
        found = store
            .messages(conversation, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.direction == concierge::domain::Direction::Inbound);
        if found.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    found.expect("the customer's message is stored")
}
