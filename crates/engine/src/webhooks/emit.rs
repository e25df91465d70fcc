//! Queues an event for every webhook that takes it.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::WebhookConfig;
use concierge_domain::{Author, Content, Message, clip_text, now_millis};
use concierge_store::{NewConsent, NewDelivery, StoreError, WebhookOutbox};
use concierge_telemetry::Metrics;

/// One event: its stable id (every retry, every instance, every replay of the turn that
/// produced it names it the same), its type and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct OutEvent {
    pub id: String,
    pub kind: &'static str,
    pub data: Value,
}

/// The most of a message's text an event carries.
const TEXT_CHARS: usize = 4000;

impl OutEvent {
    /// An event about a message (`message.received`, `message.sent`…): its ids, who wrote
    /// it, its kind and its text as a person reads it.
    pub fn message(kind: &'static str, m: &Message) -> Self {
        let (author, name) = match &m.author {
            Author::Customer => ("customer", None),
            Author::Agent(n) => ("agent", Some(n.as_str())),
            Author::Concierge(n) => ("concierge", Some(n.as_str())),
            Author::System => ("system", None),
        };
        let notification = matches!(&m.content, Content::Template { text: Some(_), .. });
        Self::new(
            kind,
            m.id,
            json!({
                "conversation": m.conversation.as_str(),
                "channel": m.channel.as_str(),
                "contact": m.contact.as_str(),
                "message": {
                    "id": m.id.to_string(),
                    "platform_id": m.platform_id.as_ref().map(|p| p.as_str().to_string()),
                    "author": author,
                    "author_name": name,
                    "kind": m.content.kind_name(),
                    "text": clip_text(&m.content.preview(), TEXT_CHARS),
                    "notification": notification,
                    "at": m.created_at,
                },
            }),
        )
    }

    /// A consent decision recorded (`consent.changed`), named by its key when it has one.
    pub fn consent(c: &NewConsent) -> Self {
        let subject = c.key.clone().unwrap_or_else(|| {
            format!("{}.{}.{}.{}", c.channel, c.contact, c.purpose.name(), c.at)
        });
        Self::new(
            "consent.changed",
            subject,
            json!({
                "channel": c.channel.as_str(), "contact": c.contact.as_str(),
                "purpose": c.purpose.name(), "granted": c.granted, "source": c.source,
                "proof": c.proof, "at": c.at,
            }),
        )
    }

    /// Adds a field to the event's data (a failure's reason, a status).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        if let Value::Object(data) = &mut self.data {
            data.insert(key.to_string(), value);
        }
        self
    }

    /// An event about `subject` (a message id, a handoff id…): its id is the type and the
    /// subject, so the same event is always the same id.
    pub fn new(kind: &'static str, subject: impl std::fmt::Display, data: Value) -> Self {
        Self {
            id: format!("{kind}.{subject}"),
            kind,
            data,
        }
    }
}

/// The webhooks of the deployment, and where their deliveries are kept.
#[derive(Clone)]
pub struct Webhooks {
    outbox: Option<Arc<dyn WebhookOutbox>>,
    hooks: Arc<Vec<WebhookConfig>>,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl Webhooks {
    pub fn new(
        outbox: Arc<dyn WebhookOutbox>,
        hooks: Vec<WebhookConfig>,
        wake: Arc<Notify>,
        metrics: Metrics,
    ) -> Self {
        Self {
            outbox: Some(outbox),
            hooks: Arc::new(hooks),
            wake,
            metrics,
        }
    }

    /// No webhooks: every event goes nowhere, at no cost.
    pub fn none() -> Self {
        Self {
            outbox: None,
            hooks: Arc::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            metrics: Metrics::default(),
        }
    }

    /// Rings the worker (a delivery queued again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether any webhook takes events of `kind` (callers skip building the event if not).
    pub fn wants(&self, kind: &str) -> bool {
        self.hooks.iter().any(|h| h.takes(kind))
    }

    /// Queues `event` for every webhook that takes it, as `{type, timestamp, data}`.
    pub async fn emit(&self, event: OutEvent) -> Result<(), StoreError> {
        let Some(outbox) = &self.outbox else {
            return Ok(());
        };
        let takers: Vec<&WebhookConfig> =
            self.hooks.iter().filter(|h| h.takes(event.kind)).collect();
        if takers.is_empty() {
            return Ok(());
        }
        let at = now_millis();
        let timestamp = jiff::Timestamp::from_millisecond(at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let payload =
            json!({ "type": event.kind, "timestamp": timestamp, "data": event.data }).to_string();
        let deliveries: Vec<NewDelivery> = takers
            .iter()
            .map(|h| NewDelivery {
                webhook: h.name(),
                event_id: event.id.clone(),
                event_type: event.kind.to_string(),
                payload: payload.clone(),
                at,
            })
            .collect();
        let added = outbox.enqueue_webhooks(&deliveries).await?;
        if added > 0 {
            self.metrics.webhook_events(added as u64);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// [`Webhooks::emit`], a failure logged: for the places where an event must not fail
    /// the work it reports.
    pub async fn tell(&self, event: OutEvent) {
        let (id, kind) = (event.id.clone(), event.kind);
        if let Err(e) = self.emit(event).await {
            tracing::warn!(error = %e, event = %id, kind, "an event for the webhooks could not be queued");
        }
    }
}
