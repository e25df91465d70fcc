//! Abuse of the HTTP port: heads sent a byte at a time (slow-loris), bodies that trickle,
//! bodies and heads too large. Each is refused (disconnected, 408, 413, 431) and counted on
//! `/metrics`, and a valid webhook sent alongside or after is still stored and answered.
//! Small limits keep the tests short; only behaviour is asserted, never speed.

use std::net::SocketAddr;
use std::time::Duration;

use concierge::app::Parts;
use concierge::domain::ConversationId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Deployment, METRICS_TOKEN, PATIENCE, TestApp, eventually, first_inbound, metric, spawn_in,
    until_a_reply_is_sent, visitor_key,
};

/// The limits under test: one second for a head or a body, 4 KiB for either.
const LIMITS: &str = "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nmax_header_bytes = 4096\nbody_limit_bytes = 4096\n";

async fn start() -> TestApp {
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.config_path(),
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\nmetrics_token = \"{METRICS_TOKEN}\"\n{LIMITS}\n[store]\nurl = \"sqlite:data/test.db\"\nsync = \"normal\"\n\n[orchestrator]\nburst_window_ms = 0\n"
        ),
    )
    .expect("concierge.toml");
    spawn_in(deployment, Parts::default()).await
}

async fn web_conversation(store: &concierge::store::SharedStore, key: &str) -> ConversationId {
    crate::helpers::visitor_conversation_in(store, "web", key).await
}

/// A webhook from a new visitor is acknowledged, stored and answered.
async fn a_valid_webhook_is_answered(app: &TestApp, visitor: &str) {
    let key = visitor_key(visitor);
    let response = app
        .client
        .post(app.url("/webhooks/web"))
        .header("x-webchat-key", &key)
        .json(&serde_json::json!({ "id": "m1", "text": "What are your opening hours?" }))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("the webhook is answered");
    assert_eq!(response.status(), 200, "{visitor}");
    let conversation = web_conversation(app.store(), &key).await;
    first_inbound(app.store(), &conversation).await;
    until_a_reply_is_sent(app.store(), &conversation).await;
}

async fn refused(app: &TestApp, reason: &str) -> f64 {
    metric(
        &app.metrics().await,
        "concierge_http_refused_total",
        &format!("reason=\"{reason}\""),
    )
}

/// How a raw connection ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// Closed by the server (or reset) without a byte of answer.
    Disconnected,
    /// The server answered: the first line of its answer.
    Answered(String),
    /// Still open after [`PATIENCE`].
    StillOpen,
}

/// Waits for the server's answer or for the connection's end.
async fn ending(read: &mut (impl AsyncReadExt + Unpin)) -> Ended {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(2).any(|w| w == b"\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    if outcome.is_err() {
        return Ended::StillOpen;
    }
    if got.is_empty() {
        return Ended::Disconnected;
    }
    let text = String::from_utf8_lossy(&got);
    Ended::Answered(text.lines().next().unwrap_or_default().to_string())
}

/// A client that sends a request's head one byte every 300 ms and never finishes it.
async fn slow_loris(addr: SocketAddr) -> Ended {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = b"POST /webhooks/web HTTP/1.1\r\nHost: concierge\r\nX-Webchat-Key: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let ended = ending(&mut read).await;
    writer.abort();
    ended
}

#[tokio::test]
async fn slow_loris_clients_are_disconnected_while_webhooks_are_answered() {
    let app = start().await;
    let addr = app.addr;
    let clients: Vec<_> = (0..50).map(|_| tokio::spawn(slow_loris(addr))).collect();
    // Give them time to connect and start trickling, then write as customers do.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        a_valid_webhook_is_answered(&app, &format!("during-{i}")).await;
    }
    for client in clients {
        assert_eq!(client.await.unwrap(), Ended::Disconnected);
    }
    // Counted as hyper gives the connection up, which may end just after the client saw it.
    let app_ref = &app;
    eventually("the 50 are counted", || async move {
        refused(app_ref, "header_timeout").await >= 50.0
    })
    .await;
    a_valid_webhook_is_answered(&app, "after").await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_without_being_counted() {
    let app = start().await;
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (mut read, _write) = stream.into_split();
    assert_eq!(ending(&mut read).await, Ended::Disconnected);
    assert_eq!(refused(&app, "header_timeout").await, 0.0);
}

#[tokio::test]
async fn a_trickling_body_is_cut_with_408() {
    let app = start().await;
    let key = visitor_key("trickle");
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /webhooks/web HTTP/1.1\r\nHost: concierge\r\nContent-Type: application/json\r\nX-Webchat-Key: {key}\r\nContent-Length: 200\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let body = br#"{"id":"t1","text":"What are your opening hours?"}"#;
        for byte in body.iter().chain(std::iter::repeat(&b' ')) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let ended = ending(&mut read).await;
    writer.abort();
    assert_eq!(
        ended,
        Ended::Answered("HTTP/1.1 408 Request Timeout".into())
    );
    assert_eq!(refused(&app, "body_timeout").await, 1.0);
    // Nothing of it was stored.
    let messages = app
        .store()
        .messages(&web_conversation(app.store(), &key).await, 0, 10)
        .await
        .unwrap();
    assert!(messages.is_empty(), "{messages:?}");
    a_valid_webhook_is_answered(&app, "after-trickle").await;
}

/// Sends `head` (and `body`) on a new connection, and waits for the answer or the end.
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> Ended {
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    // The server may refuse before everything is written: a failed write is its answer.
    if write.write_all(head.as_bytes()).await.is_ok() {
        let _ = write.write_all(body).await;
    }
    let ended = ending(&mut read).await;
    drop(write);
    ended
}

#[tokio::test]
async fn an_oversized_body_gets_413_whether_declared_or_chunked() {
    let app = start().await;
    let key = visitor_key("big");
    // Declared: refused on the Content-Length alone, before a byte of it is read.
    let declared = format!(
        "POST /webhooks/web HTTP/1.1\r\nHost: concierge\r\nContent-Type: application/json\r\nX-Webchat-Key: {key}\r\nContent-Length: 5000\r\n\r\n"
    );
    assert_eq!(
        raw(&app, &declared, b"").await,
        Ended::Answered("HTTP/1.1 413 Payload Too Large".into())
    );
    // Chunked: refused once more than the limit has arrived.
    let chunked = format!(
        "POST /webhooks/web HTTP/1.1\r\nHost: concierge\r\nContent-Type: application/json\r\nX-Webchat-Key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut body = format!("{:x}\r\n", 5000).into_bytes();
    body.extend(std::iter::repeat_n(b' ', 5000));
    body.extend_from_slice(b"\r\n");
    assert_eq!(
        raw(&app, &chunked, &body).await,
        Ended::Answered("HTTP/1.1 413 Payload Too Large".into())
    );
    assert_eq!(refused(&app, "body_too_large").await, 2.0);
    let messages = app
        .store()
        .messages(&web_conversation(app.store(), &key).await, 0, 10)
        .await
        .unwrap();
    assert!(messages.is_empty(), "{messages:?}");
    a_valid_webhook_is_answered(&app, "after-big-body").await;
}

#[tokio::test]
async fn oversized_header_blocks_are_refused() {
    let app = start().await;
    // One header too long, then too many small ones: each is 431 (or the connection is
    // closed, if the server stops reading first).
    let long = format!(
        "GET /healthz HTTP/1.1\r\nHost: concierge\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(6000)
    );
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: concierge\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for head in [long, many] {
        let ended = raw(&app, &head, b"").await;
        assert!(
            ended == Ended::Answered("HTTP/1.1 431 Request Header Fields Too Large".into())
                || ended == Ended::Disconnected,
            "{ended:?}"
        );
    }
    let app_ref = &app;
    eventually("both are counted", || async move {
        refused(app_ref, "headers_too_large").await == 2.0
    })
    .await;
    // A head within the limits is served on the same port.
    let fine = raw(
        &app,
        "GET /healthz HTTP/1.1\r\nHost: concierge\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(fine, Ended::Answered("HTTP/1.1 200 OK".into()));
    a_valid_webhook_is_answered(&app, "after-big-head").await;
}

#[tokio::test]
async fn a_half_sent_head_does_not_hold_up_a_stop() {
    let app = start().await;
    let addr = app.addr;
    let client = tokio::spawn(slow_loris(addr));
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(PATIENCE, app.app.stop())
        .await
        .expect("the stop ends")
        .expect("a clean stop");
    assert_eq!(client.await.unwrap(), Ended::Disconnected);
}
