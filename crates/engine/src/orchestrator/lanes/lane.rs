//! One conversation's lane: takes its events in order, gathers the customer's quick
//! successive messages into one burst, holds a burst while the contact's turn rate says so,
//! and ends when it runs dry.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Orchestrator;
use super::dispatcher::{LaneMap, Queued};
use concierge_domain::{Content, ConversationId, EventKind, now_millis};
use concierge_store::InboxEntry;

/// The most messages one burst gathers, and the longest it lasts in windows: a customer who
/// never stops typing still gets answers.
const MAX_BURST: usize = 20;
const MAX_BURST_WINDOWS: i64 = 10;
/// The most messages one turn gathers while the contact's rate limit holds it: a flood is
/// answered in few turns, each reading a bounded prompt; what is left waits for the next turn.
const MAX_THROTTLED_BURST: usize = 100;

/// One conversation's lane: a task that lives while the conversation has events queued.
pub(super) struct Lane {
    pub(super) conversation: ConversationId,
    /// The newest inbox event this lane completed: a copy of an event at or before it (a
    /// shared store handing an event out again after a partition changed hands) is skipped.
    done_upto: i64,
    receiver: mpsc::UnboundedReceiver<Box<Queued>>,
    /// The dispatcher's lanes, which this one leaves when it ends.
    lanes: LaneMap,
    pub(super) orchestrator: Orchestrator,
    pub(super) shutdown: CancellationToken,
}

/// A customer message that may start or join a burst (a reaction asks nothing: it does not).
fn burstable(entry: &InboxEntry) -> bool {
    matches!(&entry.event.kind, EventKind::Message(m) if !matches!(m.content, Content::Reaction { .. }))
}

impl Lane {
    pub(super) fn new(
        conversation: ConversationId,
        receiver: mpsc::UnboundedReceiver<Box<Queued>>,
        lanes: LaneMap,
        orchestrator: Orchestrator,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            conversation,
            done_upto: 0,
            receiver,
            lanes,
            orchestrator,
            shutdown,
        }
    }

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
        while let Err(wait) = rate.try_take(&self.conversation, Instant::now()) {
            if since.is_none() {
                since = Some(Instant::now());
                if !self.bot_may_reply().await {
                    return true;
                }
            }
            let deadline = tokio::time::Instant::now() + wait;
            if !self.gather_until(deadline, burst, after).await {
                return false;
            }
        }
        if let Some(since) = since {
            self.report_throttled(burst, since);
        }
        true
    }

    /// Gathers into `burst` the customer messages that arrive before `deadline`, while the
    /// rate limit holds it; the first event that cannot join stops the gathering and waits
    /// in `after`. Returns false if shutdown came first.
    async fn gather_until(
        &mut self,
        deadline: tokio::time::Instant,
        burst: &mut Vec<Queued>,
        after: &mut Option<Queued>,
    ) -> bool {
        loop {
            let next = match after.take() {
                Some(next) => Some(next),
                None if burst.len() >= MAX_THROTTLED_BURST => None,
                None => tokio::select! {
                    next = self.receiver.recv() => next.map(|boxed| *boxed),
                    _ = tokio::time::sleep_until(deadline) => return true,
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
                    return tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => true,
                        _ = self.shutdown.cancelled() => false,
                    };
                }
            }
        }
    }

    /// A burst the rate limit held since `since`: operators see how often contacts write
    /// faster than the limit, and how long they waited.
    fn report_throttled(&self, burst: &[Queued], since: Instant) {
        let Some(channel) = burst.first().map(|q| &q.entry.event.channel) else {
            return;
        };
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

    /// Whether the bot answers the conversation's next customer message (a store failure
    /// says yes: the limit then applies, which is always safe).
    async fn bot_may_reply(&self) -> bool {
        match self
            .orchestrator
            .conversations
            .thread_state(&self.conversation)
            .await
        {
            Ok(state) => state.on_customer_message().bot_may_reply(),
            Err(_) => true,
        }
    }

    /// Takes the lane off the map as it stops with events still queued, so none is sent to
    /// it any more.
    fn leave(&self) {
        let mut map = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.conversation);
    }

    /// Handles the lane's events, in order, until it runs dry or shutdown stops it.
    pub(super) async fn run(mut self) {
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
                self.leave();
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
                self.leave();
                return;
            }
        }
    }
}
