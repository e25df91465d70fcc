//! The webhook outbox: events for the merchant's other systems, one delivery per webhook
//! and event, kept until the receiver took it (or until the gateway gave up), each handed to
//! one sender at a time by a lease, across instances.

use concierge_domain::Millis;

use crate::StoreError;

/// An event to deliver to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The webhook's name (`[[webhooks]] name`).
    pub webhook: String,
    /// The event's id: the `webhook-id` every attempt carries; queued once per webhook.
    pub event_id: String,
    pub event_type: String,
    /// The body, as JSON.
    pub payload: String,
    pub at: Millis,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up: listed, and retried only when someone asks.
    Failed,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// A kept delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: i64,
    pub webhook: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub state: DeliveryState,
    /// Attempts made (a claimed delivery counts the attempt it is claimed for).
    pub attempts: u32,
    pub created_at: Millis,
    pub next_at: Millis,
    pub last_error: Option<String>,
    /// The HTTP status of the last answer, when there was one.
    pub last_status: Option<u16>,
    pub done_at: Option<Millis>,
}

/// The outbox of events for webhooks.
#[async_trait::async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// Queues deliveries, each once per (webhook, event id); returns how many were new.
    async fn enqueue_webhooks(&self, deliveries: &[NewDelivery]) -> Result<usize, StoreError>;

    /// Up to `limit` pending deliveries due at `now`, each leased for `lease_ms` (handed out
    /// again once the lease runs out, if the sender never said how it went).
    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// The receiver took it.
    async fn webhook_delivered(&self, id: i64, status: u16, now: Millis) -> Result<(), StoreError>;

    /// It failed; try again at `at`, or (`at` = `None`) give up.
    async fn webhook_attempt_failed(
        &self,
        id: i64,
        at: Option<Millis>,
        error: &str,
        status: Option<u16>,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// Deliveries in `state`, newest first, at most `limit`; failed and delivered ones are
    /// kept a week.
    async fn webhook_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// A failed delivery goes again now (its attempts start over); `false` when it is not
    /// a failed one.
    async fn retry_webhook(&self, id: i64, now: Millis) -> Result<bool, StoreError>;
}
