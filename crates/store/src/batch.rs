//! Notification batches: one template to up to 10,000 recipients, kept whole when it is
//! accepted, then worked through in order by a cursor that moves only after the recipients
//! before it were queued (each with its own idempotency key, so a batch resumed after a crash
//! queues nobody twice and skips nobody).

use std::collections::BTreeMap;

use concierge_domain::{ChannelId, Millis};

use crate::StoreError;

/// The most recipients one batch takes.
pub const MAX_RECIPIENTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    pub id: String,
    /// The caller's idempotency key, scoped to its service: the same key again answers the
    /// first batch.
    pub key: String,
    pub service: String,
    pub channel: ChannelId,
    pub template: Option<String>,
    /// What every recipient gets, as JSON (the engine's to read).
    pub request: String,
    /// Each recipient, as JSON, in order.
    pub recipients: Vec<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Running,
    /// Stopped by its caller: the recipients not reached yet get nothing.
    Stopped,
    Done,
}

impl BatchState {
    pub fn name(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Stopped => "stopped",
            BatchState::Done => "done",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "running" => Some(BatchState::Running),
            "stopped" => Some(BatchState::Stopped),
            "done" => Some(BatchState::Done),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: String,
    pub service: String,
    pub channel: ChannelId,
    pub template: Option<String>,
    pub request: String,
    pub state: BatchState,
    pub total: u32,
    /// The next recipient to reach: those before it were queued or skipped.
    pub next: u32,
    pub queued: u32,
    pub skipped: u32,
    /// Skipped recipients by reason (`opted_out`, `no_consent`, `invalid`…).
    pub reasons: BTreeMap<String, u32>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What working recipients `from..to` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStep {
    pub from: u32,
    pub to: u32,
    pub queued: u32,
    /// The reason of each recipient skipped.
    pub skipped: Vec<String>,
}

#[async_trait::async_trait]
pub trait Batches: Send + Sync {
    /// Keeps a new batch, running; or answers the batch of the same key (`true`: replayed).
    async fn create_batch(&self, batch: &NewBatch) -> Result<(Batch, bool), StoreError>;

    async fn batch(&self, id: &str) -> Result<Option<Batch>, StoreError>;

    /// The running batches, oldest first.
    async fn running_batches(&self) -> Result<Vec<Batch>, StoreError>;

    /// Recipients `from..from + limit` of a batch, as kept.
    async fn batch_recipients(
        &self,
        id: &str,
        from: u32,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Moves the cursor past a step, only if it is still at `step.from` and the batch runs
    /// (`false` otherwise: another worker moved it, or it was stopped); the batch is done
    /// once the cursor reaches its end.
    async fn advance_batch(
        &self,
        id: &str,
        step: &BatchStep,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Stops a running batch; the batch as it is after.
    async fn stop_batch(&self, id: &str, now: Millis) -> Result<Option<Batch>, StoreError>;

    /// Takes (or renews) the right to work a batch until `until`, unless another `owner`
    /// holds it past `now`.
    async fn lease_batch(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError>;
}
