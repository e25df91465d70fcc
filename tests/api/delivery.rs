//! The delivery worker against a platform that fails: retries with backoff, honours a
//! retry-after, gives up with the reason, and never sends again what was accepted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use concierge::app::Parts;
use concierge::channels::{
    Capabilities, ChannelAdapter, ChannelKind, OutboundMessage, ParseError, SendError, SendReceipt,
    VerifyError, WebhookRequest,
};
use concierge::domain::{
    ChannelId, ContactId, Content, ConversationId, DeliveryStatus, Direction, EventId, EventKind,
    InboundEvent, InboundMessage, PlatformMessageId, now_millis,
};

use crate::helpers::{Deployment, TestApp, eventually, metric, spawn_in};

/// A platform whose answers to sends are scripted; it records every send it receives.
struct FakePlatform {
    id: ChannelId,
    capabilities: Capabilities,
    script: Mutex<VecDeque<Result<(), SendError>>>,
    sends: Mutex<Vec<(Instant, OutboundMessage)>>,
    parses: std::sync::atomic::AtomicUsize,
}

impl FakePlatform {
    fn new(script: Vec<Result<(), SendError>>) -> Arc<Self> {
        Arc::new(Self {
            id: ChannelId::parse("fake").unwrap(),
            capabilities: Capabilities {
                max_buttons: 0,
                max_list_rows: 0,
                media: &[],
                reply_window: None,
                typing: false,
                read_receipts: false,
                max_text_chars: 1000,
                templates: false,
                media_captions: false,
            },
            script: Mutex::new(script.into()),
            sends: Mutex::new(Vec::new()),
            parses: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn sends(&self) -> Vec<(Instant, OutboundMessage)> {
        self.sends.lock().unwrap().clone()
    }
}

#[async_trait]
impl ChannelAdapter for FakePlatform {
    fn id(&self) -> &ChannelId {
        &self.id
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webchat
    }
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    fn verify(&self, request: &WebhookRequest) -> Result<(), VerifyError> {
        match request.header("x-fake-secret") {
            Some("s3cret") => Ok(()),
            Some(_) => Err(VerifyError::Mismatch),
            None => Err(VerifyError::Missing("x-fake-secret")),
        }
    }
    fn parse(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        self.parses
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let text = std::str::from_utf8(&request.body).map_err(|e| ParseError(e.to_string()))?;
        let (id, text) = text.split_once(':').ok_or(ParseError("no id".into()))?;
        Ok(vec![InboundEvent {
            channel: self.id.clone(),
            event_id: EventId::parse(id).map_err(|e| ParseError(e.to_string()))?,
            contact: ContactId::parse("+33600000000").unwrap(),
            aliases: Vec::new(),
            at: now_millis(),
            kind: EventKind::Message(InboundMessage {
                platform_id: PlatformMessageId::parse(id).map_err(|e| ParseError(e.to_string()))?,
                content: Content::text(text),
                reply_to: None,
                display_name: None,
                over_budget: None,
            }),
        }])
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        self.sends
            .lock()
            .unwrap()
            .push((Instant::now(), message.clone()));
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        next.map(|()| SendReceipt {
            platform_id: PlatformMessageId::parse(format!("out-{}", message.message_id)).ok(),
        })
    }
}

async fn start(platform: Arc<FakePlatform>, extra: &str) -> TestApp {
    spawn_in(
        Deployment::new(extra),
        Parts {
            adapters: vec![platform],
            ..Parts::default()
        },
    )
    .await
}

async fn customer_writes(app: &TestApp, id: &str, text: &str) {
    let response = app
        .client
        .post(app.url("/webhooks/fake"))
        .header("x-fake-secret", "s3cret")
        .body(format!("{id}:{text}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn conversation(store: &concierge::store::SharedStore) -> ConversationId {
    crate::helpers::conversation_in(store, "fake", "+33600000000").await
}

async fn reply_status(app: &TestApp) -> Option<DeliveryStatus> {
    let messages = app
        .store()
        .messages(&conversation(app.store()).await, 0, 100)
        .await
        .unwrap();
    messages
        .into_iter()
        .find(|m| m.direction == Direction::Outbound)
        .map(|m| m.status)
}

fn transient() -> Result<(), SendError> {
    Err(SendError::Transient {
        reason: "HTTP 500".into(),
    })
}

#[tokio::test]
async fn transient_failures_are_retried_with_growing_waits_then_sent_once() {
    let platform = FakePlatform::new(vec![transient(), transient(), transient()]);
    let app = start(platform.clone(), "").await;
    customer_writes(&app, "in-1", "Do you sell gift cards?").await;
    eventually("the reply is sent", || async {
        reply_status(&app).await == Some(DeliveryStatus::Sent)
    })
    .await;
    let sends = platform.sends();
    assert_eq!(sends.len(), 4, "three failures, then the accepted send");
    // Every attempt carries the same idempotency key and message id.
    assert!(sends.windows(2).all(|w| {
        w[0].1.idempotency_key == w[1].1.idempotency_key && w[0].1.message_id == w[1].1.message_id
    }));
    // Backoff: initial 20 ms doubling with jitter in [half, full]: at least 10, 20, 40 ms.
    let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1].0 - w[0].0).collect();
    for (gap, floor) in gaps.iter().zip([10u64, 20, 40]) {
        assert!(*gap >= Duration::from_millis(floor), "{gaps:?}");
    }
    // Accepted: never sent again, even across a restart.
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_deliveries_total",
            "outcome=\"retried\""
        ),
        3.0
    );
    let deployment = app.stop().await;
    let app = spawn_in(
        deployment,
        Parts {
            adapters: vec![platform.clone()],
            ..Parts::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(platform.sends().len(), 4);
    let messages = app
        .store()
        .messages(&conversation(app.store()).await, 0, 100)
        .await
        .unwrap();
    let reply = messages
        .iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(
        reply.platform_id.as_ref().map(|p| p.as_str().to_string()),
        Some(format!("out-{}", reply.id))
    );
}

#[tokio::test]
async fn a_retry_after_is_honoured() {
    let platform = FakePlatform::new(vec![Err(SendError::RetryAfter {
        after: Duration::from_millis(400),
        reason: "429".into(),
    })]);
    let app = start(platform.clone(), "").await;
    customer_writes(&app, "in-1", "Do you sell gift cards?").await;
    eventually("the reply is sent", || async {
        reply_status(&app).await == Some(DeliveryStatus::Sent)
    })
    .await;
    let sends = platform.sends();
    assert_eq!(sends.len(), 2);
    assert!(sends[1].0 - sends[0].0 >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_reply_never_accepted_is_marked_failed_with_the_reason() {
    let platform = FakePlatform::new((0..1000).map(|_| transient()).collect());
    let app = start(platform.clone(), "[delivery]\ngive_up_after_secs = 1\n").await;
    customer_writes(&app, "in-1", "Do you sell gift cards?").await;
    eventually("the reply is marked failed", || async {
        matches!(
            reply_status(&app).await,
            Some(DeliveryStatus::Failed { .. })
        )
    })
    .await;
    let Some(DeliveryStatus::Failed { reason, .. }) = reply_status(&app).await else {
        unreachable!()
    };
    assert!(reason.contains("gave up"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    let attempts = platform.sends().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.sends().len(),
        attempts,
        "no attempt after giving up"
    );
}

#[tokio::test]
async fn a_rejected_reply_fails_at_once_and_the_next_one_still_goes() {
    let platform = FakePlatform::new(vec![Err(SendError::Rejected {
        code: Some("131047".into()),
        reason: "re-engagement message required".into(),
    })]);
    let app = start(platform.clone(), "").await;
    customer_writes(&app, "in-1", "Do you sell gift cards?").await;
    customer_writes(&app, "in-2", "Do you offer gift wrapping?").await;
    eventually("both replies are done", || async {
        let messages = app
            .store()
            .messages(&conversation(app.store()).await, 0, 100)
            .await
            .unwrap();
        let statuses: Vec<_> = messages
            .into_iter()
            .filter(|m| m.direction == Direction::Outbound)
            .map(|m| m.status)
            .collect();
        statuses.len() == 2
            && matches!(&statuses[0], DeliveryStatus::Failed { code: Some(c), .. } if c == "131047")
            && statuses[1] == DeliveryStatus::Sent
    })
    .await;
    assert_eq!(platform.sends().len(), 2);
}

#[tokio::test]
async fn a_forged_request_is_refused_before_parsing() {
    let platform = FakePlatform::new(vec![]);
    let app = start(platform.clone(), "").await;
    let response = app
        .client
        .post(app.url("/webhooks/fake"))
        .header("x-fake-secret", "wrong")
        .body("in-1:hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        platform.parses.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing parsed before verification"
    );
    assert!(app.store().pending(0, 10).await.unwrap().is_empty());
    assert!(
        app.store()
            .conversation(&conversation(app.store()).await)
            .await
            .unwrap()
            .is_none()
    );
}
