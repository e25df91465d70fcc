//! The orchestrator's public face: what it holds, how it is built, and what it may ask of a
//! channel. The dispatcher reads unfinished inbox events in inbox order and hands each to its
//! conversation's lane; a lane handles its events one after the other and ends when it runs
//! dry. Lanes of different conversations run in parallel, up to a bound.

mod decide;
mod dispatcher;
mod lane;
mod shape;

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use super::responder::Responder;
use super::throttle::ContactRate;
use crate::handoff::Desk;
use concierge_domain::{ChannelId, InboundEvent, PlatformMessageId};
use concierge_store::{Conversations, Inbox, Instances, Journal, Outbox, SharedStore};
use concierge_telemetry::Metrics;

/// The most inbox events held in memory between the inbox and the lanes (or twice the
/// parallel lanes, when more); past it the dispatcher waits for lanes to finish some, and
/// the rest of a backlog stays in the store.
const IN_MEMORY: usize = 4096;

/// Feeds inbox events into per-conversation lanes.
#[derive(Clone)]
pub struct Orchestrator {
    // The store by the roles the lanes use, one handle each, so every step shows which part
    // of the store it depends on.
    /// For the events to take and complete.
    inbox: Arc<dyn Inbox>,
    /// For the other instances sharing the store: their wake-ups, the hand-over at shutdown.
    instances: Arc<dyn Instances>,
    /// For thread states, and the sends that window-closed reports refer to.
    conversations: Arc<dyn Conversations>,
    /// For whether a refused reply was itself a re-engagement (never re-sent: no loop).
    outbox: Arc<dyn Outbox>,
    /// For the open handoff's team, which the consoles are told.
    journal: Arc<dyn Journal>,
    /// The whole store, for the responders only: a [`Turn`](super::Turn) carries it, and each
    /// responder reads the roles it needs.
    responders_store: SharedStore,
    responder: Arc<dyn Responder>,
    /// Rung by the webhook handlers after an ingest.
    inbox_wake: Arc<Notify>,
    /// Rung after a turn queued replies.
    outbox_wake: Arc<Notify>,
    permits: Arc<Semaphore>,
    /// Events held in memory at most (see [`IN_MEMORY`]).
    in_memory: usize,
    hints: Arc<dyn ChannelHints>,
    metrics: Metrics,
    /// See [`crate::orchestrator::OrchestratorConfig::burst_window_ms`].
    burst_window_ms: i64,
    /// See [`crate::orchestrator::OrchestratorConfig::contact_turns_per_minute`]; `None`: no limit.
    contact_rate: Option<Arc<ContactRate>>,
    /// The handoff desk: completes handoffs (team, SLA, brief, acknowledgement) and tells
    /// the consoles about them and about customer messages in held threads.
    desk: Option<Arc<Desk>>,
    /// Tells `[[webhooks]]` of customers' messages and handoffs.
    pub(super) webhooks: crate::webhooks::Webhooks,
    /// Fetches customers' media before their turn; `None`: media is read as attached only.
    media: Option<super::MediaIntake>,
    /// What still answers while a person or the queue holds the thread (the consent
    /// keywords: an opt-out is honoured whoever has the conversation).
    held: Option<Arc<dyn Responder>>,
}

/// What the lanes may ask of a conversation's channel without knowing which platform it is.
/// Must not block: it runs inside the lane.
pub trait ChannelHints: Send + Sync {
    /// A turn starts on a customer's message: the channel may show it read and the bot typing.
    fn turn_started(&self, event: &InboundEvent, message: &PlatformMessageId);

    /// A customer's message is handled, whoever holds the thread (a human too).
    fn received(&self, _event: &InboundEvent, _message: &PlatformMessageId) {}

    /// The longest text one message may carry on this channel; longer replies are split
    /// into several, each its own outbox entry (so a retry never repeats a part already sent).
    fn max_text_chars(&self, _channel: &ChannelId) -> Option<usize> {
        None
    }

    /// Whether a media message can carry its caption on this channel.
    fn media_captions(&self, _channel: &ChannelId) -> bool {
        true
    }

    /// What the channel can show, for the agents' prompts.
    fn profile(&self, _channel: &ChannelId) -> ChannelProfile {
        ChannelProfile::default()
    }

    /// The customer's phone number (E.164) when the channel vouches for it.
    fn phone(&self, _event: &InboundEvent) -> Option<String> {
        None
    }
}

/// What a channel can show, told to the agents without naming the platform's API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelProfile {
    pub kind: String,
    pub buttons: usize,
    pub list_rows: usize,
    pub media: bool,
    pub max_text_chars: Option<usize>,
}

/// Hints that go nowhere.
pub struct NoHints;

impl ChannelHints for NoHints {
    fn turn_started(&self, _event: &InboundEvent, _message: &PlatformMessageId) {}
}

impl Orchestrator {
    pub fn new(
        store: SharedStore,
        responder: Arc<dyn Responder>,
        inbox_wake: Arc<Notify>,
        outbox_wake: Arc<Notify>,
        max_parallel: usize,
        hints: Arc<dyn ChannelHints>,
        metrics: Metrics,
    ) -> Self {
        let inbox: Arc<dyn Inbox> = store.clone();
        let instances: Arc<dyn Instances> = store.clone();
        let conversations: Arc<dyn Conversations> = store.clone();
        let outbox: Arc<dyn Outbox> = store.clone();
        let journal: Arc<dyn Journal> = store.clone();
        Self {
            inbox,
            instances,
            conversations,
            outbox,
            journal,
            responders_store: store,
            responder,
            inbox_wake,
            outbox_wake,
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            in_memory: IN_MEMORY.max(max_parallel.saturating_mul(2)),
            hints,
            metrics,
            burst_window_ms: 0,
            contact_rate: None,
            desk: None,
            webhooks: crate::webhooks::Webhooks::none(),
            media: None,
            held: None,
        }
    }

    /// Lets `responder` answer while a person or the queue holds the thread.
    pub fn with_held_responder(mut self, responder: Arc<dyn Responder>) -> Self {
        self.held = Some(responder);
        self
    }

    /// Hands handoffs to the desk.
    pub fn with_webhooks(mut self, webhooks: crate::webhooks::Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    pub fn with_desk(mut self, desk: Arc<Desk>) -> Self {
        self.desk = Some(desk);
        self
    }

    /// Fetches the media of customers' messages before their turn.
    pub fn with_media(mut self, media: super::MediaIntake) -> Self {
        self.media = Some(media);
        self
    }

    /// Answers customer messages that arrive within `ms` of each other in one turn.
    pub fn with_burst_window(mut self, ms: u64) -> Self {
        self.burst_window_ms = i64::try_from(ms).unwrap_or(i64::MAX / 4);
        self
    }

    /// Starts at most `per_minute` turns a minute per conversation, after `burst` back to
    /// back; messages that come faster wait and are answered together. 0: no limit.
    pub fn with_contact_rate(mut self, per_minute: u32, burst: u32) -> Self {
        self.contact_rate = ContactRate::new(per_minute, burst).map(Arc::new);
        self
    }
}
