//! Ordering inside a conversation, parallelism across conversations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use concierge::domain::{Author, Content, ConversationId};
use concierge::orchestrator::{Decision, Responder, ResponderError, Turn};
use tokio::sync::Notify;

use crate::helpers::{PATIENCE, spawn_with_responder, visitor_key};

/// Replies "re: <text>", recording the order of turns and how many of one conversation ran
/// at the same time.
#[derive(Default)]
struct Recorder {
    order: Mutex<Vec<String>>,
    running: Mutex<HashMap<ConversationId, usize>>,
    max_running_same_conversation: Mutex<usize>,
}

#[async_trait]
impl Responder for Recorder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let text = turn.text().unwrap_or_default().to_string();
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(turn.entry.conversation.clone()).or_default();
            *n += 1;
            let mut max = self.max_running_same_conversation.lock().unwrap();
            *max = (*max).max(*n);
        }
        self.order.lock().unwrap().push(text.clone());
        // Give any other turn of the same conversation every chance to start meanwhile.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        *self
            .running
            .lock()
            .unwrap()
            .get_mut(&turn.entry.conversation)
            .unwrap() -= 1;
        Ok(Some(Decision {
            by: concierge::orchestrator::DecidedBy::Other("test"),
            replies: vec![(
                Author::Agent("test".into()),
                Content::text(format!("re: {text}")),
            )],
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

#[tokio::test]
async fn fifty_messages_of_one_conversation_are_processed_and_answered_in_order() {
    let recorder = Arc::new(Recorder::default());
    let app = spawn_with_responder(recorder.clone()).await;
    let key = visitor_key("order");
    let mut stream = app.open_stream(&key).await;
    for i in 0..50 {
        let response = app.post_text(&key, &format!("m-{i}"), &i.to_string()).await;
        assert_eq!(response.status(), 200);
    }
    let mut replies = Vec::new();
    for _ in 0..50 {
        replies.push(stream.next().await.text);
    }
    let expected: Vec<String> = (0..50).map(|i| format!("re: {i}")).collect();
    assert_eq!(replies, expected, "replies arrive in order");
    let order = recorder.order.lock().unwrap().clone();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(order, expected, "turns run in order");
    assert_eq!(*recorder.max_running_same_conversation.lock().unwrap(), 1);
    let seqs: Vec<i64> = {
        let store = app.store();
        let messages = store
            .recent_messages(&conversation(store, &key).await, 200)
            .await
            .unwrap();
        messages.iter().map(|m| m.seq).collect()
    };
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

async fn conversation(store: &concierge::store::SharedStore, key: &str) -> ConversationId {
    crate::helpers::visitor_conversation_in(store, "web", key).await
}

/// A's turn cannot finish until B's turn has started: with serial lanes this would wait
/// forever, so the test asserts overlap by what happened, not by timing.
struct Gate {
    b_started: Notify,
    overlapped: Mutex<Option<bool>>,
}

#[async_trait]
impl Responder for Gate {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        match turn.text().as_deref() {
            Some("A") => {
                let overlapped = tokio::time::timeout(PATIENCE, self.b_started.notified())
                    .await
                    .is_ok();
                *self.overlapped.lock().unwrap() = Some(overlapped);
            }
            Some("B") => self.b_started.notify_one(),
            _ => {}
        }
        Ok(Some(Decision {
            by: concierge::orchestrator::DecidedBy::Other("test"),
            replies: vec![(
                Author::Agent("test".into()),
                Content::text(format!("done {}", turn.text().unwrap_or_default())),
            )],
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }))
    }
}

#[tokio::test]
async fn lanes_of_different_conversations_run_concurrently() {
    let gate = Arc::new(Gate {
        b_started: Notify::new(),
        overlapped: Mutex::new(None),
    });
    let app = spawn_with_responder(gate.clone()).await;
    let (a, b) = (visitor_key("a"), visitor_key("b"));
    let mut stream_a = app.open_stream(&a).await;
    let mut stream_b = app.open_stream(&b).await;
    app.post_text(&a, "a-1", "A").await;
    app.post_text(&b, "b-1", "B").await;
    // B is answered while A is still waiting for B to start.
    assert_eq!(stream_b.next().await.text, "done B");
    assert_eq!(stream_a.next().await.text, "done A");
    assert_eq!(*gate.overlapped.lock().unwrap(), Some(true));
}
