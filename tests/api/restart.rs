//! Crash recovery: what was acknowledged before a stop is processed after the restart,
//! exactly once, and each reply is sent exactly once.

use std::collections::HashSet;

use concierge::app::Parts;
use concierge::domain::{DeliveryStatus, Direction};

use crate::helpers::{Deployment, eventually, metric, spawn_in, visitor_key};

const QUESTIONS: [&str; 4] = [
    "What are your opening hours?",
    "Do you ship internationally?",
    "Can I exchange an item?",
    "Do you sell gift cards?",
];

#[tokio::test]
async fn events_stored_before_a_stop_are_processed_once_after_restart() {
    // First run: processing paused, so everything is acknowledged and nothing answered.
    let deployment = Deployment::new("[orchestrator]\npaused = true\n");
    let app = spawn_in(deployment, Parts::default()).await;
    let visitors: Vec<String> = (0..3).map(|i| visitor_key(&format!("r{i}"))).collect();
    for (v, key) in visitors.iter().enumerate() {
        for (q, question) in QUESTIONS.iter().enumerate() {
            let response = app.post_text(key, &format!("m-{v}-{q}"), question).await;
            assert_eq!(response.status(), 200);
        }
    }
    assert_eq!(app.store().pending(0, 100).await.unwrap().len(), 12);
    let deployment = app.stop().await;

    // Second run, same SQLite file, processing on.
    deployment.write_main("");
    let app = spawn_in(deployment, Parts::default()).await;
    let store = app.store().clone();
    eventually("every reply is sent", || {
        let app = &app;
        async move {
            let text = app.metrics().await;
            metric(&text, "concierge_deliveries_total", "outcome=\"sent\"") >= 12.0
        }
    })
    .await;
    assert!(store.pending(0, 100).await.unwrap().is_empty());

    for key in &visitors {
        // Each visitor's page replays the conversation: four questions, four answers, in
        // order, each once.
        let mut stream = app.open_stream(key).await;
        let mut ids = HashSet::new();
        let mut directions = Vec::new();
        for _ in 0..8 {
            let event = stream.next().await;
            assert!(ids.insert(event.id.clone()), "{} shown twice", event.id);
            directions.push(event.direction);
        }
        assert_eq!(directions.iter().filter(|d| *d == "out").count(), 4);
        assert!(
            stream
                .next_within(std::time::Duration::from_millis(200))
                .await
                .is_none()
        );
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "concierge_deliveries_total", "outcome=\"sent\""),
        12.0,
        "each reply sent exactly once"
    );

    // A third start finds nothing left to do and sends nothing again.
    let deployment = app.stop().await;
    let app = spawn_in(deployment, Parts::default()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "concierge_deliveries_total", "outcome=\"sent\""),
        0.0
    );
    for key in &visitors {
        let conversation = app.visitor_conversation(key).await;
        let messages = app.store().messages(&conversation, 0, 100).await.unwrap();
        let outbound: Vec<_> = messages
            .iter()
            .filter(|m| m.direction == Direction::Outbound)
            .collect();
        assert_eq!(outbound.len(), 4);
        assert!(outbound.iter().all(|m| m.status == DeliveryStatus::Sent));
    }
}
