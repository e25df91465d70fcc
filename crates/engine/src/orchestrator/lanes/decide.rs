//! Working one turn into a store completion: what the event asks, the responders' decision,
//! the replies shaped for the channel, and the completion that stores them with the event.

use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::lane::Lane;
use super::shape::{Answering, Limits, change, outcome, shape};
use crate::handoff::{ConsoleEvent, Draft, EventKind as ConsoleKind};
use crate::orchestrator::responder::{DecidedBy, Decision, ResponderError, Turn};
use concierge_domain::{
    Author, Content, Direction, EventKind, InboundMessage, PlatformMessageId, ThreadState,
    clip_text, now_millis,
};
use concierge_store::{Completion, InboxEntry, NewReply, StoreError, ThreadChange, TurnOutcome};

/// How long a window-closed report waits for the record of the send it refers to.
const WINDOW_CLOSED_PATIENCE_MS: i64 = 120_000;

/// How one try at a turn ended.
enum Attempt {
    Done,
    /// Worth another try (a store hiccup, a responder not ready).
    Again,
    /// The event belongs to another instance now.
    Moved,
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

/// The `message.received` event of a customer's message.
fn received(entry: &InboxEntry) -> Option<crate::webhooks::OutEvent> {
    let (EventKind::Message(m), Some(id)) = (&entry.event.kind, entry.message) else {
        return None;
    };
    if m.content.inbound_author() != Author::Customer {
        // The merchant's own event is not told back to it.
        return None;
    }
    let message = concierge_domain::Message {
        id,
        seq: entry.seq,
        conversation: entry.conversation.clone(),
        channel: entry.event.channel.clone(),
        contact: entry.event.contact.clone(),
        platform_id: Some(m.platform_id.clone()),
        direction: concierge_domain::Direction::Inbound,
        author: concierge_domain::Author::Customer,
        content: m.content.clone(),
        reply_to: m.reply_to.clone(),
        created_at: entry.event.at,
        status: concierge_domain::DeliveryStatus::Pending,
    };
    Some(
        crate::webhooks::OutEvent::message("message.received", &message)
            .with("customer_name", serde_json::json!(m.display_name)),
    )
}

impl Lane {
    /// Handles one event (or a burst of messages) until it is completed in the store; returns
    /// false if shutdown came first. A store failure is retried: the lane must not skip
    /// ahead, or order would break. The parallelism permit is held only while working, not
    /// while waiting to retry.
    #[tracing::instrument(name = "turn", skip_all, fields(conversation = %self.conversation, seq = burst.last().map(|e| e.seq), burst = burst.len(), messages = %PlatformIds(&burst)))]
    pub(super) async fn handle(&self, mut burst: Vec<InboxEntry>) -> bool {
        let orchestrator = &self.orchestrator;
        let started = Instant::now();
        if let Some(media) = &orchestrator.media {
            media.prepare(&mut burst).await;
        }
        // Before the turn is completed: a crash in between tells them again (the same event
        // ids), never not at all.
        if orchestrator.webhooks.wants("message.received") {
            for entry in &burst {
                if let Some(event) = received(entry) {
                    orchestrator.webhooks.tell(event).await;
                }
            }
        }
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
        let Some(entry) = burst.last() else {
            return Attempt::Done;
        };
        let Some((mut outcome, by)) = self.decide_guarded(burst).await else {
            return Attempt::Again;
        };
        outcome.absorbed = burst[..burst.len() - 1].iter().map(|e| e.seq).collect();
        let handoff = outcome
            .handoff
            .as_ref()
            .map(|h| (h.team.clone(), h.priority.clone()));
        match self.orchestrator.inbox.complete(entry.seq, outcome).await {
            Ok(completion) => {
                self.completed(entry, &completion, handoff, by, started);
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

    /// The turn's outcome and who decided it, or `None` when the turn is worth another try.
    async fn decide_guarded(&self, burst: &[InboxEntry]) -> Option<(TurnOutcome, &'static str)> {
        // A panicking responder is a bug; it must not kill the lane (the events queued behind
        // it would then run out of order). The event is completed without replies.
        let decided = std::panic::AssertUnwindSafe(self.decide(burst))
            .catch_unwind()
            .await;
        match decided {
            Ok(Ok(decided)) => Some(decided),
            Ok(Err(ResponderError::NotYet(why))) => {
                tracing::debug!(why, "the turn waits");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot decide the turn; retrying");
                None
            }
            Err(_) => {
                tracing::error!("the responder panicked; the event is completed without a reply");
                Some(unanswered("panic"))
            }
        }
    }

    /// Tells who needs to know what a stored turn did: the consoles of the handoff it made,
    /// the delivery worker of the replies it queued, the metrics of all of it.
    fn completed(
        &self,
        entry: &InboxEntry,
        completion: &Completion,
        handoff: Option<(Option<String>, Option<String>)>,
        by: &'static str,
        started: Instant,
    ) {
        let orchestrator = &self.orchestrator;
        // A thread change that did not apply (a concierge took the thread meanwhile) took
        // its handoff with it: nothing to announce.
        if completion.thread_changed
            && let (Some((team, priority)), Some(desk)) = (handoff, &orchestrator.desk)
        {
            orchestrator.metrics.handoff();
            if orchestrator.webhooks.wants("handoff.created") {
                let event = crate::webhooks::OutEvent::new(
                    "handoff.created",
                    format!("{}.{}", entry.conversation, entry.seq),
                    serde_json::json!({
                        "conversation": entry.conversation.as_str(),
                        "channel": entry.event.channel.as_str(),
                        "contact": entry.event.contact.as_str(),
                        "team": team, "priority": priority, "by": by,
                    }),
                );
                let webhooks = orchestrator.webhooks.clone();
                tokio::spawn(async move { webhooks.tell(event).await });
            }
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
    }

    /// The platform refused one of our replies because the customer service window had
    /// closed: queue it once more; the channel sends its re-engagement template in its place
    /// (or fails it with a clear reason when it has none).
    async fn window_closed(
        &self,
        entry: &InboxEntry,
        target: &PlatformMessageId,
    ) -> Result<(TurnOutcome, &'static str), ResponderError> {
        let orchestrator = &self.orchestrator;
        let Some(refused) = orchestrator
            .conversations
            .message_by_platform_id(&entry.event.channel, target)
            .await?
        else {
            // The platform can report the failure before our record of the send is written:
            // wait for it a little, then let it go.
            if now_millis() - entry.received_at < WINDOW_CLOSED_PATIENCE_MS {
                return Err(ResponderError::NotYet(
                    "the refused message is not recorded yet",
                ));
            }
            tracing::warn!(%target, "a window-closed report for a message we never recorded");
            return Ok(unanswered("none"));
        };
        if refused.direction != Direction::Outbound
            || refused.content.is_template()
            || refused.conversation != entry.conversation
            || orchestrator.outbox.is_reengagement(refused.id).await?
        {
            // Templates and re-engagements themselves are not re-sent: no loop.
            return Ok(unanswered("none"));
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

    /// What the event asks: an answer to a customer's message, the re-send of a reply the
    /// platform refused, a reopened thread for a customer starting over; the rest (edits,
    /// anything else that needs no answer) is recorded and done.
    async fn decide(
        &self,
        burst: &[InboxEntry],
    ) -> Result<(TurnOutcome, &'static str), ResponderError> {
        let Some(entry) = burst.last() else {
            return Ok(unanswered("none"));
        };
        match &entry.event.kind {
            EventKind::Message(message) => self.answer(burst, entry, message).await,
            EventKind::WindowClosed { target } => self.window_closed(entry, target).await,
            EventKind::Started { .. } => self.started(entry).await,
            _ => Ok(unanswered("none")),
        }
    }

    /// A customer starting over reopens a closed thread; nothing to answer yet.
    async fn started(
        &self,
        entry: &InboxEntry,
    ) -> Result<(TurnOutcome, &'static str), ResponderError> {
        let conversations = &self.orchestrator.conversations;
        let current = conversations.thread_state(&entry.conversation).await?;
        let reopened = current.clone().on_customer_message();
        let outcome = TurnOutcome {
            thread: change(&current, &reopened),
            ..TurnOutcome::default()
        };
        Ok((outcome, "started"))
    }

    /// Answers the burst's customer messages (`message` is the last of them): the responders
    /// do while the bot holds the thread; otherwise the consoles hear them.
    async fn answer(
        &self,
        burst: &[InboxEntry],
        entry: &InboxEntry,
        message: &InboundMessage,
    ) -> Result<(TurnOutcome, &'static str), ResponderError> {
        let orchestrator = &self.orchestrator;
        if matches!(message.content, Content::Reaction { .. }) {
            // A reaction acknowledges; it asks nothing, so nothing answers it.
            return Ok(unanswered("none"));
        }
        let messages = customer_messages(burst);
        // A merchant's event is no message of the platform's: nothing to mark read.
        let from_customer = |m: &InboundMessage| m.content.inbound_author() == Author::Customer;
        for e in burst {
            if let EventKind::Message(m) = &e.event.kind
                && from_customer(m)
            {
                orchestrator.hints.received(&e.event, &m.platform_id);
            }
        }
        let current = orchestrator
            .conversations
            .thread_state(&entry.conversation)
            .await?;
        let thread = current.clone().on_customer_message();
        let turn = Turn {
            entry,
            message,
            messages: &messages,
            burst,
            thread: &thread,
            store: &orchestrator.responders_store,
            now: now_millis(),
        };
        let moved = change(&current, &thread);
        if !thread.bot_may_reply() {
            self.tell_consoles(entry, &messages, &thread).await?;
            // A person holds the thread; an opt-out is honoured all the same, and told to
            // them in a note: the gateway never speaks over a person (they confirm it).
            if let Some(held) = &orchestrator.held
                && let Some(mut decision) = held.respond(&turn).await?
            {
                decision.replies.clear();
                return Ok(self.answered(decision, entry, message, current, moved));
            }
            return Ok(unanswered("silent"));
        }
        if from_customer(message) {
            orchestrator
                .hints
                .turn_started(&entry.event, &message.platform_id);
        }
        let decision = self.respond(&turn).await?;
        let Some(decision) = decision else {
            let outcome = TurnOutcome {
                thread: moved,
                ..TurnOutcome::default()
            };
            return Ok((outcome, "none"));
        };
        Ok(self.answered(decision, entry, message, current, moved))
    }

    /// The turn that stores `decision`'s replies, shaped for the channel.
    fn answered(
        &self,
        decision: Decision,
        entry: &InboxEntry,
        message: &InboundMessage,
        current: ThreadState,
        moved: Option<ThreadChange>,
    ) -> (TurnOutcome, &'static str) {
        let orchestrator = &self.orchestrator;
        let to = Answering {
            channel: &entry.event.channel,
            event: &entry.event.event_id,
            message: &message.platform_id,
        };
        let limits = Limits::of(orchestrator.hints.as_ref(), &entry.event.channel);
        let replies = shape(&decision, &to, &limits);
        outcome(decision, replies, current, moved)
    }

    /// A person or the queue holds the thread: the bot stays silent, and the consoles hear
    /// the customer (with the team of the open handoff, and the concierge who holds it).
    async fn tell_consoles(
        &self,
        entry: &InboxEntry,
        messages: &[&InboundMessage],
        thread: &ThreadState,
    ) -> Result<(), ResponderError> {
        let orchestrator = &self.orchestrator;
        let Some(desk) = &orchestrator.desk else {
            return Ok(());
        };
        let team = orchestrator
            .journal
            .handoffs(&entry.conversation)
            .await?
            .into_iter()
            .rev()
            .find(|h| h.is_open())
            .and_then(|h| h.team);
        for m in messages {
            let mut event = ConsoleEvent::new(
                ConsoleKind::Message,
                entry.conversation.clone(),
                team.clone(),
            );
            event.text = Some(clip_text(&m.content.describe(), 500));
            if let ThreadState::Human { concierge } = thread {
                event.concierge = Some(concierge.clone());
            }
            desk.events.publish(event);
        }
        Ok(())
    }

    /// The responders' decision, with the desk's part of a handoff added to it: team, SLA,
    /// brief and acknowledgement.
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let orchestrator = &self.orchestrator;
        let mut decision = orchestrator.responder.respond(turn).await?;
        if let (Some(decision), Some(desk)) = (decision.as_mut(), &orchestrator.desk)
            && let Some(handoff) = decision.handoff.as_mut()
        {
            let text = turn.text();
            let spent = desk
                .prepare(Draft {
                    conversation: &turn.entry.conversation,
                    channel: &turn.entry.event.channel,
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
        Ok(decision)
    }
}

/// A turn that stores no reply and leaves the thread as it is, labelled `by`.
fn unanswered(by: &'static str) -> (TurnOutcome, &'static str) {
    (TurnOutcome::default(), by)
}

/// The burst's customer messages, oldest first.
fn customer_messages(burst: &[InboxEntry]) -> Vec<&InboundMessage> {
    burst
        .iter()
        .filter_map(|e| match &e.event.kind {
            EventKind::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}
