//! The outbox loop and one send.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::DeliveryConfig;
use crate::handoff::{Bus, ConsoleEvent, EventKind as ConsoleKind};
use crate::webhooks::{OutEvent, Webhooks};
use concierge_channels::{Attachment, OutboundMessage, Registry, SendError};
use concierge_domain::{Author, Content, KeptMedia, now_millis};
use concierge_media::{MediaStore, Variant};
use concierge_store::{Conversations, Journal, Outbox, OutboxEntry};
use concierge_telemetry::Metrics;

/// The longest the worker sleeps without looking at the outbox.
const POLL: Duration = Duration::from_secs(1);

/// The entries whose leases the worker keeps when it releases its own.
#[derive(Default)]
struct InHand {
    /// Being sent.
    sending: HashSet<i64>,
    /// Sent, maybe, with no outcome recorded: their lease runs out before they go again.
    unrecorded: HashSet<i64>,
}

#[derive(Clone)]
pub struct DeliveryWorker {
    /// What to send, and the record of each attempt.
    outbox: Arc<dyn Outbox>,
    /// When the customer last wrote (the reply window).
    conversations: Arc<dyn Conversations>,
    /// The conversation's handoffs (the team a failed reply is reported to).
    journal: Arc<dyn Journal>,
    channels: Registry,
    wake: Arc<Notify>,
    backoff: Backoff,
    give_up_after_ms: i64,
    send_timeout: Duration,
    max_in_flight: usize,
    /// See [`DeliveryConfig::confirm_wait_ms`].
    confirm_wait_ms: i64,
    /// Entries maybe sent that already waited for a confirming status in this run: the next
    /// attempt sends.
    waited: Arc<Mutex<HashSet<i64>>>,
    /// Entries whose leases stay when the worker releases its own: those being sent, and
    /// those whose outcome could not be recorded (sent, maybe: their lease runs out first).
    in_hand: Arc<Mutex<InHand>>,
    metrics: Metrics,
    /// Tells the consoles how a concierge's reply fared.
    events: Option<Bus>,
    /// Where a reply's file is read from (`None`: replies carry no files).
    media: Option<MediaStore>,
    /// Tells `[[webhooks]]` what was sent and what failed.
    webhooks: Webhooks,
}

impl DeliveryWorker {
    /// The worker takes the store's roles it uses: the outbox, the conversations and the
    /// journal (each an upcast of the one store).
    pub fn new(
        outbox: Arc<dyn Outbox>,
        conversations: Arc<dyn Conversations>,
        journal: Arc<dyn Journal>,
        channels: Registry,
        wake: Arc<Notify>,
        config: &DeliveryConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            outbox,
            conversations,
            journal,
            channels,
            wake,
            backoff: Backoff {
                initial: Duration::from_millis(config.initial_backoff_ms.max(1)),
                max: Duration::from_secs(config.max_backoff_secs.max(1)),
            },
            give_up_after_ms: i64::try_from(config.give_up_after_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            send_timeout: Duration::from_secs(config.send_timeout_secs.max(1)),
            max_in_flight: config.max_in_flight.max(1),
            confirm_wait_ms: i64::try_from(config.confirm_wait_ms).unwrap_or(i64::MAX / 4),
            waited: Arc::default(),
            in_hand: Arc::default(),
            metrics,
            events: None,
            media: None,
            webhooks: Webhooks::none(),
        }
    }

    /// Reads replies' files from `media` to hand them to the adapters.
    pub fn with_media(mut self, media: MediaStore) -> Self {
        self.media = Some(media);
        self
    }

    /// The file a reply sends, read from the media store: `Ok(None)` when the reply has
    /// none; an error in words when it cannot be had (gone: the reply fails; the store did
    /// not answer: it is tried again).
    async fn attachment(&self, content: &Content) -> Result<Option<Attachment>, (bool, String)> {
        let Content::Media {
            kept: Some(KeptMedia::Stored(stored)),
            ..
        } = content
        else {
            return Ok(None);
        };
        let Some(media) = &self.media else {
            return Err((
                true,
                "no media store is configured to send the file from".to_string(),
            ));
        };
        match media.read(&stored.id, Variant::Original).await {
            Ok(Some((bytes, _))) => Ok(Some(Attachment {
                media: stored.clone(),
                bytes,
            })),
            Ok(None) => Err((true, format!("the file {} is no longer kept", stored.id))),
            Err(e) => Err((false, format!("cannot read the file to send: {e}"))),
        }
    }

    /// Publishes the outcome of concierges' replies to the consoles.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    pub fn with_events(mut self, events: Bus) -> Self {
        self.events = Some(events);
        self
    }

    /// A concierge's reply was sent or failed: their console hears it.
    async fn tell_console(&self, entry: &OutboxEntry, status: &str) {
        let Some(events) = &self.events else {
            return;
        };
        let Author::Concierge(name) = &entry.message.author else {
            return;
        };
        let conversation = &entry.message.conversation;
        let team = match self.journal.handoffs(conversation).await {
            Ok(handoffs) => handoffs.into_iter().rev().find_map(|h| h.team),
            Err(_) => return,
        };
        let mut event =
            ConsoleEvent::new(ConsoleKind::Delivery, conversation.clone(), team).by(name.clone());
        event.status = Some(status.to_string());
        event.message_id = Some(entry.message.id.to_string());
        events.publish(event);
    }

    /// A claim outlives one attempt comfortably; it only runs out when the gateway died.
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.send_timeout.as_millis() * 2).unwrap_or(i64::MAX / 2) + 10_000
    }

    /// Runs until `shutdown` fires, then waits for the sends in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        match self.outbox.release_leases(&[]).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                entries = n,
                "replies were being sent when the gateway last stopped; they will be sent again, idempotently where the platform allows"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot release the previous run's claims"),
        }
        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let mut tasks = JoinSet::new();
        // A claim whose answer was lost (the store went away mid-call) may have leased
        // entries nobody here is sending: they are released once the store answers again,
        // instead of waiting out their lease.
        let mut claims_unsure = false;
        loop {
            while tasks.try_join_next().is_some() {}
            if claims_unsure {
                claims_unsure = !self.release_unsent().await;
            }
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 && !claims_unsure {
                match self
                    .outbox
                    .claim_due(now_millis(), free, self.lease_ms())
                    .await
                {
                    Ok(entries) => {
                        claimed = entries.len();
                        for entry in entries {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let worker = self.clone();
                            let id = entry.id;
                            worker.hold(id);
                            tasks.spawn(async move {
                                worker.deliver(entry).await;
                                worker.let_go(id);
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        claims_unsure = true;
                        tracing::warn!(error = %e, "cannot read the outbox; retrying");
                    }
                }
            }
            if claimed > 0 && claimed == free {
                // More may be due: wait for a free slot, not for a timer.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tasks.join_next() => {}
                }
                continue;
            }
            let wait = match self.outbox.next_due_at().await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0))
                        .clamp(Duration::from_millis(5), POLL)
                }
                _ => POLL,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(_) = tasks.join_next() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// One send, in a `deliver` span: the conversation, the outbox entry, our message id, the
    /// channel, the customer message it quotes (`reply_to`, the platform's id), then the
    /// platform's id of what was sent (`platform_id`, which its status receipts name) and
    /// the outcome.
    #[tracing::instrument(name = "deliver", skip_all, fields(
        conversation = %entry.message.conversation,
        outbox = entry.id,
        message_id = %entry.message.id,
        channel = %entry.message.channel,
        attempt = entry.attempts,
        reply_to = entry.message.reply_to.as_ref().map(tracing::field::display),
        platform_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    ))]
    async fn deliver(&self, entry: OutboxEntry) {
        let channel = entry.message.channel.clone();
        let Some(adapter) = self.channels.adapter(&channel).cloned() else {
            let reason = format!("the channel `{channel}` is no longer configured");
            tracing::warn!(%channel, "{reason}");
            self.finish_failed(&entry, None, &reason).await;
            return;
        };
        if entry.maybe_sent && adapter.confirms_sends() && self.first_wait(entry.id) {
            // An earlier attempt may have gone through: its status, if it did, confirms it
            // (see `http::webhooks`) while this entry waits, and it is never sent again.
            tracing::Span::current().record("outcome", "awaiting_status");
            tracing::info!(%channel, "an earlier attempt may have reached the platform; waiting for its status before sending again");
            let at = now_millis() + self.confirm_wait_ms;
            self.record(entry.id, || {
                self.outbox.retry_at(
                    entry.id,
                    at,
                    "waiting for the platform's status of an earlier attempt",
                    true,
                )
            })
            .await;
            return;
        }
        if entry.maybe_sent {
            self.metrics
                .delivery(channel.as_str(), "resent_after_crash");
        }
        // Only channels with a reply window need to know when the customer last wrote.
        let customer_last_message_at = if adapter.capabilities().reply_window.is_some() {
            match self
                .conversations
                .last_inbound_at(&entry.message.conversation)
                .await
            {
                Ok(at) => at,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the reply window; retrying");
                    self.store_unavailable(&entry, "store unavailable").await;
                    return;
                }
            }
        } else {
            None
        };
        let attachment = match self.attachment(&entry.message.content).await {
            Ok(attachment) => attachment,
            Err((true, reason)) => {
                tracing::warn!(%channel, %reason, "the reply's file cannot be sent");
                self.finish_failed(&entry, None, &reason).await;
                return;
            }
            Err((false, reason)) => {
                tracing::warn!(%reason, "retrying");
                self.store_unavailable(&entry, "media store unavailable")
                    .await;
                return;
            }
        };
        let message = OutboundMessage {
            message_id: entry.message.id,
            seq: entry.message.seq,
            idempotency_key: entry.idempotency_key.clone(),
            conversation: entry.message.conversation.clone(),
            contact: entry.message.contact.clone(),
            author: entry.message.author.clone(),
            content: entry
                .message
                .content
                .as_sent(adapter.capabilities().templates)
                .into_owned(),
            reply_to: entry.message.reply_to.clone(),
            created_at: entry.message.created_at,
            maybe_sent: entry.maybe_sent,
            customer_last_message_at,
            reengage: entry.reengage,
            attachment,
        };
        let result = match tokio::time::timeout(self.send_timeout, adapter.send(&message)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Ambiguous {
                reason: format!("no answer within {:?}", self.send_timeout),
            }),
        };
        let now = now_millis();
        match result {
            Ok(receipt) => {
                let span = tracing::Span::current();
                span.record("outcome", "sent");
                if let Some(platform_id) = &receipt.platform_id {
                    span.record("platform_id", tracing::field::display(platform_id));
                }
                // The message id again in the event itself: a JSON log line carries its
                // event's fields, and tools that count sends read them from there.
                tracing::debug!(
                    message_id = %entry.message.id,
                    maybe_sent = entry.maybe_sent,
                    "reply accepted by the channel"
                );
                self.metrics.delivery(channel.as_str(), "sent");
                // Told before it is recorded: a crash in between sends the event again
                // (the same id), never loses it.
                if self.webhooks.wants("message.sent") {
                    let mut message = entry.message.clone();
                    message.platform_id = receipt.platform_id.clone();
                    self.webhooks
                        .tell(OutEvent::message("message.sent", &message))
                        .await;
                }
                self.settled(entry.id);
                self.record(entry.id, || {
                    self.outbox
                        .mark_sent(entry.id, receipt.platform_id.clone(), now)
                })
                .await;
                self.tell_console(&entry, "sent").await;
            }
            Err(SendError::Rejected { code, reason }) => {
                tracing::warn!(%channel, ?code, %reason, "the platform refused the reply");
                self.finish_failed(&entry, code, &reason).await;
            }
            Err(error) => {
                let maybe_sent = matches!(error, SendError::Ambiguous { .. });
                let mut wait = match &error {
                    SendError::RetryAfter { after, .. } => self.backoff.after(*after),
                    _ => self.backoff.delay(entry.attempts),
                };
                if maybe_sent && adapter.confirms_sends() {
                    // Time for the platform's status to confirm it, if it went through.
                    self.first_wait(entry.id);
                    wait = wait.max(Duration::from_millis(
                        u64::try_from(self.confirm_wait_ms).unwrap_or(0),
                    ));
                }
                let at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                if at - entry.first_attempt_at > self.give_up_after_ms {
                    let reason = format!(
                        "gave up after {} attempts over {}s: {error}",
                        entry.attempts,
                        (now - entry.first_attempt_at) / 1000
                    );
                    tracing::warn!(%channel, %reason, "delivery failed");
                    self.finish_failed(&entry, None, &reason).await;
                } else {
                    tracing::Span::current().record("outcome", "retried");
                    tracing::info!(%channel, %error, wait_ms = wait.as_millis() as u64, "send failed; will retry");
                    self.metrics.delivery(channel.as_str(), "retried");
                    let text = error.to_string();
                    self.record(entry.id, || {
                        self.outbox.retry_at(entry.id, at, &text, maybe_sent)
                    })
                    .await;
                }
            }
        }
    }

    /// Entry `id` is being sent.
    fn hold(&self, id: i64) {
        let mut in_hand = self.in_hand();
        in_hand.unrecorded.remove(&id);
        in_hand.sending.insert(id);
    }

    /// Entry `id`'s send is over.
    fn let_go(&self, id: i64) {
        self.in_hand().sending.remove(&id);
    }

    fn unrecorded(&self, id: i64) {
        self.in_hand().unrecorded.insert(id);
    }

    fn in_hand(&self) -> std::sync::MutexGuard<'_, InHand> {
        self.in_hand.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases this worker's leases but those of the entries in hand; whether the store
    /// answered.
    async fn release_unsent(&self) -> bool {
        let keep: Vec<i64> = {
            let in_hand = self.in_hand();
            in_hand
                .sending
                .union(&in_hand.unrecorded)
                .copied()
                .collect()
        };
        match self.outbox.release_leases(&keep).await {
            Ok(0) => true,
            Ok(n) => {
                tracing::warn!(
                    entries = n,
                    "a claim's answer was lost: the replies it may have leased are due again"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the outbox leases yet; retrying");
                false
            }
        }
    }

    /// Whether entry `id` has not yet waited for a confirming status in this run (and now
    /// has).
    fn first_wait(&self, id: i64) -> bool {
        match self.waited.lock() {
            Ok(mut waited) => waited.insert(id),
            Err(poisoned) => poisoned.into_inner().insert(id),
        }
    }

    /// Entry `id` is settled: no wait to remember.
    fn settled(&self, id: i64) {
        match self.waited.lock() {
            Ok(mut waited) => waited.remove(&id),
            Err(poisoned) => poisoned.into_inner().remove(&id),
        };
    }

    /// A store the send needs did not answer: the entry is tried again after its backoff,
    /// nothing having been sent.
    async fn store_unavailable(&self, entry: &OutboxEntry, why: &str) {
        tracing::Span::current().record("outcome", "store_error");
        let wait = self.backoff.delay(entry.attempts);
        let at = now_millis() + i64::try_from(wait.as_millis()).unwrap_or(1000);
        self.record(entry.id, || self.outbox.retry_at(entry.id, at, why, false))
            .await;
    }

    async fn finish_failed(&self, entry: &OutboxEntry, code: Option<String>, reason: &str) {
        let failure = serde_json::json!({ "code": code, "reason": reason });
        self.webhooks
            .tell(
                OutEvent::message("message.failed", &entry.message).with("error", failure.clone()),
            )
            .await;
        if matches!(
            entry.message.content,
            Content::Template { text: Some(_), .. }
        ) {
            self.webhooks
                .tell(
                    OutEvent::message("notification.failed", &entry.message).with("error", failure),
                )
                .await;
        }
        self.settled(entry.id);
        tracing::Span::current().record("outcome", "failed");
        self.metrics
            .delivery(entry.message.channel.as_str(), "failed");
        self.record(entry.id, || {
            self.outbox
                .mark_failed(entry.id, code.clone(), reason, now_millis())
        })
        .await;
        self.tell_console(entry, "failed").await;
    }

    /// Writes entry `id`'s outcome, retrying a few times: losing the record of a send that
    /// the platform accepted would mean sending it again after the lease runs out (and the
    /// entry keeps its lease until then: see `in_hand`).
    async fn record<'a, F, Fut>(&'a self, id: i64, write: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), concierge_store::StoreError>> + 'a,
    {
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=8 {
            match write().await {
                Ok(()) => return,
                Err(e) if attempt == 8 => {
                    self.unrecorded(id);
                    tracing::error!(error = %e, "cannot record a delivery outcome; the reply may be sent again")
                }
                Err(e) => tracing::warn!(error = %e, "cannot record a delivery outcome; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}
