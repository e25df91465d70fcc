//! Webhooks out, over real HTTP to a receiver of our own: a customer's message and the reply
//! reach it signed the Standard Webhooks way (verified by the `standardwebhooks` package
//! from PyPI, not by our code), a receiver that fails three times gets the event on the
//! fourth attempt with the same `webhook-id`, one that redirects or hangs is given up after
//! `retry_for_secs`, listed as failed and sent again on request, and deliveries survive a
//! restart of the gateway.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::helpers::{Deployment, TestApp, eventually, spawn_in, visitor_key};
use concierge::app::Parts;

/// `whsec_` and 32 bytes in base64.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What a path answers: 500 to the first `fail` attempts of each event, then 204;
/// `/redirect` a 302; `/hang` never in time.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    fail: Arc<Mutex<usize>>,
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let seen = r
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.header("webhook-id") == id)
        .count();
    r.received.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
    });
    match uri.path() {
        "/redirect" => (
            StatusCode::FOUND,
            [(axum::http::header::LOCATION, "http://127.0.0.1:1/elsewhere")],
        )
            .into_response(),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ if seen < *r.fail.lock().unwrap() => {
            (StatusCode::INTERNAL_SERVER_ERROR, "not now").into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

impl Receiver {
    async fn start(fail: usize) -> (Receiver, String) {
        let receiver = Receiver {
            fail: Arc::new(Mutex::new(fail)),
            ..Receiver::default()
        };
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        let url = concierge_testkit::serve(router).await.unwrap();
        (receiver, url)
    }

    fn of(&self, kind: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.json()["type"] == kind)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn webhook(name: &str, url: &str, events: &str, extra: &str) -> String {
    format!(
        "[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = [{events}]\nbackoff_ms = 50\n{extra}\n"
    )
}

async fn events_token(app: &TestApp) -> String {
    concierge::handoff::access::issue_service(app.store().as_ref(), "crm", &["events".into()])
        .await
        .unwrap()
}

async fn deliveries(app: &TestApp, token: &str, status: &str) -> Vec<Value> {
    app.client
        .get(app.url(&format!("/api/v1/webhooks/deliveries?status={status}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

/// Verifies every delivery with the Standard Webhooks reference library (Python); says
/// SKIPPED, or fails in CI, without it.
fn verified_by_the_reference_library(test: &str, received: &[Received]) {
    const VARS: [&str; 1] = ["CONCIERGE_REQUIRE_PYTHON_PEERS"];
    let python = std::env::var("CONCIERGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_it = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_it {
        crate::skip::skipped(
            test,
            &VARS,
            &format!("{python} cannot import standardwebhooks (tests/requirements.txt)"),
        );
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/verify_standard_webhooks.py"
    );
    let mut child = std::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for r in received {
        let headers: serde_json::Map<String, Value> =
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .iter()
                .map(|h| (h.to_string(), json!(r.header(h))))
                .collect();
        input.push_str(&json!({"secret": SECRET, "headers": headers, "body": r.body}).to_string());
        input.push('\n');
    }
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert_eq!(said.trim(), format!("verified {}", received.len()));
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_the_event_on_the_fourth_with_the_same_id() {
    let (receiver, url) = Receiver::start(3).await;
    let deployment = Deployment::new(&webhook(
        "crm",
        &format!("{url}/hooks"),
        "\"message.received\", \"message.sent\"",
        "",
    ));
    let app = spawn_in(deployment, Parts::default()).await;
    let key = visitor_key("webhooks");
    assert_eq!(
        app.post_text(&key, "w1", "Bonjour, vous êtes ouverts dimanche ?")
            .await
            .status(),
        200
    );
    eventually(
        "the event on the fourth attempt, and the reply's",
        || async {
            receiver.of("message.received").len() >= 4 && receiver.of("message.sent").len() >= 4
        },
    )
    .await;
    let attempts = receiver.of("message.received");
    assert_eq!(attempts.len(), 4, "delivered once it was taken");
    let id = attempts[0].header("webhook-id").to_string();
    assert!(id.starts_with("message.received."), "{id}");
    assert!(
        attempts.iter().all(|a| a.header("webhook-id") == id),
        "a stable id"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.header("webhook-signature").starts_with("v1,"))
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.header("content-type") == "application/json")
    );
    let event = attempts[3].json();
    assert_eq!(
        event["data"]["message"]["text"],
        "Bonjour, vous êtes ouverts dimanche ?"
    );
    assert_eq!(event["data"]["message"]["author"], "customer");
    assert_eq!(event["data"]["channel"], "web");
    let conversation = app.visitor_conversation(&key).await;
    assert_eq!(event["data"]["conversation"], conversation.as_str());
    assert!(
        event["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let sent = &receiver.of("message.sent")[0];
    assert_ne!(sent.json()["data"]["message"]["author"], "customer");
    assert_eq!(sent.json()["data"]["conversation"], conversation.as_str());

    verified_by_the_reference_library(
        "a_receiver_that_fails_three_times_gets_the_event_on_the_fourth_with_the_same_id",
        &receiver.all(),
    );
    // Tampered with, the same deliveries do not verify.
    let mut forged = attempts[3].clone();
    forged.body = forged.body.replace("dimanche", "lundi");
    let python = std::env::var("CONCIERGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    if std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let result = std::panic::catch_unwind(|| {
            verified_by_the_reference_library("forged", std::slice::from_ref(&forged))
        });
        assert!(result.is_err(), "a changed body must not verify");
    }

    let token = events_token(&app).await;
    let delivered = deliveries(&app, &token, "delivered").await;
    let first = delivered
        .iter()
        .find(|d| d["event_id"] == id.as_str())
        .expect("listed as delivered");
    assert_eq!(first["attempts"], 4);
    assert_eq!(first["last_status"], 204);
    assert_eq!(first["webhook"], "crm");
    assert!(deliveries(&app, &token, "failed").await.is_empty());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("concierge_webhook_deliveries_total{outcome=\"retry\"} 6"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_receiver_that_redirects_or_hangs_is_given_up_listed_and_retried_on_request() {
    let (receiver, url) = Receiver::start(0).await;
    let main = format!(
        "{}{}",
        webhook(
            "redirecting",
            &format!("{url}/redirect"),
            "\"message.received\"",
            "retry_for_secs = 1"
        ),
        webhook(
            "hanging",
            &format!("{url}/hang"),
            "\"message.received\"",
            "retry_for_secs = 1\ntimeout_secs = 1"
        ),
    );
    let app = spawn_in(Deployment::new(&main), Parts::default()).await;
    let token = events_token(&app).await;
    let key = visitor_key("webhooks-failing");
    assert_eq!(app.post_text(&key, "f1", "hello").await.status(), 200);
    eventually("both are given up", || async {
        deliveries(&app, &token, "failed").await.len() == 2
    })
    .await;
    let failed = deliveries(&app, &token, "failed").await;
    let of = |name: &str| {
        failed
            .iter()
            .find(|d| d["webhook"] == name)
            .unwrap()
            .clone()
    };
    let redirected = of("redirecting");
    assert!(
        redirected["last_error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{redirected}"
    );
    assert_eq!(redirected["last_status"], 302);
    assert!(
        of("hanging")["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1 s"),
        "{failed:?}"
    );
    assert!(
        !receiver.all().iter().any(|r| r.path == "/elsewhere"),
        "the redirect was not followed"
    );
    assert_eq!(redirected["payload"]["type"], "message.received");

    // Retried on request: it goes again (and fails again, the receiver still redirects).
    let before = receiver
        .all()
        .iter()
        .filter(|r| r.path == "/redirect")
        .count();
    let response = app
        .client
        .post(app.url(&format!(
            "/api/v1/webhooks/deliveries/{}/retry",
            redirected["id"]
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    eventually("sent again", || async {
        receiver
            .all()
            .iter()
            .filter(|r| r.path == "/redirect")
            .count()
            > before
    })
    .await;
    let again = receiver
        .all()
        .into_iter()
        .rfind(|r| r.path == "/redirect")
        .unwrap();
    assert_eq!(
        again.header("webhook-id"),
        redirected["event_id"].as_str().unwrap()
    );
    let missing = app
        .client
        .post(app.url("/api/v1/webhooks/deliveries/999999/retry"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn deliveries_wait_in_the_store_across_a_restart() {
    let (receiver, url) = Receiver::start(1_000_000).await;
    let main = webhook("crm", &format!("{url}/hooks"), "\"*\"", "");
    let app = spawn_in(Deployment::new(&main), Parts::default()).await;
    let key = visitor_key("webhooks-restart");
    assert_eq!(app.post_text(&key, "r1", "hello there").await.status(), 200);
    eventually("a first attempt", || async {
        !receiver.of("message.received").is_empty()
    })
    .await;
    let deployment = app.stop().await;
    // The receiver comes back while the gateway is down; the gateway starts again.
    *receiver.fail.lock().unwrap() = 0;
    let app = spawn_in(deployment, Parts::default()).await;
    let token = events_token(&app).await;
    eventually("delivered after the restart", || async {
        deliveries(&app, &token, "delivered")
            .await
            .iter()
            .any(|d| d["event_type"] == "message.received")
    })
    .await;
    let ids: Vec<String> = receiver
        .of("message.received")
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one event, one id: {ids:?}"
    );
}
