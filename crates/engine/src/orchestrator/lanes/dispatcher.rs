//! The dispatcher: reads unfinished inbox events in inbox order and hands each to its
//! conversation's lane, starting the lane when it has none, so conversations run in parallel
//! and the events of one run in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Orchestrator;
use super::lane::Lane;
use concierge_domain::ConversationId;
use concierge_store::InboxEntry;
use concierge_telemetry::Waiting;

/// How many inbox events the dispatcher reads at once.
const PAGE: usize = 256;
/// The dispatcher looks at the inbox at least this often, even without a wake-up.
const POLL: Duration = Duration::from_secs(1);

/// An inbox event on its way through a lane, holding its place in the in-memory budget and
/// in `lane_queue_depth` until its turn takes it (or the lane lets it go).
pub(super) struct Queued {
    pub(super) entry: InboxEntry,
    _budget: OwnedSemaphorePermit,
    _waiting: Waiting,
}

/// Events travel boxed: a channel allocates room for 32 of what it carries at once, and a
/// lane rarely holds more than one; boxed, an idle lane's channel costs 256 bytes, not 12 KB.
pub(super) type LaneMap = Arc<Mutex<HashMap<ConversationId, mpsc::UnboundedSender<Box<Queued>>>>>;

impl Orchestrator {
    /// Runs until `shutdown` fires, then lets every lane finish the events it holds.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes: LaneMap = Arc::default();
        let budget = Arc::new(Semaphore::new(self.in_memory));
        let mut tasks = JoinSet::new();
        // Everything up to `cursor` has been handed to a lane in this run.
        let mut cursor = 0i64;
        // Rung when another instance sharing the store appended events for this one.
        let remote = self.instances.inbox_signal();
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
            let page = match self.inbox.take(cursor, room).await {
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
                ended(done);
            }
            // A full page says more is waiting: read on without waiting.
            if !full && !self.wait_for_events(remote.as_deref(), &shutdown).await {
                break;
            }
        }
        while let Some(done) = tasks.join_next().await {
            ended(done);
        }
        // What is left unfinished goes to another instance now rather than after a lease.
        self.instances.release_inbox().await;
    }

    /// Waits for a reason to read the inbox again: an ingest here or on another instance, or
    /// the poll, which catches what a missed wake-up would leave. Returns false on shutdown.
    async fn wait_for_events(&self, remote: Option<&Notify>, shutdown: &CancellationToken) -> bool {
        let remote_wake = async {
            match remote {
                Some(remote) => remote.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = self.inbox_wake.notified() => true,
            _ = remote_wake => true,
            _ = tokio::time::sleep(POLL) => true,
        }
    }

    /// Hands `entry` to its conversation's lane, starting the lane when there is none.
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
        let lane = Lane::new(
            conversation,
            receiver,
            lanes.clone(),
            self.clone(),
            shutdown.clone(),
        );
        tasks.spawn(lane.run());
    }
}

/// A lane's task ended: a lane that stopped abnormally (a panic outside the responders) is
/// logged, the dispatcher goes on.
fn ended(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a lane stopped abnormally");
    }
}
