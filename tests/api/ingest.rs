//! Webhook ingest: dedupe, bad input, limits, health.

use std::time::Duration;

use concierge::domain::{ConversationId, Direction};

use crate::helpers::{eventually, metric, spawn_app, visitor_key};

async fn conversation_of(store: &concierge::store::SharedStore, key: &str) -> ConversationId {
    crate::helpers::visitor_conversation_in(store, "web", key).await
}

#[tokio::test]
async fn the_same_event_three_times_is_stored_once_and_answered_once() {
    let app = spawn_app().await;
    let key = visitor_key("dup");
    let mut stream = app.open_stream(&key).await;
    for _ in 0..3 {
        let response = app
            .post_text(&key, "m-same", "How can I track my order?")
            .await;
        assert_eq!(response.status(), 200);
    }
    let reply = stream.next().await;
    assert_eq!(reply.direction, "out");
    // The app is idle once nothing is pending; then nothing more may arrive.
    let store = app.store().clone();
    eventually("the inbox is drained", || {
        let store = store.clone();
        async move { store.pending(0, 10).await.unwrap().is_empty() }
    })
    .await;
    assert!(
        stream
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    let messages = store
        .messages(&conversation_of(&store, &key).await, 0, 100)
        .await
        .unwrap();
    let inbound = messages
        .iter()
        .filter(|m| m.direction == Direction::Inbound)
        .count();
    let outbound = messages.len() - inbound;
    assert_eq!((inbound, outbound), (1, 1));
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_webhooks_total",
            "channel=\"web\",outcome=\"accepted\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "concierge_webhooks_total",
            "channel=\"web\",outcome=\"duplicate\""
        ),
        2.0
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_loses_nothing() {
    let app = spawn_app().await;
    let key = visitor_key("bad");
    let mut stream = app.open_stream(&key).await;
    assert_eq!(
        app.post_text(&key, "m-1", "Do you sell gift cards?")
            .await
            .status(),
        200
    );
    stream.next().await;

    // Oversized: 413.
    let big = "x".repeat(2 * 1024 * 1024);
    let response = app
        .client
        .post(app.url("/webhooks/web"))
        .header("x-webchat-key", &key)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Garbage: 200, counted.
    for body in [
        "not json at all",
        "{\"id\":1}",
        "{\"id\":\"x\"}",
        "\u{0}\u{1}",
    ] {
        let response = app
            .client
            .post(app.url("/webhooks/web"))
            .header("x-webchat-key", &key)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{body:?}");
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_webhooks_total",
            "channel=\"web\",outcome=\"unparsed\""
        ),
        4.0
    );

    // Unknown channel: 404. Bad credentials: 401.
    let response = app
        .client
        .post(app.url("/webhooks/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = app
        .client
        .post(app.url("/webhooks/web"))
        .body("{\"id\":\"m\",\"text\":\"hi\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .client
        .post(app.url("/webhooks/web"))
        .header("x-webchat-key", "short")
        .body("{\"id\":\"m\",\"text\":\"hi\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A GET on a channel without a handshake.
    let response = app
        .client
        .get(app.url("/webhooks/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);

    // Still healthy, and what was accepted is still there.
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let messages = app
        .store()
        .messages(&conversation_of(app.store(), &key).await, 0, 100)
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
    assert!(
        stream
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}
