//! The store traits every backend implements, and the types they exchange. The orchestrator,
//! the delivery worker and the HTTP layer see only these traits, never a backend.
//!
//! The rules the traits promise, and the shared suite in `concierge-testkit` checks on every
//! backend (`concierge-store-sqlite` and `concierge-store-redis` are the two):
//! - `ingest` is atomic and idempotent on `(channel, event_id)`.
//! - `complete` marks an inbox event done in the same transaction that writes its replies
//!   into the outbox and its thread state; it refuses automated replies while a human or the
//!   queue holds the thread.
//! - `claim_due` hands out at most the head of each conversation's outbox, so replies leave in
//!   the order they were decided; an entry marked sent is never handed out again.
//! - Delivery status only moves forward.

mod backend_errors;
pub mod batch;
pub mod commerce;
pub mod consent;
pub mod credentials;
pub mod notify;
pub mod webhooks;

pub use batch::{Batch, BatchState, BatchStep, Batches, NewBatch};
pub use commerce::{Commerce, CommerceState, OpenFlow};
pub use consent::{ConsentRecord, Consents, NewConsent, Purpose};
pub use notify::{NewNotification, Notification, Notifications, Notified, Refusal};
pub use webhooks::{DeliveryState, NewDelivery, WebhookDelivery, WebhookOutbox};

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Notify, broadcast};

use concierge_domain::{
    Author, ChannelId, ContactId, Content, ConversationId, DeliveryStatus, InboundEvent, KeptMedia,
    Message, MessageId, Millis, PlatformMessageId, ThreadState,
};

/// The store as the rest of the gateway holds it.
pub type SharedStore = Arc<dyn Store>;

/// Everything a backend provides.
pub trait Store:
    Inbox
    + Outbox
    + Conversations
    + Journal
    + Queue
    + Instances
    + Consents
    + Notifications
    + Batches
    + WebhookOutbox
    + Commerce
{
}
impl<T> Store for T where
    T: Inbox
        + Outbox
        + Conversations
        + Journal
        + Queue
        + Instances
        + Consents
        + Notifications
        + Batches
        + WebhookOutbox
        + Commerce
{
}

/// The backend's own error, kept as the source of a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error; worth retrying.
    #[error("store unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A write broke a rule of the stored data (a unique or a foreign key): the same write
    /// fails again, so it is not worth retrying.
    #[error("store conflict: {what}")]
    Conflict {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A stored value could not be read back (a bug or a foreign write).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The inbox event belongs to another instance now (this one lost its partition): the
    /// work on it is dropped here, and its new holder does it.
    #[error("moved to another instance: {0}")]
    Moved(String),
}

impl StoreError {
    /// Unavailable, for a reason of our own.
    pub fn unavailable(what: impl Into<String>) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            cause: None,
        }
    }

    /// Unavailable because of the backend's error `cause`, kept as the source.
    pub fn unavailable_by(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            cause: Some(Box::new(cause)),
        }
    }
}

/// What `ingest` did with a batch of events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// New events appended to the inbox (or applied, for delivery statuses).
    pub accepted: usize,
    /// Events already seen, ignored.
    pub duplicates: usize,
    /// The inbox entries appended for processing, in order (delivery statuses are applied at
    /// once and not among them): what ties a webhook to the turns it starts.
    pub appended: Vec<Appended>,
}

/// An inbox entry `ingest` appended: its place in the inbox and its conversation (after the
/// contact's aliases were resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub conversation: ConversationId,
}

impl IngestOutcome {
    /// Records the first appended entry into the current span's `seq` and `conversation`
    /// fields, and every one in a debug line: the request's trace then names the
    /// conversation and the inbox entry its turn will carry.
    pub fn trace(&self) {
        if let Some(first) = self.appended.first() {
            let span = tracing::Span::current();
            span.record("seq", first.seq);
            span.record("conversation", tracing::field::display(&first.conversation));
        }
        for appended in &self.appended {
            tracing::debug!(seq = appended.seq, conversation = %appended.conversation, "inbox entry appended");
        }
    }
}

/// A webhook request as it was received, its credentials removed (signatures, tokens and
/// secrets: see `crate::credentials::kept_request`): kept beside the inbox entries it produced,
/// so an incident can be exported and replayed (`concierge inbox export`, `concierge
/// replay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawWebhook {
    pub channel: ChannelId,
    /// The channel's kind (`whatsapp`, `telegram`…), as the export names it.
    pub kind: String,
    pub received_at: Millis,
    /// The query string, without credentials; `None` when the URL had none.
    pub query: Option<String>,
    /// The headers in the order received, names in lower case; a value that is not UTF-8 is
    /// kept lossily.
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
}

/// Which kept webhooks to read: all of them, oldest first, unless narrowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFilter {
    pub channel: Option<ChannelId>,
    /// Only webhooks that produced an inbox entry of this conversation.
    pub conversation: Option<ConversationId>,
    /// Only webhooks received at or after this time.
    pub since: Option<Millis>,
    /// Only webhooks after this one (a [`KeptWebhook::cursor`]), to read page by page.
    pub after: Option<String>,
    pub limit: usize,
}

/// A kept webhook, with where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptWebhook {
    /// Opaque; pass it as [`RawFilter::after`].
    pub cursor: String,
    pub raw: RawWebhook,
}

/// A fault a platform reported about a channel, as the channel's health record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFault {
    pub channel: ChannelId,
    pub fault: concierge_domain::ChannelFault,
    pub at: Millis,
}

/// How long a channel's faults are kept, and how many of a channel at most.
pub const FAULT_RETENTION_MS: Millis = 30 * 24 * 3600 * 1000;
pub const FAULTS_PER_CHANNEL: usize = 200;

/// An inbox event waiting for (or done with) processing.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// The inbox order; processing order per conversation follows it.
    pub seq: i64,
    pub conversation: ConversationId,
    pub event: InboundEvent,
    /// The stored customer message, for message events.
    pub message: Option<MessageId>,
    pub received_at: Millis,
}

/// A reply decided while processing one inbox event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReply {
    /// Stable across re-processing of the same event, so a replayed turn cannot queue the same
    /// reply twice.
    pub idempotency_key: String,
    pub author: Author,
    pub content: Content,
    pub reply_to: Option<PlatformMessageId>,
    /// The platform refused this reply because its reply window had closed: the channel
    /// sends its re-engagement template instead.
    pub reengage: bool,
}

/// What a concierge's reply request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConciergeReplied {
    /// The messages, in order.
    pub ids: Vec<MessageId>,
    /// The request's key was used already: these are the messages it queued then.
    pub replayed: bool,
}

/// Everything one processed inbox event changes, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOutcome {
    pub replies: Vec<NewReply>,
    /// The thread state change the turn decided, when it decided one.
    pub thread: Option<ThreadChange>,
    /// Earlier inbox events of the same conversation answered by this same turn (a burst of
    /// messages): marked done with it.
    pub absorbed: Vec<i64>,
    /// Internal notes: the agents' audit trail, never sent to the customer.
    pub notes: Vec<NewNote>,
    /// A request for a human, recorded only if the thread change that queues it applies.
    pub handoff: Option<NewHandoff>,
    /// What the turn's LLM calls cost.
    pub usage: Option<TurnUsage>,
}

/// An internal note, written by an agent or by the gateway about an agent's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    /// Who wrote it: an agent's name, or `gateway`.
    pub author: String,
    pub body: String,
}

/// A stored internal note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub seq: i64,
    pub conversation: ConversationId,
    pub author: String,
    pub body: String,
    pub created_at: Millis,
}

/// A request for a human concierge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewHandoff {
    /// The id the queued thread state refers to.
    pub id: String,
    pub reason: String,
    pub priority: Option<String>,
    pub team: Option<String>,
    /// The agent (or `gateway`, or a concierge) that asked.
    pub requested_by: String,
    /// The handoff brief, as JSON (the engine's handoff `Brief`; the store keeps it opaque).
    pub brief: Option<String>,
    /// When the first-response SLA runs out.
    pub sla_due_at: Option<Millis>,
}

/// A stored handoff: the request, and how the queue dealt with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub id: String,
    pub conversation: ConversationId,
    pub reason: String,
    pub priority: Option<String>,
    pub team: Option<String>,
    pub requested_by: String,
    pub created_at: Millis,
    pub brief: Option<String>,
    pub sla_due_at: Option<Millis>,
    /// When the SLA ran out without a first response (the priority was raised then).
    pub breached_at: Option<Millis>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<Millis>,
    /// When a concierge first answered the customer.
    pub first_response_at: Option<Millis>,
    /// The concierge the queue offered the thread to, until `offer_until`.
    pub offered_to: Option<String>,
    pub offer_until: Option<Millis>,
    /// When it ended (released to the bot or resolved), and how.
    pub closed_at: Option<Millis>,
    pub outcome: Option<String>,
    /// The concierge's note for the bot, when released.
    pub release_note: Option<String>,
}

impl Handoff {
    /// Whether the handoff is still open (the thread queued or owned by a person).
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// A thread held by the queue or a concierge, with what the queue shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub conversation: Conversation,
    pub contact_name: Option<String>,
    /// The open handoff (none for a thread taken over before any handoff was recorded).
    pub handoff: Option<Handoff>,
    /// The customer's latest message.
    pub last_inbound: Option<Message>,
}

/// What a thread move does to the conversation's open handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffChange {
    None,
    /// Records a new handoff (a proactive takeover, or one the console opened).
    Open(NewHandoff),
    /// Ends the open handoff: `released` (back to the bot, with an optional note for it) or
    /// `resolved`.
    Close {
        outcome: String,
        note: Option<String>,
    },
    /// Puts the open handoff back in the queue, for another team when given; its offer and
    /// owner are cleared, and its first-response SLA starts again with `sla_due_at`.
    Requeue {
        team: Option<String>,
        sla_due_at: Option<Millis>,
    },
}

/// An audit record: who did what, to which conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub conversation: Option<ConversationId>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub conversation: Option<String>,
    pub detail: String,
}

/// A thread state change made outside a turn (by a concierge or the queue), applied only if
/// the thread is still in `from`: two concierges claiming at once cannot both win.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadMove {
    pub conversation: ConversationId,
    pub from: ThreadState,
    pub to: ThreadState,
    pub handoff: HandoffChange,
    pub note: Option<NewNote>,
    pub audit: NewAudit,
}

/// A handoff whose first-response SLA ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaBreach {
    pub handoff: String,
    pub conversation: ConversationId,
    pub team: Option<String>,
    /// The raised priority.
    pub priority: String,
}

/// A system's API token, as kept: whose it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub service: String,
    pub scopes: Vec<String>,
}

/// A concierge's availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub concierge: String,
    /// `online` or `away`.
    pub status: String,
    /// When their console was last connected.
    pub seen_at: Millis,
    /// When they last took a thread (or came online): the longest idle is offered first.
    pub idle_since: Millis,
}

/// Tokens spent by LLM calls, for one turn or summed over a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub llm_calls: u64,
}

impl TurnUsage {
    pub fn add(&mut self, other: TurnUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.llm_calls += other.llm_calls;
    }

    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// A rolling summary of a conversation's older messages, those with `seq <= upto_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub text: String,
    pub upto_seq: i64,
}

/// A thread state change made from a state the turn read. It applies only if the thread is
/// still in `from` when the turn completes: a concierge who took the thread meanwhile wins,
/// and the turn's automated replies are then refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadChange {
    pub from: ThreadState,
    pub to: ThreadState,
}

/// What `complete` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Whether the turn's thread change applied (and with it, its handoff).
    pub thread_changed: bool,
    /// The replies queued in the outbox (new ones only).
    pub queued: Vec<MessageId>,
    /// Automated replies refused because a human or the queue holds the thread.
    pub refused: usize,
    /// Whether the event had already been completed (a replay): nothing was written.
    pub already_done: bool,
}

/// An outbox entry handed to the delivery worker.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub idempotency_key: String,
    pub message: Message,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// When the first attempt was made: the give-up clock starts there.
    pub first_attempt_at: Millis,
    /// Whether an earlier attempt may have reached the platform without our knowing (the
    /// gateway stopped while it was in flight): the adapter should send idempotently.
    pub maybe_sent: bool,
    /// See [`NewReply::reengage`].
    pub reengage: bool,
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel: ChannelId,
    pub contact: ContactId,
    pub thread: ThreadState,
    pub created_at: Millis,
    pub last_message_at: Millis,
    /// Where the conversation came from (a Telegram deep link's start parameter).
    pub source: Option<String>,
}

#[async_trait]
pub trait Inbox: Send + Sync {
    /// Appends events atomically, ignoring ones already seen (by event id, or for messages
    /// by platform message id). An edit replaces the content of the customer's message.
    /// Delivery statuses are applied to their message at once (they need no turn); a status
    /// for a message not yet marked sent is kept and applied when it is. A contact's change
    /// is applied at once too: a changed number links the new id to the contact and becomes
    /// the conversation's address, and both kinds leave a note for concierges. A channel
    /// fault goes to the channel's health record, not to a conversation. Typing signals are
    /// not stored.
    async fn ingest(&self, events: &[InboundEvent]) -> Result<IngestOutcome, StoreError>;

    /// `ingest`, keeping the webhook's raw request in the same write, once, referenced from
    /// the inbox entries it produced. It is kept when at least one event is new by event id,
    /// to no conversation when none of them touched one (typing, a channel fault, or no
    /// event at all): a webhook of nothing but retries keeps none (the first delivery's
    /// record stands).
    /// Raw records expire: after `dedupe_ttl_secs` on Redis, `raw_retention_days` on SQLite.
    async fn ingest_raw(
        &self,
        events: &[InboundEvent],
        raw: RawWebhook,
    ) -> Result<IngestOutcome, StoreError>;

    /// The raw webhooks kept, oldest first (in the order they were stored), at most
    /// `filter.limit`.
    async fn raw_webhooks(&self, filter: RawFilter) -> Result<Vec<KeptWebhook>, StoreError>;

    /// The channel faults ingest kept (`EventKind::ChannelError`), newest first, at most
    /// `limit` (and at most [`FAULTS_PER_CHANNEL`] of a channel, for 30 days).
    async fn channel_faults(&self, limit: usize) -> Result<Vec<KeptFault>, StoreError>;

    /// Unfinished inbox events with `seq > after`, oldest first. An entry that cannot be read
    /// back (written by another version, or damaged) is set aside as done with the reason,
    /// logged, and not returned, so it cannot stall the inbox.
    async fn pending(&self, after: i64, limit: usize) -> Result<Vec<InboxEntry>, StoreError>;

    /// The inbox events this process should handle next, oldest first within each
    /// conversation, each handed out once per run. The embedded store has one process: it
    /// reads past `after` like `pending`. A shared store hands out the events of the
    /// partitions this instance holds (and ignores `after`).
    async fn take(&self, after: i64, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        self.pending(after, limit).await
    }

    /// Marks one inbox event (and the ones it absorbed) done together with its replies,
    /// thread state, notes, handoff and usage. Replies are checked against the thread state
    /// the turn was decided from: a turn that hands the thread to the queue still says so.
    async fn complete(&self, seq: i64, outcome: TurnOutcome) -> Result<Completion, StoreError>;
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims up to `limit` entries due at `now`, each the oldest open entry of its
    /// conversation, for `lease_ms`. An entry whose lease ran out is handed out again, marked
    /// `maybe_sent`.
    async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The platform accepted the message: it is never handed out again.
    async fn mark_sent(
        &self,
        id: i64,
        platform_id: Option<PlatformMessageId>,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// The platform reported a status of the reply `message` (sent on `channel` as
    /// `platform_id`): if its entry is still open (the answer to the send was lost, or the
    /// gateway stopped before recording it), it is marked sent now and never sent again.
    /// Returns whether an open entry was confirmed this way.
    async fn confirm_sent(
        &self,
        channel: &ChannelId,
        message: MessageId,
        platform_id: PlatformMessageId,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// A transient failure: try again at `at`. `maybe_sent` when the failed attempt may have
    /// reached the platform (a timeout after the request left).
    async fn retry_at(
        &self,
        id: i64,
        at: Millis,
        error: &str,
        maybe_sent: bool,
    ) -> Result<(), StoreError>;

    /// Given up: the message is marked failed with the reason.
    async fn mark_failed(
        &self,
        id: i64,
        code: Option<String>,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// When the next entry that `claim_due` could hand out is due, if any (entries waiting
    /// behind an earlier one of their conversation do not count).
    async fn next_due_at(&self) -> Result<Option<Millis>, StoreError>;

    /// Whether this outbound message was queued to re-engage after a closed reply window (a
    /// refusal of it must not queue another).
    async fn is_reengagement(&self, message: MessageId) -> Result<bool, StoreError>;

    /// Releases the delivery leases this gateway holds: for the embedded store, those of its
    /// previous run (single-instance startup); for a shared store, those this instance took
    /// (another instance's leases run out by themselves, their entries then handed out again
    /// marked `maybe_sent`). The entries in `keep` stay leased: their sends are still in the
    /// worker's hands (a worker that lost the answer to a claim releases what the claim may
    /// have leased, not what it is sending). Returns how many entries were released.
    async fn release_leases(&self, keep: &[i64]) -> Result<usize, StoreError>;
}

#[async_trait]
pub trait Conversations: Send + Sync {
    /// The id of this contact's conversation on this channel, whether or not it exists yet:
    /// keyed with the deployment's secret for a new one, the legacy id for one stored
    /// before ids were keyed. Ingest gives a new conversation the same id.
    async fn conversation_of(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<ConversationId, StoreError>;
    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// Messages of a conversation with `seq > after`, oldest first.
    async fn messages(
        &self,
        id: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// The last `limit` messages of a conversation, oldest first.
    async fn recent_messages(
        &self,
        id: &ConversationId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// What a turn answering up to message `upto` (a `seq`) reads: the last `limit` messages
    /// with `seq <= upto`, then the outbound ones written after it (replies of earlier turns,
    /// a concierge's), at most `limit` of those; oldest first. Customer messages after `upto`
    /// belong to later turns, however many are waiting.
    async fn messages_upto(
        &self,
        id: &ConversationId,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// When the customer last wrote in a conversation (their newest message's timestamp).
    async fn last_inbound_at(&self, id: &ConversationId) -> Result<Option<Millis>, StoreError>;

    /// The message a platform knows by this id, if we stored it.
    async fn message_by_platform_id(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
    ) -> Result<Option<Message>, StoreError>;

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// The thread state; a conversation never seen is in the initial state.
    async fn thread_state(&self, id: &ConversationId) -> Result<ThreadState, StoreError>;

    /// Moves a thread to a new state outside a turn (the console, a handoff).
    async fn set_thread_state(
        &self,
        id: &ConversationId,
        state: ThreadState,
    ) -> Result<(), StoreError>;

    /// Applies a delivery status to the message with that platform id, only forward.
    /// Returns whether it changed anything.
    async fn update_status(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
        status: DeliveryStatus,
    ) -> Result<bool, StoreError>;

    /// Records what became of a media message's bytes (`Content::Media::kept`). Returns
    /// whether the message is a media message (and now says so); any other is left alone.
    async fn set_media(&self, message: MessageId, kept: &KeptMedia) -> Result<bool, StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What instances sharing one store say to each other. The embedded store has one instance:
/// none of it applies.
#[async_trait]
pub trait Instances: Send + Sync {
    /// Rung when another instance appended inbox events this one should take.
    fn inbox_signal(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Console events between instances.
    fn fanout(&self) -> Option<Arc<dyn Fanout>> {
        None
    }

    /// Hands back this instance's share of the inbox when it stops, so another takes it
    /// over at once instead of after the lease runs out.
    async fn release_inbox(&self) {}
}

/// Channels every instance hears, itself included: one per [`Topic`].
pub trait Fanout: Send + Sync {
    fn publish(&self, topic: Topic, payload: String);
    fn subscribe(&self, topic: Topic) -> broadcast::Receiver<String>;
}

/// What goes through a [`Fanout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Console events (the engine's `ConsoleEvent`, as JSON).
    Console,
    /// Web chat pushes to visitors' open pages.
    Chat,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Console, Topic::Chat];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Console => "console",
            Topic::Chat => "chat",
        }
    }
}

/// What the agents leave beside a conversation: notes, handoff requests, token usage and the
/// rolling summary of its history.
#[async_trait]
pub trait Journal: Send + Sync {
    /// The internal notes of a conversation, oldest first.
    async fn notes(&self, id: &ConversationId) -> Result<Vec<Note>, StoreError>;

    /// The handoff requests of a conversation, oldest first.
    async fn handoffs(&self, id: &ConversationId) -> Result<Vec<Handoff>, StoreError>;

    /// The tokens spent on a conversation so far.
    async fn usage(&self, id: &ConversationId) -> Result<TurnUsage, StoreError>;

    /// The tokens spent on a conversation by the turns completed at or after `since`: the
    /// rolling window of `[agents] conversation_token_budget`. A backend may forget the
    /// records of turns older than a week (Redis does).
    async fn usage_since(
        &self,
        id: &ConversationId,
        since: Millis,
    ) -> Result<TurnUsage, StoreError>;

    async fn summary(&self, id: &ConversationId) -> Result<Option<Summary>, StoreError>;

    /// Replaces the summary, unless the stored one already covers more messages.
    async fn set_summary(&self, id: &ConversationId, summary: Summary) -> Result<(), StoreError>;
}

/// The handoff queue and the people who work it: thread moves, concierge replies, SLA,
/// offers, tokens, presence and the audit log.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Every conversation held by the queue or a concierge, with its open handoff.
    async fn queue(&self) -> Result<Vec<QueueEntry>, StoreError>;

    /// The name the customer of a conversation goes by, when the platform told it.
    async fn contact_name(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<String>, StoreError>;

    /// Applies a thread move if the thread is still in `move.from`, with its handoff change,
    /// note and audit record, in one transaction. A move to `Human` records the claim on the
    /// open handoff. A move to `Queued` or `Human` cancels the agents' replies still waiting
    /// in the outbox (one already in flight cannot be recalled). Returns whether it applied.
    async fn move_thread(&self, change: ThreadMove) -> Result<bool, StoreError>;

    /// A concierge's replies: queued in the outbox only while `concierge` owns the thread,
    /// in the same transaction as the check. `None` when they do not own it. When the first
    /// reply's idempotency key was used already, nothing is queued nor audited: the messages
    /// of the keys already used come back as `replayed`, whoever owns the thread now.
    async fn concierge_reply(
        &self,
        conversation: &ConversationId,
        concierge: &str,
        replies: Vec<NewReply>,
        audit: NewAudit,
    ) -> Result<Option<ConciergeReplied>, StoreError>;

    /// An internal note written by a concierge.
    async fn add_note(
        &self,
        conversation: &ConversationId,
        note: NewNote,
        audit: NewAudit,
    ) -> Result<(), StoreError>;

    /// Marks every open handoff whose first-response SLA ran out at `now` as breached, raising
    /// its priority one step; each is returned once.
    async fn sla_breaches(&self, now: Millis) -> Result<Vec<SlaBreach>, StoreError>;

    /// Offers a queued handoff to a concierge until `until`, unless it is no longer queued or
    /// a live offer stands. Returns whether the offer was made.
    async fn offer(
        &self,
        handoff: &str,
        concierge: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError>;

    /// Keeps the hash of a concierge's API token.
    async fn add_token(&self, hash: &str, concierge: &str) -> Result<(), StoreError>;

    /// The concierge a token hash belongs to.
    async fn token_owner(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// Revokes every token of a concierge; returns how many there were.
    async fn revoke_tokens(&self, concierge: &str) -> Result<usize, StoreError>;

    /// Keeps the hash of a system's API token (not a person's), with its scopes.
    async fn add_service_token(
        &self,
        hash: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<(), StoreError>;

    /// The service, and its scopes, a token hash belongs to.
    async fn service_token(&self, hash: &str) -> Result<Option<ServiceToken>, StoreError>;

    /// Revokes every token of a service; returns how many there were.
    async fn revoke_service_tokens(&self, service: &str) -> Result<usize, StoreError>;

    /// Sets a concierge's status (`online`, `away`) or, with `None`, only notes that their
    /// console is connected.
    async fn touch_presence(
        &self,
        concierge: &str,
        status: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError>;

    async fn presence(&self) -> Result<Vec<Presence>, StoreError>;

    /// Forgets a concierge's presence: they are listed offline until a console connects
    /// again (a revoked token, say).
    async fn clear_presence(&self, concierge: &str) -> Result<(), StoreError>;

    async fn audit(&self, entry: NewAudit) -> Result<(), StoreError>;

    /// The latest audit records, newest first.
    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
}
