//! The inbox on Redis: ingest, the partitions this instance holds (leases, epochs, sharing
//! them out), and taking and completing their events. See the module above for why.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::{Value as Json, json};

use super::{Fields, RedisStore, corrupt, field, hashes, number, status, thread_json};
use concierge_domain::{
    ConversationId, ConversationKey, DeliveryStatus, EventKind, InboundEvent, MessageId,
    ThreadState, now_millis,
};
use concierge_store::{
    Appended, Completion, Inbox, InboxEntry, IngestOutcome, StoreError, TurnOutcome,
};

/// How many times an ingest is retried when a contact's aliases changed under it.
const INGEST_TRIES: usize = 3;

/// The partitions this instance holds, and the events it handed out and not yet completed.
#[derive(Default)]
pub(super) struct Partitions {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    started: bool,
    stopping: bool,
    held: BTreeMap<u16, Held>,
    /// Events handed out by `take` and not completed, by inbox seq: their partition and
    /// stream entry id.
    inflight: HashMap<i64, (u16, String)>,
    /// Where the next stream read starts, so every partition gets its turn.
    rotation: usize,
}

#[derive(Debug, Clone)]
struct Held {
    /// Just acquired: its pending entries (a previous holder's) come first.
    fresh: bool,
    /// Where claiming those pending entries goes on from.
    resume: String,
    /// Being handed to another instance: no new reads; released once its events are done.
    draining: Option<Instant>,
}

impl Partitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn holds(&self, part: u16) -> bool {
        self.lock().held.contains_key(&part)
    }
}

/// The partition of a conversation: its id is hex from a hash, so its first digits are as
/// good as any hash of it.
pub(super) fn partition(conversation: &ConversationId, partitions: u16) -> u16 {
    let head = conversation.as_str().get(..8).unwrap_or("0");
    let value = u32::from_str_radix(head, 16).unwrap_or(0);
    (value % u32::from(partitions.max(1))) as u16
}

impl RedisStore {
    fn ttl_ms(&self) -> u64 {
        self.inner.settings.takeover_ms
    }

    /// Renews, rebalances and acquires partitions. Run every third of the lease.
    async fn maintain(&self) -> Result<(), StoreError> {
        let held: Vec<u16> = self.inner.partitions.lock().held.keys().copied().collect();
        let answer = self
            .op(
                "renew",
                json!({"parts": held, "owner": self.instance(), "ttl": self.ttl_ms(), "now": now_millis()}),
            )
            .await?;
        let mut lost = Vec::new();
        let mut live = 1usize;
        let mut items = answer.iter();
        while let Some(item) = items.next() {
            if item == "live" {
                live = items
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
                    .max(1);
            } else if let Ok(part) = item.parse::<u16>() {
                lost.push(part);
            }
        }
        let total = usize::from(self.inner.settings.partitions);
        let target = total.div_ceil(live);
        let (release, wanted) = {
            let mut state = self.inner.partitions.lock();
            for part in &lost {
                tracing::warn!(
                    partition = part,
                    "lost an inbox partition to another instance"
                );
                state.held.remove(part);
            }
            // Hand over what is above this instance's share: drain first, release when done.
            let active: Vec<u16> = state
                .held
                .iter()
                .filter(|(_, h)| h.draining.is_none())
                .map(|(p, _)| *p)
                .collect();
            if active.len() > target {
                for part in active.iter().rev().take(active.len() - target) {
                    if let Some(held) = state.held.get_mut(part) {
                        held.draining = Some(Instant::now());
                    }
                }
            }
            let busy: HashSet<u16> = state.inflight.values().map(|(p, _)| *p).collect();
            let patience = Duration::from_millis(self.ttl_ms());
            let release: Vec<u16> = state
                .held
                .iter()
                .filter(|(part, held)| {
                    held.draining
                        .is_some_and(|since| !busy.contains(part) || since.elapsed() > patience)
                })
                .map(|(p, _)| *p)
                .collect();
            for part in &release {
                state.held.remove(part);
            }
            let mine = state.held.len();
            let wanted = if state.stopping {
                0
            } else {
                target.saturating_sub(mine)
            };
            (release, wanted)
        };
        if !release.is_empty() {
            tracing::info!(partitions = ?release, "handing inbox partitions over");
            self.op(
                "release",
                json!({"parts": release, "owner": self.instance(), "leaving": false}),
            )
            .await?;
        }
        if wanted > 0 {
            // Start looking at a place of our own, so instances do not all race for the same.
            let offset = self.instance().bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            }) % total.max(1);
            let held: HashSet<u16> = self.inner.partitions.lock().held.keys().copied().collect();
            let candidates: Vec<u16> = (0..total)
                .map(|i| ((i + offset) % total) as u16)
                .filter(|p| !held.contains(p))
                .collect();
            let answer = self
                .op(
                    "acquire",
                    json!({"parts": candidates, "owner": self.instance(), "ttl": self.ttl_ms(), "max": wanted}),
                )
                .await?;
            let acquired: Vec<u16> = answer.iter().filter_map(|p| p.parse().ok()).collect();
            if self.inner.partitions.lock().stopping {
                // Stopped meanwhile: hand them straight back.
                self.op(
                    "release",
                    json!({"parts": acquired, "owner": self.instance(), "leaving": true}),
                )
                .await?;
                return Ok(());
            }
            let mut state = self.inner.partitions.lock();
            for part in acquired {
                tracing::info!(partition = part, "took an inbox partition");
                state.held.insert(
                    part,
                    Held {
                        fresh: true,
                        resume: "0-0".to_string(),
                        draining: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Starts holding partitions, on the first `take`: only a process that works the inbox
    /// does (not a CLI command sharing the store).
    async fn start_taking(&self) {
        {
            let mut state = self.inner.partitions.lock();
            if state.started {
                return;
            }
            state.started = true;
        }
        self.listen();
        if let Err(e) = self.maintain().await {
            tracing::warn!(error = %e, "cannot take inbox partitions yet; retrying");
        }
        let store = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis((store.ttl_ms() / 3).max(100));
            loop {
                tokio::time::sleep(every).await;
                if store.inner.partitions.lock().stopping {
                    return;
                }
                if let Err(e) = store.maintain().await {
                    tracing::warn!(error = %e, "cannot renew inbox partitions; retrying");
                }
                // Whatever changed, the dispatcher looks again.
                store.inner.wake.notify_one();
            }
        });
    }

    /// Inbox entries by seq, in order; unreadable ones are set aside.
    async fn entries(&self, seqs: Vec<i64>) -> Result<Vec<InboxEntry>, StoreError> {
        let mut conn = self.conn();
        let keys = seqs.iter().map(|seq| self.key(&["ev", &seq.to_string()]));
        let rows = hashes(&mut conn, keys).await?;
        let mut entries = Vec::with_capacity(seqs.len());
        for (seq, fields) in seqs.into_iter().zip(rows) {
            if fields.is_empty() {
                // Completed meanwhile.
                self.inner.partitions.lock().inflight.remove(&seq);
                continue;
            }
            match entry_from(seq, &fields) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::error!(seq, reason = %e, "an inbox entry cannot be read; set aside");
                    self.inner.partitions.lock().inflight.remove(&seq);
                    self.complete_unfenced(seq, TurnOutcome::default()).await?;
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    async fn complete_unfenced(
        &self,
        seq: i64,
        outcome: TurnOutcome,
    ) -> Result<Completion, StoreError> {
        self.run_complete(seq, outcome, None).await
    }

    async fn run_complete(
        &self,
        seq: i64,
        outcome: TurnOutcome,
        fence: Option<String>,
    ) -> Result<Completion, StoreError> {
        let now = now_millis();
        let thread = match &outcome.thread {
            Some(change) => json!({
                "from": json_text(&change.from)?,
                "to": thread_json(&change.to)?,
            }),
            None => Json::Null,
        };
        let handoff = match &outcome.handoff {
            Some(h) => json!({
                "id": h.id, "reason": h.reason, "priority": h.priority, "team": h.team,
                "requested_by": h.requested_by, "brief": h.brief, "sla_due_at": h.sla_due_at,
            }),
            None => Json::Null,
        };
        let usage = match outcome.usage.filter(|u| u.llm_calls > 0) {
            Some(u) => json!({
                "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                "llm_calls": u.llm_calls,
            }),
            None => Json::Null,
        };
        let notes: Vec<Json> = outcome
            .notes
            .iter()
            .map(|n| json!({"author": n.author, "body": n.body}))
            .collect();
        let replies = replies_json(&outcome.replies)?;
        let answer = self
            .op(
                "complete",
                json!({
                    "seq": seq, "now": now, "fenced": fence.is_some(), "xid": fence,
                    "owner": self.instance(),
                    "thread": thread, "handoff": handoff,
                    "notes": notes, "usage": usage, "replies": replies,
                    "absorbed": outcome.absorbed, "pending": status_json(&DeliveryStatus::Pending)?,
                }),
            )
            .await?;
        {
            let mut state = self.inner.partitions.lock();
            if status(&answer) == "moved" {
                // Every lane holding events of this partition drops them when it learns it
                // (as this one does now): none of them is in hand here any more.
                if let Some((part, _)) = state.inflight.get(&seq).cloned() {
                    state.inflight.retain(|_, (p, _)| *p != part);
                }
            }
            state.inflight.remove(&seq);
            for other in &outcome.absorbed {
                state.inflight.remove(other);
            }
        }
        match status(&answer) {
            "ok" => Ok(Completion {
                thread_changed: answer.get(1).is_some_and(|c| c == "1"),
                refused: answer.get(2).and_then(|r| r.parse().ok()).unwrap_or(0),
                queued: answer
                    .iter()
                    .skip(3)
                    .map(|id| MessageId::parse(id).map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                already_done: false,
            }),
            "done" => Ok(Completion {
                already_done: true,
                ..Completion::default()
            }),
            "moved" => Err(StoreError::Moved(format!(
                "inbox entry {seq}: this instance no longer holds its partition"
            ))),
            "missing" => Err(StoreError::NotFound(format!("inbox entry {seq}"))),
            other => Err(StoreError::Corrupt(format!("complete answered `{other}`"))),
        }
    }

    /// Claims the pending entries of a partition from `start`, up to `limit`: the entries,
    /// where to go on from (`0-0` when all are claimed), or `None` if the partition is lost.
    async fn claim_pending(
        &self,
        part: u16,
        start: &str,
        limit: usize,
    ) -> Result<Option<(Vec<(i64, String)>, String)>, StoreError> {
        let answer = self
            .op(
                "claim",
                json!({"part": part, "owner": self.instance(), "start": start, "count": limit}),
            )
            .await?;
        match status(&answer) {
            "lost" => Ok(None),
            next => Ok(Some((
                answer
                    .iter()
                    .skip(1)
                    .filter_map(|item| entry_ref(item))
                    .collect(),
                next.to_string(),
            ))),
        }
    }

    /// Forgets a partition another instance holds now.
    fn lost(&self, part: u16) {
        tracing::warn!(
            partition = part,
            "lost an inbox partition to another instance"
        );
        self.inner.partitions.lock().held.remove(&part);
    }

    /// After a failed take: what was claimed or read may sit in this instance's pending list
    /// without having been handed out. Every held partition reclaims its pending entries
    /// (from the start) at the next take, those still in hand excepted.
    fn reclaim_later(&self, taken: &[(i64, u16, String)]) {
        let mut state = self.inner.partitions.lock();
        for (seq, _, _) in taken {
            state.inflight.remove(seq);
        }
        for held in state.held.values_mut() {
            held.fresh = true;
        }
    }

    async fn take_inner(
        &self,
        limit: usize,
        taken: &mut Vec<(i64, u16, String)>,
    ) -> Result<(), StoreError> {
        // First what a previous holder (or a failed take) left pending in partitions just
        // acquired, before anything newer of theirs.
        let fresh: Vec<(u16, String)> = {
            let state = self.inner.partitions.lock();
            state
                .held
                .iter()
                .filter(|(_, h)| h.fresh)
                .map(|(p, h)| (*p, h.resume.clone()))
                .collect()
        };
        for (part, mut start) in fresh {
            loop {
                let room = limit - taken.len();
                if room == 0 {
                    break;
                }
                let Some((entries, next)) = self.claim_pending(part, &start, room).await? else {
                    self.lost(part);
                    break;
                };
                let claimed = entries.len();
                {
                    // A partition this instance lost and took back: what its lanes still
                    // hold is not handed out twice.
                    let state = self.inner.partitions.lock();
                    taken.extend(
                        entries
                            .into_iter()
                            .filter(|(seq, _)| !state.inflight.contains_key(seq))
                            .map(|(seq, xid)| (seq, part, xid)),
                    );
                }
                if claimed > 0 {
                    tracing::info!(
                        partition = part,
                        entries = claimed,
                        "took over pending inbox entries"
                    );
                }
                let mut state = self.inner.partitions.lock();
                let Some(held) = state.held.get_mut(&part) else {
                    break;
                };
                if next == "0-0" {
                    held.fresh = false;
                    held.resume = "0-0".to_string();
                    break;
                }
                held.resume = next.clone();
                start = next;
            }
        }
        // Then new entries of the partitions held, at most `room` in all.
        let room = limit - taken.len();
        let readable: Vec<u16> = {
            let mut state = self.inner.partitions.lock();
            let parts: Vec<u16> = state
                .held
                .iter()
                .filter(|(_, h)| !h.fresh && h.draining.is_none())
                .map(|(p, _)| *p)
                .collect();
            if parts.is_empty() {
                parts
            } else {
                state.rotation = state.rotation.wrapping_add(1);
                let start = state.rotation % parts.len();
                let mut rotated: Vec<u16> = parts[start..]
                    .iter()
                    .chain(&parts[..start])
                    .copied()
                    .collect();
                rotated.truncate(room);
                rotated
            }
        };
        if room == 0 || readable.is_empty() {
            return Ok(());
        }
        let per_stream = (room / readable.len()).max(1);
        let answer = self
            .op(
                "read",
                json!({"parts": readable, "owner": self.instance(), "count": per_stream}),
            )
            .await?;
        for pair in answer.chunks(2) {
            let [what, value] = pair else { continue };
            if what == "lost" {
                if let Ok(part) = value.parse::<u16>() {
                    self.lost(part);
                }
                continue;
            }
            if let (Ok(part), Some((seq, xid))) = (what.parse::<u16>(), entry_ref(value)) {
                taken.push((seq, part, xid));
            }
        }
        Ok(())
    }
}

/// `seq|stream id`, as the read and claim operations give entries.
fn entry_ref(item: &str) -> Option<(i64, String)> {
    let (seq, xid) = item.split_once('|')?;
    Some((seq.parse().ok()?, xid.to_string()))
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

pub(super) fn status_json(status: &DeliveryStatus) -> Result<Json, StoreError> {
    Ok(json!({"status": json_text(status)?, "rank": status.rank()}))
}

pub(super) fn replies_json(replies: &[concierge_store::NewReply]) -> Result<Vec<Json>, StoreError> {
    replies
        .iter()
        .map(|r| {
            Ok(json!({
                "key": r.idempotency_key,
                "id": MessageId::new().to_string(),
                "author": json_text(&r.author)?,
                "automated": matches!(r.author, concierge_domain::Author::Agent(_) | concierge_domain::Author::System),
                "agent": matches!(r.author, concierge_domain::Author::Agent(_)),
                "content": json_text(&r.content)?,
                "reply_to": r.reply_to.as_ref().map(|p| p.as_str().to_string()),
                "reengage": r.reengage,
            }))
        })
        .collect()
}

fn entry_from(seq: i64, fields: &Fields) -> Result<InboxEntry, StoreError> {
    Ok(InboxEntry {
        seq,
        conversation: ConversationId::parse(field(fields, "conv")?).map_err(corrupt)?,
        event: serde_json::from_str(field(fields, "event")?).map_err(corrupt)?,
        message: fields
            .get("msg")
            .map(|m| MessageId::parse(m))
            .transpose()
            .map_err(corrupt)?,
        received_at: number(fields, "at")?,
    })
}

/// Gives back every partition at shutdown.
pub(super) async fn release_all(store: &RedisStore) {
    let parts: Vec<u16> = {
        let mut state = store.inner.partitions.lock();
        state.stopping = true;
        let parts = state.held.keys().copied().collect();
        state.held.clear();
        state.inflight.clear();
        parts
    };
    if !parts.is_empty() {
        let released = store
            .op(
                "release",
                json!({"parts": parts, "owner": store.instance(), "leaving": true}),
            )
            .await;
        match released {
            Ok(_) => tracing::info!(partitions = parts.len(), "inbox partitions handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand the inbox partitions back; they expire by themselves")
            }
        }
    }
}

impl RedisStore {
    /// Ingests in one script call, with the webhook's raw request (see `raw::script_json`)
    /// or `null`.
    async fn ingest_with(
        &self,
        events: &[InboundEvent],
        raw: Json,
    ) -> Result<IngestOutcome, StoreError> {
        // A webhook the adapter found nothing in, or nothing for a conversation (typing, a
        // channel fault), is still kept, to no conversation.
        let alone = !raw.is_null()
            && (events.is_empty() || events.iter().any(|e| matches!(e.kind, EventKind::Typing)));
        let mut faults = Vec::new();
        for event in events {
            if let EventKind::ChannelError(fault) = &event.kind {
                let kept = concierge_store::KeptFault {
                    channel: event.channel.clone(),
                    fault: fault.clone(),
                    at: event.at,
                };
                faults.push(json!({
                    "ch": event.channel.as_str(),
                    "eid": event.event_id.as_str(),
                    "fault": super::faults::to_json(&kept)?,
                }));
            }
        }
        let events: Vec<&InboundEvent> = events
            .iter()
            .filter(|e| !e.kind.outside_conversations())
            .collect();
        if events.is_empty() && faults.is_empty() && !alone {
            return Ok(IngestOutcome::default());
        }
        let mut conn = self.conn();
        for _ in 0..INGEST_TRIES {
            // The contacts the events' ids are known aliases of, read ahead; the script checks
            // again and asks for another try if one appeared meanwhile.
            let mut pipe = redis::pipe();
            for event in &events {
                let keys: Vec<String> = std::iter::once(&event.contact)
                    .chain(&event.aliases)
                    .map(|id| self.key(&["alias", event.channel.as_str(), id.as_str()]))
                    .collect();
                pipe.mget(keys);
            }
            let known: Vec<Vec<Option<String>>> = if events.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut conn).await?
            };
            let key = self.conversation_key().await?;
            let mut batch = Vec::with_capacity(events.len());
            for (event, known) in events.iter().zip(known) {
                batch.push(self.event_json(key, event, known)?);
            }
            let answer = self
                .op(
                    "ingest",
                    json!({
                        "now": now_millis(),
                        "dedupe_ms": self.inner.settings.dedupe_ttl_secs.saturating_mul(1000),
                        "initial": thread_json(&ThreadState::initial())?,
                        "events": batch,
                        "raw": raw,
                        "alone": alone,
                        "faults": faults,
                        "faults_kept": concierge_store::FAULTS_PER_CHANNEL,
                        "faults_ms": concierge_store::FAULT_RETENTION_MS,
                    }),
                )
                .await?;
            match status(&answer) {
                "ok" => {
                    let count = |i: usize| -> usize {
                        answer.get(i).and_then(|n| n.parse().ok()).unwrap_or(0)
                    };
                    let mut appended = Vec::new();
                    for pair in answer[3.min(answer.len())..].chunks_exact(2) {
                        let seq = pair[0].parse().map_err(|_| {
                            StoreError::Corrupt(format!("ingest answered the seq `{}`", pair[0]))
                        })?;
                        appended.push(Appended {
                            seq,
                            conversation: ConversationId::parse(pair[1].as_str())
                                .map_err(corrupt)?,
                        });
                    }
                    return Ok(IngestOutcome {
                        accepted: count(1),
                        duplicates: count(2),
                        appended,
                    });
                }
                "retry" => continue,
                other => return Err(StoreError::Corrupt(format!("ingest answered `{other}`"))),
            }
        }
        Err(StoreError::unavailable(
            "a contact's aliases kept changing during ingest; try again".to_string(),
        ))
    }
}

#[async_trait]
impl Inbox for RedisStore {
    async fn ingest(&self, events: &[InboundEvent]) -> Result<IngestOutcome, StoreError> {
        self.ingest_with(events, Json::Null).await
    }

    async fn ingest_raw(
        &self,
        events: &[InboundEvent],
        raw: concierge_store::RawWebhook,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_with(events, super::raw::script_json(&raw)?)
            .await
    }

    async fn raw_webhooks(
        &self,
        filter: concierge_store::RawFilter,
    ) -> Result<Vec<concierge_store::KeptWebhook>, StoreError> {
        super::raw::read(self, &filter).await
    }

    async fn channel_faults(
        &self,
        limit: usize,
    ) -> Result<Vec<concierge_store::KeptFault>, StoreError> {
        super::faults::read(self, limit).await
    }

    async fn pending(&self, after: i64, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let mut conn = self.conn();
        let seqs: Vec<i64> = conn
            .zrangebyscore_limit(
                self.key(&["open"]),
                format!("({after}"),
                "+inf",
                0,
                limit as isize,
            )
            .await?;
        self.entries(seqs).await
    }

    async fn take(&self, _after: i64, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        self.start_taking().await;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut taken = Vec::new();
        if let Err(e) = self.take_inner(limit, &mut taken).await {
            self.reclaim_later(&taken);
            return Err(e);
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        {
            let mut state = self.inner.partitions.lock();
            for (seq, part, xid) in &taken {
                state.inflight.insert(*seq, (*part, xid.clone()));
            }
        }
        match self
            .entries(taken.iter().map(|(seq, _, _)| *seq).collect())
            .await
        {
            Ok(entries) => Ok(entries),
            Err(e) => {
                self.reclaim_later(&taken);
                Err(e)
            }
        }
    }

    async fn complete(&self, seq: i64, outcome: TurnOutcome) -> Result<Completion, StoreError> {
        // An instance that works the inbox completes only events it took, and only while
        // it holds their partition (checked by the script, with the stream entry's id).
        let fence = {
            let state = self.inner.partitions.lock();
            if !state.started {
                None
            } else {
                match state.inflight.get(&seq) {
                    Some((_, xid)) => Some(xid.clone()),
                    None => {
                        return Err(StoreError::Moved(format!(
                            "inbox entry {seq}: no longer in this instance's hands"
                        )));
                    }
                }
            }
        };
        self.run_complete(seq, outcome, fence).await
    }
}

impl RedisStore {
    /// One event as the ingest script reads it, with every contact it may resolve to.
    fn event_json(
        &self,
        key: &ConversationKey,
        event: &InboundEvent,
        known: Vec<Option<String>>,
    ) -> Result<Json, StoreError> {
        let own: Vec<&concierge_domain::ContactId> = std::iter::once(&event.contact)
            .chain(&event.aliases)
            .collect();
        let mut ids: Vec<concierge_domain::ContactId> = own.iter().map(|c| (*c).clone()).collect();
        for name in known.into_iter().flatten() {
            let id = concierge_domain::ContactId::parse(name).map_err(corrupt)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut cands = Vec::with_capacity(ids.len());
        for id in ids {
            let mut stored = event.clone();
            stored.contact = id.clone();
            let conversation = key.conversation(&event.channel, &id);
            // The script takes the legacy id instead when a conversation is stored under it.
            let legacy = ConversationId::legacy(&event.channel, &id);
            let partitions = self.inner.settings.partitions;
            cands.push(json!({
                "id": id.as_str(),
                "conv": conversation.as_str(),
                "part": partition(&conversation, partitions),
                "legacy": legacy.as_str(),
                "legacy_part": partition(&legacy, partitions),
                "event": json_text(&stored)?,
            }));
        }
        let mut value = json!({
            "ch": event.channel.as_str(),
            "eid": event.event_id.as_str(),
            "own": own.len(),
            "cands": cands,
            "kind": "other",
        });
        let fields = match &event.kind {
            EventKind::Status { target, status, .. } => {
                let s = status_json(status)?;
                json!({"kind": "status", "target": target.as_str(), "status": s["status"], "rank": s["rank"]})
            }
            EventKind::Message(message) => {
                let delivered = status_json(&DeliveryStatus::Delivered)?;
                json!({
                    "kind": "message",
                    "msg": MessageId::new().to_string(),
                    "pid": message.platform_id.as_str(),
                    "author": json_text(&message.content.inbound_author())?,
                    // A merchant's event opens no reply window.
                    "customer": message.content.inbound_author() == concierge_domain::Author::Customer,
                    "content": json_text(&message.content)?,
                    "reply_to": message.reply_to.as_ref().map(|p| p.as_str().to_string()),
                    "at": event.at,
                    "name": message.display_name,
                    "status": delivered["status"],
                    "rank": delivered["rank"],
                })
            }
            EventKind::Started { source } => json!({"kind": "started", "source": source}),
            EventKind::Edit { target, content } => json!({
                "kind": "edit", "target": target.as_str(), "content": json_text(content)?,
            }),
            EventKind::ContactChanged { previous, address } => json!({
                "kind": "contact_changed", "previous": previous.as_str(),
                "address": address.as_str(), "note": event.kind.note(),
            }),
            EventKind::IdentityChanged => json!({
                "kind": "identity_changed", "note": event.kind.note(),
            }),
            _ => json!({}),
        };
        if let (Some(value), Json::Object(fields)) = (value.as_object_mut(), fields) {
            value.extend(fields);
        }
        Ok(value)
    }
}
