//! Live events for the console: a new handoff, a customer message, a claim, a release, an
//! SLA breach, a delivery status. One in-process bus; every `/api/v1/events` stream
//! subscribes and keeps what its caller may see.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::{ConversationId, Millis, now_millis};

/// What happened, as the console's event stream names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        }
    }

    pub fn publish(&self, event: ConsoleEvent) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.sender.subscribe()
    }
}
