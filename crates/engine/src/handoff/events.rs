//! Live events for the console: a new handoff, a customer message, a claim, a release, an
//! SLA breach, a delivery status. Every `/api/v1/events` stream subscribes to the bus and
//! keeps what its caller may see. With a shared store, the bus spans the instances: events go
//! out through the store's fanout and every instance (this one too) hears them from there.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use concierge_store::{Fanout, Topic};

use concierge_domain::{ConversationId, Millis, now_millis};

/// What happened, as the console's event stream names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Handoff,
    Message,
    Claimed,
    Released,
    Resolved,
    Transferred,
    Offered,
    SlaBreached,
    Delivery,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Handoff => "handoff",
            EventKind::Message => "message",
            EventKind::Claimed => "claimed",
            EventKind::Released => "released",
            EventKind::Resolved => "resolved",
            EventKind::Transferred => "transferred",
            EventKind::Offered => "offered",
            EventKind::SlaBreached => "sla_breached",
            EventKind::Delivery => "delivery",
        }
    }
}

/// One console event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub conversation: ConversationId,
    /// The team the thread is queued for (who may see the event); none for a thread that was
    /// never handed off.
    pub team: Option<String>,
    /// The concierge concerned (the claimer, the one offered to, the new owner).
    pub concierge: Option<String>,
    pub at: Millis,
    /// A customer message's text, for `message`.
    pub text: Option<String>,
    pub priority: Option<String>,
    /// A delivery status, for `delivery`.
    pub status: Option<String>,
    pub message_id: Option<String>,
}

impl ConsoleEvent {
    pub fn new(kind: EventKind, conversation: ConversationId, team: Option<String>) -> Self {
        Self {
            kind,
            conversation,
            team,
            concierge: None,
            at: now_millis(),
            text: None,
            priority: None,
            status: None,
            message_id: None,
        }
    }

    pub fn by(mut self, concierge: impl Into<String>) -> Self {
        self.concierge = Some(concierge.into());
        self
    }
}

/// The bus. Cheap to clone; publishing with no subscriber is a no-op.
#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<ConsoleEvent>,
    /// Between instances, when the store is shared.
    fanout: Option<Arc<dyn Fanout>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            fanout: None,
        }
    }

    /// A bus across the instances sharing the store (in-process without a fanout). Must be
    /// called within a Tokio runtime: a task relays what the fanout hears to this process's
    /// subscribers.
    pub fn shared(fanout: Option<Arc<dyn Fanout>>) -> Self {
        let Some(fanout) = fanout else {
            return Self::new();
        };
        let bus = Self {
            sender: broadcast::channel(1024).0,
            fanout: Some(fanout.clone()),
        };
        let sender = bus.sender.clone();
        let mut heard = fanout.subscribe(Topic::Console);
        tokio::spawn(async move {
            loop {
                match heard.recv().await {
                    Ok(payload) => match serde_json::from_str::<ConsoleEvent>(&payload) {
                        Ok(event) => {
                            let _ = sender.send(event);
                        }
                        Err(e) => tracing::warn!(error = %e, "an unreadable console event"),
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "console events dropped: too many at once");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        bus
    }

    pub fn publish(&self, event: ConsoleEvent) {
        match &self.fanout {
            Some(fanout) => match serde_json::to_string(&event) {
                Ok(payload) => fanout.publish(Topic::Console, payload),
                Err(e) => tracing::warn!(error = %e, "a console event could not be encoded"),
            },
            None => {
                let _ = self.sender.send(event);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.sender.subscribe()
    }
}
