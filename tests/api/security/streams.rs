//! Long-lived connections under attack:
//! - a revoked token keeps its live `/api/v1/events` stream and its concierge stays listed
//!   online (SQLite, Redis, and two instances sharing one Redis): revoked the way
//!   `concierge token revoke` does it, the streams end and the concierge is offline;
//! - streams without a cap: past `max_streams_per_key` web chat streams of one visitor key,
//!   and past `max_streams_per_concierge` event streams of one concierge, a new stream
//!   closes the oldest;
//! - connections without a cap: past `max_connections`, a new connection gets 503;
//! - a client that stops reading its stream (its TCP window full) holds it forever: the
//!   write deadline closes its connection and the stream count goes back down.

use concierge::app::{App, Parts, open_store};
use concierge::config::Config;
use concierge::handoff::access;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Deployment, PATIENCE, eventually, http_client, metric, visitor_key};
use crate::redis_server::{TestRedis, redis};

/// One team, two concierges in it.
const PEOPLE: &str = r#"
[[teams]]
name = "support"

[[concierges]]
name = "ana"
teams = ["support"]

[[concierges]]
name = "carl"
teams = ["support"]
"#;

/// The deployment's configuration, on `redis` when given, with more `overrides`.
fn config(deployment: &Deployment, redis: Option<&TestRedis>, more: &[(&str, &str)]) -> Config {
    let env = |_: &str| None;
    let mut overrides = vec![
        ("CONCIERGE__DELIVERY__INITIAL_BACKOFF_MS", "20"),
        ("CONCIERGE__DELIVERY__MAX_BACKOFF_SECS", "1"),
    ];
    if let Some(redis) = redis {
        overrides.push(("CONCIERGE__STORE__URL", redis.url.as_str()));
        overrides.push(("CONCIERGE__STORE__PREFIX", redis.prefix.as_str()));
        overrides.push(("CONCIERGE__STORE__TAKEOVER_MS", "2000"));
    }
    overrides.extend_from_slice(more);
    let overrides: Vec<(String, String)> = overrides
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_with(&deployment.config_path(), &env, &overrides)
        .unwrap_or_else(|problems| panic!("test config invalid:\n{problems}"))
}

/// One gateway on its own port.
struct Gateway {
    app: App,
    client: reqwest::Client,
}

impl Gateway {
    async fn start(config: Config) -> Gateway {
        let client = http_client();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let app = App::start_with(config, listener, Parts::default())
            .await
            .expect("the gateway starts");
        Gateway { app, client }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.app.addr, path)
    }

    fn metrics(&self) -> String {
        self.app.metrics.render()
    }

    async fn api(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("an API answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A web chat visitor writes.
    async fn visitor_says(&self, key: &str, id: &str, text: &str) {
        let response = self
            .client
            .post(self.url("/webhooks/web"))
            .header("x-webchat-key", key)
            .json(&json!({ "id": id, "text": text }))
            .send()
            .await
            .expect("a webhook answer");
        assert_eq!(response.status(), 200);
    }

    /// `name`'s entry in `/api/v1/concierges`, asked by the holder of `token`.
    async fn listed(&self, token: &str, name: &str) -> Value {
        let (status, body) = self.api(token, "/concierges").await;
        assert_eq!(status, 200, "{body}");
        body["concierges"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    async fn events(&self, token: &str) -> Sse {
        let response = self
            .client
            .get(self.url("/api/v1/events"))
            .bearer_auth(token)
            .send()
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        let mut sse = Sse::new(response);
        sse.until("ready").await;
        sse
    }

    async fn chat(&self, key: &str) -> Sse {
        let response = self
            .client
            .get(self.url(&format!("/chat/web/events?key={key}")))
            .send()
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        Sse::new(response)
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A server-sent event stream that tells an event from the stream's end.
struct Sse {
    body: ByteStream,
    buffer: String,
}

/// What a stream gave next.
#[derive(Debug)]
enum Next {
    Event(String, Value),
    Ended,
}

impl Sse {
    fn new(response: reqwest::Response) -> Sse {
        Sse {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event or the end; panics after [`PATIENCE`] (a deadlock guard).
    async fn next(&mut self) -> Next {
        tokio::time::timeout(PATIENCE, self.read())
            .await
            .expect("an event or the stream's end in time")
    }

    async fn read(&mut self) -> Next {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Next::Event(name, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(_)) | None => return Next::Ended,
            }
        }
    }

    /// The next `wanted` event, skipping others; panics if the stream ends first.
    async fn until(&mut self, wanted: &str) -> Value {
        loop {
            match self.next().await {
                Next::Event(name, data) if name == wanted => return data,
                Next::Event(..) => {}
                Next::Ended => panic!("the stream ended before a `{wanted}` event"),
            }
        }
    }

    /// Reads until the stream ends; the events read on the way.
    async fn until_end(&mut self) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Next::Event(name, data) => seen.push((name, data)),
                Next::Ended => return seen,
            }
        }
    }
}

/// Carl watches his team's events on every gateway; his token is revoked as the CLI does
/// it (the same library call, on a store it opens itself); every stream of his ends, no
/// event reaches him afterwards, and he is listed offline at once.
async fn a_revoked_token_loses_its_streams(gateways: &[Gateway], cli_config: &Config) {
    let first = &gateways[0];
    let carl = access::issue(first.app.store.as_ref(), "carl")
        .await
        .expect("a token");
    let ana = access::issue(first.app.store.as_ref(), "ana")
        .await
        .expect("a token");
    let mut streams = Vec::new();
    for gateway in gateways {
        streams.push(gateway.events(&carl).await);
    }
    let mut watching = first.events(&ana).await;

    // A visitor's question goes to the team: every stream of Carl's hears of it.
    let key = visitor_key("revoked");
    first
        .visitor_says(&key, "m-1", "Do you sponsor the local football club?")
        .await;
    for stream in &mut streams {
        let handoff = stream.until("handoff").await;
        assert_eq!(handoff["team"], "support");
    }
    watching.until("handoff").await;
    for gateway in gateways {
        assert_eq!(gateway.listed(&ana, "carl").await["online"], true);
    }

    let store = open_store(cli_config)
        .await
        .expect("the CLI opens the store");
    assert_eq!(access::revoke(store.as_ref(), "carl").await.unwrap(), 1);

    // Every stream of his ends (within a second; the wait is only a deadlock guard).
    for stream in &mut streams {
        let seen = stream.until_end().await;
        assert!(
            seen.iter().all(|(name, _)| name != "message"),
            "no customer text after the revocation: {seen:?}"
        );
    }
    for gateway in gateways {
        let listed = gateway.listed(&ana, "carl").await;
        assert_eq!(
            (&listed["online"], &listed["status"]),
            (&json!(false), &json!("away")),
            "{listed}"
        );
        assert_eq!(gateway.api(&carl, "/me").await.0, 401);
        let refused = gateway
            .client
            .get(gateway.url("/api/v1/events"))
            .bearer_auth(&carl)
            .send()
            .await
            .expect("an answer");
        assert_eq!(refused.status(), 401);
        eventually("the gateway counts the revoked stream closed", || async {
            metric(
                &gateway.metrics(),
                "concierge_streams_closed_total",
                "kind=\"api\",reason=\"revoked\"",
            ) == 1.0
        })
        .await;
    }
    // The customer's next words still reach the team, not Carl.
    let text = "It is for the under-12s";
    first.visitor_says(&key, "m-2", text).await;
    let message = watching.until("message").await;
    assert_eq!(message["text"], text);
    // Nor does his presence come back: his streams and their heartbeats are gone.
    for gateway in gateways {
        assert_eq!(gateway.listed(&ana, "carl").await["online"], false);
    }
}

#[tokio::test]
async fn a_revoked_token_ends_its_live_stream_and_its_presence_on_sqlite() {
    let deployment = Deployment::new(PEOPLE);
    let config = config(&deployment, None, &[]);
    let gateway = Gateway::start(config.clone()).await;
    a_revoked_token_loses_its_streams(std::slice::from_ref(&gateway), &config).await;
}

#[tokio::test]
async fn a_revoked_token_ends_its_live_streams_on_two_instances_sharing_redis() {
    const NAME: &str = "a_revoked_token_ends_its_live_streams_on_two_instances_sharing_redis";
    let Some(redis) = redis(NAME) else { return };
    let deployment = Deployment::new(PEOPLE);
    let config = config(&deployment, Some(&redis), &[]);
    let gateways = [
        Gateway::start(config.clone()).await,
        Gateway::start(config.clone()).await,
    ];
    a_revoked_token_loses_its_streams(&gateways, &config).await;
}

#[tokio::test]
async fn past_the_cap_a_visitor_keys_newest_stream_closes_its_oldest() {
    let deployment = Deployment::new("");
    let gateway = Gateway::start(config(&deployment, None, &[])).await;
    let key = visitor_key("many-tabs");
    // The default cap is 5: the sixth stream closes the first.
    let mut first = gateway.chat(&key).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(gateway.chat(&key).await);
    }
    first.until_end().await;
    let chat_streams = |text: &str| metric(text, "concierge_streams_open", "kind=\"chat\"");
    eventually("five chat streams are open", || async {
        chat_streams(&gateway.metrics()) == 5.0
    })
    .await;
    assert_eq!(
        metric(
            &gateway.metrics(),
            "concierge_streams_closed_total",
            "kind=\"chat\",reason=\"replaced\""
        ),
        1.0
    );
    // The five newest still get the answers to the visitor; another key is not affected.
    let mut elsewhere = gateway.chat(&visitor_key("one-tab")).await;
    gateway
        .visitor_says(&key, "m-1", "What are your opening hours?")
        .await;
    for stream in &mut others {
        let reply = stream.until("message").await;
        assert_eq!(reply["direction"], "out", "{reply}");
        assert!(reply["text"].as_str().unwrap_or_default().contains("10:30"));
    }
    gateway
        .visitor_says(
            &visitor_key("one-tab"),
            "m-1",
            "What are your opening hours?",
        )
        .await;
    let reply = elsewhere.until("message").await;
    assert_eq!(reply["direction"], "out", "{reply}");
    // Closing them takes them off the count.
    drop((others, elsewhere));
    eventually("no chat stream is left open", || async {
        chat_streams(&gateway.metrics()) == 0.0
    })
    .await;
}

#[tokio::test]
async fn past_the_cap_a_concierges_newest_stream_closes_their_oldest() {
    let deployment = Deployment::new(PEOPLE);
    let gateway = Gateway::start(config(&deployment, None, &[])).await;
    let carl = access::issue(gateway.app.store.as_ref(), "carl")
        .await
        .expect("a token");
    let ana = access::issue(gateway.app.store.as_ref(), "ana")
        .await
        .expect("a token");
    // The default cap is 10: the eleventh stream closes the first.
    let mut first = gateway.events(&carl).await;
    let mut others = Vec::new();
    for _ in 0..10 {
        others.push(gateway.events(&carl).await);
    }
    let mut ana_stream = gateway.events(&ana).await;
    first.until_end().await;
    assert_eq!(
        metric(
            &gateway.metrics(),
            "concierge_streams_closed_total",
            "kind=\"api\",reason=\"replaced\""
        ),
        1.0
    );
    eventually("eleven API streams are open", || async {
        metric(&gateway.metrics(), "concierge_streams_open", "kind=\"api\"") == 11.0
    })
    .await;
    gateway
        .visitor_says(
            &visitor_key("cap"),
            "m-1",
            "Do you sponsor the local football club?",
        )
        .await;
    for stream in others.iter_mut().chain([&mut ana_stream]) {
        stream.until("handoff").await;
    }
    // A replaced stream is not a revoked one: Carl is still online.
    assert_eq!(gateway.listed(&ana, "carl").await["online"], true);
    // Closing them takes them off the count.
    drop((others, ana_stream));
    eventually("no API stream is left open", || async {
        metric(&gateway.metrics(), "concierge_streams_open", "kind=\"api\"") == 0.0
    })
    .await;
}

#[tokio::test]
async fn past_max_connections_a_new_connection_gets_503() {
    let deployment = Deployment::new("");
    let gateway = Gateway::start(config(
        &deployment,
        None,
        &[("CONCIERGE__SERVER__MAX_CONNECTIONS", "3")],
    ))
    .await;
    let open = |gateway: &Gateway| metric(&gateway.metrics(), "concierge_connections_open", "");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tokio::net::TcpStream::connect(gateway.app.addr)
                .await
                .expect("connect"),
        );
    }
    eventually("three connections are open", || async {
        open(&gateway) == 3.0
    })
    .await;

    let mut extra = tokio::net::TcpStream::connect(gateway.app.addr)
        .await
        .expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("send a request");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, extra.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "the connection past the cap is refused: {answer}"
    );
    assert_eq!(open(&gateway), 3.0);
    assert_eq!(
        metric(
            &gateway.metrics(),
            "concierge_http_refused_total",
            "reason=\"too_many_connections\""
        ),
        1.0
    );

    // Once one closes, a new connection is served.
    drop(held.pop());
    eventually("two connections are open", || async {
        open(&gateway) == 2.0
    })
    .await;
    let response = gateway
        .client
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_stream_is_disconnected() {
    let deployment = Deployment::new("");
    let gateway = Gateway::start(config(
        &deployment,
        None,
        &[("CONCIERGE__SERVER__WRITE_TIMEOUT_SECS", "1")],
    ))
    .await;
    // A history of about 4.8 MB, more than the socket buffers and the server's write
    // buffer hold together, replayed at once when the stream opens (each message is stored
    // when its webhook is answered).
    let key = visitor_key("never-reads");
    let text = "\u{1F600}".repeat(4000);
    for i in 0..300 {
        gateway.visitor_says(&key, &format!("m-{i}"), &text).await;
    }
    // A client with a tiny receive window asks for the stream and never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(1024).expect("a small buffer");
    let mut stalled = socket.connect(gateway.app.addr).await.expect("connect");
    stalled
        .write_all(
            format!("GET /chat/web/events?key={key} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send a request");
    let streams = |gateway: &Gateway| {
        metric(
            &gateway.metrics(),
            "concierge_streams_open",
            "kind=\"chat\"",
        )
    };
    eventually("the stream opens", || async { streams(&gateway) >= 1.0 }).await;
    eventually("the stalled stream ends", || async {
        streams(&gateway) == 0.0
    })
    .await;
    assert!(metric(&gateway.metrics(), "concierge_write_timeouts_total", "") >= 1.0);
    // The server closed the connection: reading it now drains what was sent, then ends.
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the stalled connection");
}
