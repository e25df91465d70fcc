//! The dispatcher and its lanes. The dispatcher reads unfinished inbox events in inbox order
//! and hands each to its conversation's lane; a lane handles its events one after the other
//! and ends when it runs dry. Lanes of different conversations run in parallel, up to a bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::responder::{DecidedBy, Responder, Turn};
use super::throttle::ContactRate;
use crate::handoff::{ConsoleEvent, Desk, Draft, EventKind as ConsoleKind};
use concierge_domain::{
    ChannelId, Content, ConversationId, Direction, EventKind, InboundEvent, InboundMessage,
    PlatformMessageId, ThreadState, now_millis, split_text,
};
use concierge_store::{InboxEntry, NewReply, SharedStore, StoreError, ThreadChange, TurnOutcome};
use concierge_telemetry::{Metrics, Waiting};

/// How long a window-closed report waits for the record of the send it refers to.
const WINDOW_CLOSED_PATIENCE_MS: i64 = 120_000;
/// How many inbox events the dispatcher reads at once.
const PAGE: usize = 256;
/// The dispatcher looks at the inbox at least this often, even without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// The most inbox events held in memory between the inbox and the lanes (or twice the
/// parallel lanes, when more); past it the dispatcher waits for lanes to finish some, and
/// the rest of a backlog stays in the store.
const IN_MEMORY: usize = 4096;
/// The most messages one burst gathers, and the longest it lasts in windows: a customer who
/// never stops typing still gets answers.
const MAX_BURST: usize = 20;
const MAX_BURST_WINDOWS: i64 = 10;
/// The most messages one turn gathers while the contact's rate limit holds it: a flood is
/// answered in few turns, each reading a bounded prompt; what is left waits for the next turn.
const MAX_THROTTLED_BURST: usize = 100;

/// An inbox event on its way through a lane, holding its place in the in-memory budget and
/// in `lane_queue_depth` until its turn takes it (or the lane lets it go).
struct Queued {
    entry: InboxEntry,
    _budget: OwnedSemaphorePermit,
    _waiting: Waiting,
}

/// Events travel boxed: a channel allocates room for 32 of what it carries at once, and a
/// lane rarely holds more than one; boxed, an idle lane's channel costs 256 bytes, not 12 KB.
type LaneMap = Arc<Mutex<HashMap<ConversationId, mpsc::UnboundedSender<Box<Queued>>>>>;

/// Feeds inbox events into per-conversation lanes.
#[derive(Clone)]
pub struct Orchestrator {
    store: SharedStore,
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
        Self {
            store,
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
        }
    }

    /// Hands handoffs to the desk.
    pub fn with_desk(mut self, desk: Arc<Desk>) -> Self {
        self.desk = Some(desk);
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

    /// Runs until `shutdown` fires, then lets every lane finish the events it holds.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes: LaneMap = Arc::default();
        let budget = Arc::new(Semaphore::new(self.in_memory));
        let mut tasks = JoinSet::new();
        // Everything up to `cursor` has been handed to a lane in this run.
        let mut cursor = 0i64;
        // Rung when another instance sharing the store appended events for this one.
        let remote = self.store.inbox_signal();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let room = budget.available_permits().min(PAGE);
            if room == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tasks.join_next() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            let page = match self.store.take(cursor, room).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the inbox; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(POLL) => continue,
                    }
                }
            };
            let full = page.len() == room;
            for entry in page {
                let Ok(permit) = budget.clone().try_acquire_owned() else {
                    break;
                };
                cursor = cursor.max(entry.seq);
                let queued = Queued {
                    entry,
                    _budget: permit,
                    _waiting: self.metrics.lane_event_waiting(),
                };
                self.dispatch(queued, &lanes, &mut tasks, &shutdown);
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a lane stopped abnormally");
                }
            }
            if full {
                continue;
            }
            let remote_wake = async {
                match &remote {
                    Some(remote) => remote.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inbox_wake.notified() => {}
                _ = remote_wake => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a lane stopped abnormally");
            }
        }
        // What is left unfinished goes to another instance now rather than after a lease.
        self.store.release_inbox().await;
    }

    fn dispatch(
        &self,
        entry: Queued,
        lanes: &LaneMap,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        // The map lock makes "send to a lane" and "a lane ends because it is empty" exclusive,
        // so no entry can be sent to a lane that has just decided to end.
        let mut map = lanes.lock().unwrap_or_else(|e| e.into_inner());
        let conversation = entry.entry.conversation.clone();
        let entry = Box::new(entry);
        let entry = match map.get(&conversation) {
            Some(sender) => match sender.send(entry) {
                Ok(()) => return,
                Err(returned) => returned.0,
            },
            None => entry,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        // A fresh channel's receiver is alive: this send cannot fail.
        let _ = sender.send(entry);
        map.insert(conversation.clone(), sender);
        drop(map);
        let lane = Lane {
            conversation,
            done_upto: 0,
            receiver,
            lanes: lanes.clone(),
            orchestrator: self.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(lane.run());
    }
}

/// How one try at a turn ended.
enum Attempt {
    Done,
    /// Worth another try (a store hiccup, a responder not ready).
    Again,
    /// The event belongs to another instance now.
    Moved,
}

struct Lane {
    conversation: ConversationId,
    /// The newest inbox event this lane completed: a copy of an event at or before it (a
    /// shared store handing an event out again after a partition changed hands) is skipped.
    done_upto: i64,
    receiver: mpsc::UnboundedReceiver<Box<Queued>>,
    lanes: LaneMap,
    orchestrator: Orchestrator,
    shutdown: CancellationToken,
}

/// The platform ids of a turn's customer messages, comma-separated, for the `turn` span: they
/// tie the turn to the webhook that brought them. Written only when the span is logged.
struct PlatformIds<'a>(&'a [InboxEntry]);

impl std::fmt::Display for PlatformIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = self.0.iter().filter_map(|e| match &e.event.kind {
            EventKind::Message(m) => Some(&m.platform_id),
            _ => None,
        });
        for (i, id) in ids.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

/// A customer message that may start or join a burst (a reaction asks nothing: it does not).
fn burstable(entry: &InboxEntry) -> bool {
    matches!(&entry.event.kind, EventKind::Message(m) if !matches!(m.content, Content::Reaction { .. }))
}

impl Lane {
    /// The next event for this lane, or `None` when it ran dry (the lane then ends).
    fn next(&mut self) -> Option<Queued> {
        if let Ok(queued) = self.receiver.try_recv() {
            return Some(*queued);
        }
        let mut map = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        match self.receiver.try_recv() {
            Ok(queued) => Some(*queued),
            Err(_) => {
                map.remove(&self.conversation);
                None
            }
        }
    }

    /// Gathers the customer messages that follow `first` within the burst window: each one
    /// arriving within the window of the one before. Returns the burst and the first event
    /// that does not belong to it.
    async fn gather(&mut self, first: Queued) -> (Vec<Queued>, Option<Queued>) {
        let window = self.orchestrator.burst_window_ms;
        let mut burst = vec![first];
        if window == 0 || !burstable(&burst[0].entry) {
            return (burst, None);
        }
        let started = burst[0].entry.received_at;
        loop {
            let last = burst[burst.len() - 1].entry.received_at;
            if burst.len() >= MAX_BURST || last - started >= window * MAX_BURST_WINDOWS {
                return (burst, None);
            }
            let wait_ms = (last + window - now_millis()).max(0);
            let next = match self.receiver.try_recv() {
                Ok(next) => Some(next),
                Err(_) if wait_ms == 0 => None,
                Err(_) => tokio::select! {
                    next = self.receiver.recv() => next,
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => None,
                    _ = self.shutdown.cancelled() => None,
                },
            };
            let Some(next) = next.map(|boxed| *boxed) else {
                return (burst, None);
            };
            if next.entry.seq <= self.done_upto {
                continue;
            }
            if burstable(&next.entry) && next.entry.received_at - last <= window {
                burst.push(next);
            } else {
                return (burst, Some(next));
            }
        }
    }

    /// Holds a customer's burst until the contact's rate limit lets a turn start, gathering
    /// the messages that arrive meanwhile into it (up to [`MAX_THROTTLED_BURST`]): a flood is
    /// answered in few turns, in order, and every message is in one of them. An event that
    /// cannot join (not a customer message, or past the cap) waits behind the burst in
    /// `after`, as after [`Lane::gather`]. A thread a person holds is not held back: no LLM
    /// answers it, and the console hears the customer at once. Returns false if shutdown
    /// came first.
    async fn throttle(&mut self, burst: &mut Vec<Queued>, after: &mut Option<Queued>) -> bool {
        let Some(rate) = self.orchestrator.contact_rate.clone() else {
            return true;
        };
        if !burst.first().is_some_and(|q| burstable(&q.entry)) {
            return true;
        }
        let mut since: Option<Instant> = None;
        loop {
            let wait = match rate.try_take(&self.conversation, Instant::now()) {
                Ok(()) => break,
                Err(wait) => wait,
            };
            if since.is_none() {
                since = Some(Instant::now());
                if !self.bot_may_reply().await {
                    return true;
                }
            }
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let next = match after.take() {
                    Some(next) => Some(next),
                    None if burst.len() >= MAX_THROTTLED_BURST => None,
                    None => tokio::select! {
                        next = self.receiver.recv() => next.map(|boxed| *boxed),
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = self.shutdown.cancelled() => return false,
                    },
                };
                match next {
                    Some(next) if next.entry.seq <= self.done_upto => {}
                    Some(next) if burstable(&next.entry) && burst.len() < MAX_THROTTLED_BURST => {
                        burst.push(next);
                    }
                    other => {
                        // Nothing more may join: wait out the limit.
                        *after = other;
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => break,
                            _ = self.shutdown.cancelled() => return false,
                        }
                    }
                }
            }
        }
        if let Some(since) = since {
            let channel = burst.first().map(|q| q.entry.event.channel.clone());
            if let Some(channel) = channel {
                self.orchestrator
                    .metrics
                    .throttled(channel.as_str(), burst.len() as u64);
                tracing::info!(
                    conversation = %self.conversation,
                    %channel,
                    messages = burst.len(),
                    waited_ms = since.elapsed().as_millis() as u64,
                    "the contact writes faster than the turn rate limit: messages answered together"
                );
            }
        }
        true
    }

    /// Whether the bot answers the conversation's next customer message (a store failure
    /// says yes: the limit then applies, which is always safe).
    async fn bot_may_reply(&self) -> bool {
        match self
            .orchestrator
            .store
            .thread_state(&self.conversation)
            .await
        {
            Ok(state) => state.on_customer_message().bot_may_reply(),
            Err(_) => true,
        }
    }

    async fn run(mut self) {
        let mut held: Option<Queued> = None;
        loop {
            let first = match held.take() {
                Some(queued) => queued,
                None => match self.next() {
                    Some(queued) => queued,
                    None => return,
                },
            };
            if first.entry.seq <= self.done_upto {
                continue;
            }
            let (mut burst, mut after) = self.gather(first).await;
            if !self.throttle(&mut burst, &mut after).await {
                // Shutdown came while the limit held the burst: it stays unfinished in the
                // inbox, with everything behind it, for the next start.
                let mut map = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
                map.remove(&self.conversation);
                return;
            }
            held = after;
            let entries: Vec<InboxEntry> = burst.into_iter().map(|q| q.entry).collect();
            let last = entries.last().map_or(0, |e| e.seq);
            if self.handle(entries).await {
                self.done_upto = self.done_upto.max(last);
            } else {
                // Stopping before this event was completed: the events after it must not run
                // ahead of it. They all stay unfinished in the inbox for the next start.
                let mut map = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
                map.remove(&self.conversation);
                return;
            }
        }
    }

    /// Handles one event (or a burst of messages) until it is completed in the store; returns
    /// false if shutdown came first. A store failure is retried: the lane must not skip
    /// ahead, or order would break. The parallelism permit is held only while working, not
    /// while waiting to retry.
    #[tracing::instrument(name = "turn", skip_all, fields(conversation = %self.conversation, seq = burst.last().map(|e| e.seq), burst = burst.len(), messages = %PlatformIds(&burst)))]
    async fn handle(&self, burst: Vec<InboxEntry>) -> bool {
        let orchestrator = &self.orchestrator;
        let started = Instant::now();
        if let Some(first) = burst.first() {
            let lag_ms = now_millis() - first.received_at;
            orchestrator.metrics.inbox_lag(lag_ms as f64 / 1000.0);
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                permit = orchestrator.permits.clone().acquire_owned() => permit,
            };
            let Ok(_permit) = permit else {
                return false;
            };
            orchestrator.metrics.lanes_active(1);
            let attempt = self.attempt(&burst, started).await;
            orchestrator.metrics.lanes_active(-1);
            match attempt {
                Attempt::Done => return true,
                Attempt::Moved => return false,
                Attempt::Again => {}
            }
            drop(_permit);
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One try at deciding and completing an event.
    async fn attempt(&self, burst: &[InboxEntry], started: Instant) -> Attempt {
        let orchestrator = &self.orchestrator;
        let Some(entry) = burst.last() else {
            return Attempt::Done;
        };
        // A panicking responder is a bug; it must not kill the lane (the events queued behind
        // it would then run out of order). The event is completed without replies.
        let decided = std::panic::AssertUnwindSafe(self.decide(burst))
            .catch_unwind()
            .await;
        let (mut outcome, by) = match decided {
            Ok(Ok(decided)) => decided,
            Ok(Err(super::ResponderError::NotYet(why))) => {
                tracing::debug!(why, "the turn waits");
                return Attempt::Again;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot decide the turn; retrying");
                return Attempt::Again;
            }
            Err(_) => {
                tracing::error!("the responder panicked; the event is completed without a reply");
                (TurnOutcome::default(), "panic")
            }
        };
        outcome.absorbed = burst[..burst.len() - 1].iter().map(|e| e.seq).collect();
        let handoff = outcome
            .handoff
            .as_ref()
            .map(|h| (h.team.clone(), h.priority.clone()));
        match orchestrator.store.complete(entry.seq, outcome).await {
            Ok(completion) => {
                if completion.thread_changed
                    && let (Some((team, priority)), Some(desk)) = (handoff, &orchestrator.desk)
                {
                    orchestrator.metrics.handoff();
                    let mut event =
                        ConsoleEvent::new(ConsoleKind::Handoff, entry.conversation.clone(), team);
                    event.priority = priority;
                    desk.events.publish(event);
                }
                if completion.refused > 0 {
                    orchestrator
                        .metrics
                        .replies_refused(completion.refused as u64);
                    tracing::info!(
                        refused = completion.refused,
                        "automated replies refused: a human or the queue holds the thread"
                    );
                }
                if !completion.queued.is_empty() {
                    orchestrator.outbox_wake.notify_one();
                }
                orchestrator
                    .metrics
                    .turn(by, started.elapsed().as_secs_f64());
                tracing::debug!(by, replies = completion.queued.len(), "turn done");
                Attempt::Done
            }
            Err(StoreError::Moved(why)) => {
                // Another instance holds this conversation's partition now: it does this
                // event and the ones behind it; this lane lets them go.
                tracing::info!(%why, "the conversation moved to another instance");
                Attempt::Moved
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot complete the turn; retrying");
                Attempt::Again
            }
        }
    }

    /// The platform refused one of our replies because the customer service window had
    /// closed: queue it once more; the channel sends its re-engagement template in its place
    /// (or fails it with a clear reason when it has none).
    async fn window_closed(
        &self,
        entry: &InboxEntry,
        target: &PlatformMessageId,
    ) -> Result<(TurnOutcome, &'static str), super::ResponderError> {
        let store = &self.orchestrator.store;
        let Some(refused) = store
            .message_by_platform_id(&entry.event.channel, target)
            .await?
        else {
            // The platform can report the failure before our record of the send is written:
            // wait for it a little, then let it go.
            if now_millis() - entry.received_at < WINDOW_CLOSED_PATIENCE_MS {
                return Err(super::ResponderError::NotYet(
                    "the refused message is not recorded yet",
                ));
            }
            tracing::warn!(%target, "a window-closed report for a message we never recorded");
            return Ok((TurnOutcome::default(), "none"));
        };
        if refused.direction != Direction::Outbound
            || refused.content.is_template()
            || refused.conversation != entry.conversation
            || store.is_reengagement(refused.id).await?
        {
            // Templates and re-engagements themselves are not re-sent: no loop.
            return Ok((TurnOutcome::default(), "none"));
        }
        let reply = NewReply {
            idempotency_key: format!("window:{}:{}", entry.event.channel, target),
            author: refused.author,
            content: refused.content,
            reply_to: None,
            reengage: true,
        };
        Ok((
            TurnOutcome {
                replies: vec![reply],
                ..TurnOutcome::default()
            },
            "window_closed",
        ))
    }

    async fn decide(
        &self,
        burst: &[InboxEntry],
    ) -> Result<(TurnOutcome, &'static str), super::ResponderError> {
        let orchestrator = &self.orchestrator;
        let Some(entry) = burst.last() else {
            return Ok((TurnOutcome::default(), "none"));
        };
        let message = match &entry.event.kind {
            EventKind::Message(message) => message,
            EventKind::WindowClosed { target } => return self.window_closed(entry, target).await,
            EventKind::Started { .. } => {
                // A customer starting over reopens a closed thread; nothing to answer yet.
                let current = orchestrator.store.thread_state(&entry.conversation).await?;
                let reopened = current.clone().on_customer_message();
                let thread = (reopened != current).then_some(ThreadChange {
                    from: current,
                    to: reopened,
                });
                return Ok((
                    TurnOutcome {
                        thread,
                        ..TurnOutcome::default()
                    },
                    "started",
                ));
            }
            // Edits, and anything else that needs no answer, are recorded and done.
            _ => return Ok((TurnOutcome::default(), "none")),
        };
        if matches!(message.content, Content::Reaction { .. }) {
            // A reaction acknowledges; it asks nothing, so nothing answers it.
            return Ok((TurnOutcome::default(), "none"));
        }
        let messages: Vec<&InboundMessage> = burst
            .iter()
            .filter_map(|e| match &e.event.kind {
                EventKind::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        for e in burst {
            if let EventKind::Message(m) = &e.event.kind {
                orchestrator.hints.received(&e.event, &m.platform_id);
            }
        }
        let current = orchestrator.store.thread_state(&entry.conversation).await?;
        let thread = current.clone().on_customer_message();
        if !thread.bot_may_reply() {
            // A human or the queue holds the thread: the bot stays silent; the consoles hear
            // the customer.
            if let Some(desk) = &orchestrator.desk {
                let team = orchestrator
                    .store
                    .handoffs(&entry.conversation)
                    .await?
                    .into_iter()
                    .rev()
                    .find(|h| h.is_open())
                    .and_then(|h| h.team);
                for m in &messages {
                    let mut event = ConsoleEvent::new(
                        ConsoleKind::Message,
                        entry.conversation.clone(),
                        team.clone(),
                    );
                    event.text = Some(concierge_domain::clip_text(&m.content.describe(), 500));
                    if let ThreadState::Human { concierge } = &thread {
                        event.concierge = Some(concierge.clone());
                    }
                    desk.events.publish(event);
                }
            }
            return Ok((TurnOutcome::default(), "silent"));
        }
        orchestrator
            .hints
            .turn_started(&entry.event, &message.platform_id);
        let turn = Turn {
            entry,
            message,
            messages: &messages,
            burst,
            thread: &thread,
            store: &orchestrator.store,
            now: now_millis(),
        };
        let mut decision = orchestrator.responder.respond(&turn).await?;
        if let (Some(decision), Some(desk)) = (decision.as_mut(), &orchestrator.desk)
            && let Some(handoff) = decision.handoff.as_mut()
        {
            let text = turn.text();
            let spent = desk
                .prepare(Draft {
                    conversation: &entry.conversation,
                    channel: &entry.event.channel,
                    text: text.as_deref(),
                    handoff,
                    replies: &mut decision.replies,
                    notes: &mut decision.notes,
                    // No LLM brief when the LLM failed, or the conversation spent its budget.
                    llm_down: decision.by.llm_down(),
                    quiet: decision.by == DecidedBy::HoldingRepeatSuppressed,
                })
                .await;
            if spent.llm_calls > 0 {
                decision
                    .usage
                    .get_or_insert_with(Default::default)
                    .add(spent);
            }
        }
        let changed = (thread != current).then(|| ThreadChange {
            from: current.clone(),
            to: thread.clone(),
        });
        let Some(decision) = decision else {
            return Ok((
                TurnOutcome {
                    thread: changed,
                    ..TurnOutcome::default()
                },
                "none",
            ));
        };
        let quote = decision.quote;
        let limit = orchestrator.hints.max_text_chars(&entry.event.channel);
        let captions = orchestrator.hints.media_captions(&entry.event.channel);
        let mut replies = Vec::new();
        for (i, (author, content)) in decision.replies.into_iter().enumerate() {
            let parts = match (&content, limit) {
                (Content::Text { body }, Some(limit)) if body.chars().count() > limit => {
                    split_text(body, limit)
                        .into_iter()
                        .map(Content::text)
                        .collect()
                }
                (
                    Content::Media {
                        kind,
                        mime,
                        caption: Some(caption),
                        media,
                    },
                    _,
                ) if !captions => vec![
                    Content::Media {
                        kind: *kind,
                        mime: mime.clone(),
                        caption: None,
                        media: media.clone(),
                    },
                    Content::text(caption.clone()),
                ],
                _ => vec![content],
            };
            for (part, content) in parts.into_iter().enumerate() {
                // Part 0 keeps the key a whole reply would have: stable across versions.
                let key = match part {
                    0 => format!("{}:{}:{i}", entry.event.channel, entry.event.event_id),
                    n => format!("{}:{}:{i}.{n}", entry.event.channel, entry.event.event_id),
                };
                replies.push(NewReply {
                    idempotency_key: key,
                    author: author.clone(),
                    content,
                    reply_to: (quote && i == 0 && part == 0).then(|| message.platform_id.clone()),
                    reengage: false,
                });
            }
        }
        Ok((
            TurnOutcome {
                replies,
                thread: decision
                    .thread
                    .map(|to| ThreadChange { from: current, to })
                    .or(changed),
                absorbed: Vec::new(),
                notes: decision.notes,
                handoff: decision.handoff,
                usage: decision.usage,
            },
            decision.by.name(),
        ))
    }
}
