//! The embedded store: one SQLite file in WAL mode, reached through one background
//! connection thread (tokio-rusqlite). SQLite serialises writers anyway; one connection keeps
//! every transaction short and ordered, and needs no pool.

mod batch;
mod commerce;
mod consent;
mod notify;
mod queue;
mod raw;
mod rows;
mod schema;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tokio::sync::mpsc;

use self::rows::{MESSAGE_COLUMNS, json, message_from_row, parse_json};
use concierge_domain::{
    Author, ChannelId, ContactId, Content, ConversationId, ConversationKey, DeliveryStatus,
    Direction, EventKind, InboundEvent, KeptMedia, Message, MessageId, Millis, PlatformMessageId,
    ThreadState, now_millis,
};
use concierge_store::{
    Appended, Completion, Conversation, Conversations, Handoff, Inbox, InboxEntry, IngestOutcome,
    Journal, Note, Outbox, OutboxEntry, StoreError, Summary, TurnOutcome, TurnUsage,
};

/// How hard SQLite syncs the file at each commit (`[store] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    Full,
    Normal,
}

/// How long a status waits for the record of the send it describes.
const EARLY_STATUS_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Read-only connections, each on its own thread.
const READERS: usize = 3;
/// Compiled statements kept per connection (more than the store has distinct statements).
const STATEMENT_CACHE: usize = 256;

/// The SQLite backend. Cheap to clone: clones share the one connection thread.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads; WAL lets them run beside the writer's transaction.
    /// Read-only connections, used in turn: reads run in parallel with each other and
    /// with the writer (WAL lets readers see the last commit without blocking it).
    readers: Arc<[tokio_rusqlite::Connection]>,
    next_reader: Arc<AtomicUsize>,
    /// Every write goes through the group-commit writer.
    writes: mpsc::Sender<Box<dyn writer::WriteJob>>,
    path: PathBuf,
    /// How long raw webhooks are kept.
    raw_retention: Arc<raw::Retention>,
    /// What new conversation ids are keyed with (the `secrets` table's).
    key: ConversationKey,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    pub async fn open(path: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::unavailable_by(format!("cannot create {}: {e}", parent.display()), e)
            })?;
        }
        let open = |what: &'static str| async move {
            tokio_rusqlite::Connection::open(path).await.map_err(|e| {
                StoreError::unavailable_by(format!("{} ({what}): {e}", path.display()), e)
            })
        };
        let writer_conn = open("writer").await?;
        let key = writer_conn
            .call(move |conn| -> Result<ConversationKey, StoreError> {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                let sync = match sync {
                    SyncMode::Full => "FULL",
                    SyncMode::Normal => "NORMAL",
                };
                conn.pragma_update(None, "synchronous", sync)?;
                conn.pragma_update(None, "busy_timeout", 5000)?;
                // Every statement stays compiled: the write path alone uses more than
                // rusqlite's default 16, and re-parsing SQL showed at the top of profiles.
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                // Checkpoints less often (16 MB of WAL instead of 4): a page written by many
                // commits in a row is copied into the database once.
                conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
                schema::migrations()
                    .to_latest(conn)
                    .map_err(|e| StoreError::unavailable_by(format!("migration failed: {e}"), e))?;
                conversation_key(conn)
            })
            .await
            .map_err(flatten)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = open("reader").await?;
            reader
                .call(|conn| -> Result<(), StoreError> {
                    conn.pragma_update(None, "busy_timeout", 5000)?;
                    conn.pragma_update(None, "query_only", true)?;
                    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                    Ok(())
                })
                .await
                .map_err(flatten)?;
            readers.push(reader);
        }
        let (writes, queue) = mpsc::channel(4 * writer::MAX_BATCH);
        tokio::spawn(writer::run(writer_conn, queue));
        Ok(Self {
            readers: readers.into(),
            next_reader: Arc::default(),
            writes,
            path: path.to_path_buf(),
            raw_retention: Arc::default(),
            key,
        })
    }

    /// Keeps raw webhooks this long (`[store] raw_retention_days`; 7 days unless set).
    pub fn with_raw_retention(self, keep: std::time::Duration) -> Self {
        self.raw_retention.set_keep(keep);
        self
    }

    /// Starts a prune of raw webhooks past their retention when one is due: its own write,
    /// so it never fails the ingest that started it.
    fn prune_raw_when_due(&self) {
        let Some(cutoff) = self.raw_retention.due(now_millis()) else {
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            match store.write(move |tx| raw::prune(tx, cutoff)).await {
                Ok(deleted) if deleted >= raw::PRUNE_BATCH => store.raw_retention.again(),
                Ok(deleted) if deleted > 0 => {
                    tracing::debug!(deleted, "raw webhooks past their retention pruned");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot prune raw webhooks; trying later"),
            }
        });
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on the next reader connection.
    async fn read<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[n].call(f).await.map_err(flatten)
    }

    /// Queues a write for the next group commit and waits until it is committed.
    async fn write<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let closed = || StoreError::unavailable("the store is closed");
        let (job, answer) = writer::job(f);
        self.writes.send(job).await.map_err(|_| closed())?;
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// The heads of the conversations' outboxes due at `?1`, at most `?2`: through the open
/// entries' index by due time, never a scan of every entry ever sent (a claimed entry keeps
/// the due time it was claimed at, so one whose lease ran out is found by it too).
const CLAIM_DUE: &str = "SELECT o.id FROM outbox o INDEXED BY outbox_due
     WHERE o.state IN ('pending', 'sending') AND o.next_attempt_at <= ?1
       AND (o.state = 'pending' OR o.lease_until <= ?1)
       AND NOT EXISTS (
           SELECT 1 FROM outbox p
           WHERE p.conversation_id = o.conversation_id AND p.id < o.id
             AND p.state IN ('pending', 'sending'))
     ORDER BY o.id LIMIT ?2";

fn flatten(e: tokio_rusqlite::Error<StoreError>) -> StoreError {
    match e {
        tokio_rusqlite::Error::Error(e) => e,
        other => StoreError::unavailable(other.to_string()),
    }
}

/// Creates the contact and conversation of an event when new, and touches them otherwise.
fn upsert_conversation(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    conversation: &ConversationId,
    now: Millis,
) -> Result<(), StoreError> {
    let display_name = match &event.kind {
        EventKind::Message(m) => m.display_name.clone(),
        _ => None,
    };
    tx.execute(
        "INSERT INTO contacts (channel_id, contact_id, display_name, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (channel_id, contact_id) DO UPDATE SET
             display_name = COALESCE(excluded.display_name, display_name),
             updated_at = excluded.updated_at",
        params![
            event.channel.as_str(),
            event.contact.as_str(),
            display_name,
            now
        ],
    )?;
    tx.execute(
        "INSERT INTO conversations (id, channel_id, contact_id, thread, created_at, last_message_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (id) DO UPDATE SET last_message_at = MAX(last_message_at, excluded.last_message_at)",
        params![
            conversation.as_str(),
            event.channel.as_str(),
            event.contact.as_str(),
            json(&ThreadState::initial())?,
            now
        ],
    )?;
    Ok(())
}

fn apply_status(
    tx: &rusqlite::Connection,
    channel: &ChannelId,
    platform_id: &PlatformMessageId,
    status: &DeliveryStatus,
) -> Result<bool, StoreError> {
    let changed = tx.execute(
        "UPDATE messages SET status = ?1, status_rank = ?2
         WHERE channel_id = ?3 AND platform_id = ?4 AND status_rank < ?2",
        params![
            json(status)?,
            status.rank(),
            channel.as_str(),
            platform_id.as_str()
        ],
    )?;
    Ok(changed > 0)
}

/// The contact an event's ids stand for: an id already known as an alias of a contact is
/// that contact; else an id we already hold as a contact; else the event's own. Records the
/// event's other ids as aliases of it. Returns the event rewritten
/// to that contact, or `None` when it is already right.
fn resolve_contact(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
) -> Result<Option<InboundEvent>, StoreError> {
    let channel = event.channel.as_str();
    let mut known = None;
    for id in std::iter::once(&event.contact).chain(&event.aliases) {
        let found: Option<String> = tx
            .prepare_cached(
                "SELECT contact_id FROM contact_aliases WHERE channel_id = ?1 AND alias = ?2",
            )?
            .query_row(params![channel, id.as_str()], |row| row.get(0))
            .optional()?;
        if let Some(found) = found {
            known = Some(found);
            break;
        }
    }
    if known.is_none() && event.aliases.is_empty() {
        return Ok(None);
    }
    if known.is_none() {
        // No alias yet: an id we already hold as a contact (its history) is the person.
        for id in std::iter::once(&event.contact).chain(&event.aliases) {
            let exists = tx
                .prepare_cached("SELECT 1 FROM contacts WHERE channel_id = ?1 AND contact_id = ?2")?
                .exists(params![channel, id.as_str()])?;
            if exists {
                known = Some(id.as_str().to_string());
                break;
            }
        }
    }
    let canonical = match known {
        Some(found) => ContactId::parse(found).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => event.contact.clone(),
    };
    for id in std::iter::once(&event.contact).chain(&event.aliases) {
        if *id != canonical {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO contact_aliases (channel_id, alias, contact_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![channel, id.as_str(), canonical.as_str()])?;
        }
    }
    if canonical == event.contact {
        return Ok(None);
    }
    let mut resolved = event.clone();
    resolved.contact = canonical;
    Ok(Some(resolved))
}

fn message_exists(
    tx: &rusqlite::Connection,
    channel: &ChannelId,
    platform_id: &PlatformMessageId,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM messages WHERE channel_id = ?1 AND platform_id = ?2")?
        .exists(params![channel.as_str(), platform_id.as_str()])?)
}

/// Marks outbox entry `id` (of the reply `message_id`) sent, with the platform's id of it
/// when known, and applies the statuses that came before. Returns whether the entry was
/// still open.
fn record_sent(
    tx: &rusqlite::Connection,
    id: i64,
    message_id: &str,
    platform_id: Option<&PlatformMessageId>,
    now: Millis,
) -> Result<bool, StoreError> {
    let opened = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'sent', lease_until = NULL, finished_at = ?1, last_error = NULL
             WHERE id = ?2 AND state IN ('pending', 'sending')",
        )?
        .execute(params![now, id])?;
    if let Some(platform_id) = platform_id {
        tx.prepare_cached(
            "UPDATE OR IGNORE messages SET platform_id = ?1 WHERE id = ?2 AND platform_id IS NULL",
        )?
        .execute(params![platform_id.as_str(), message_id])?;
    }
    let sent = DeliveryStatus::Sent;
    tx.prepare_cached(
        "UPDATE messages SET status = ?1, status_rank = ?2 WHERE id = ?3 AND status_rank < ?2",
    )?
    .execute(params![json(&sent)?, sent.rank(), message_id])?;
    if let Some(platform_id) = platform_id {
        let channel: String = tx
            .prepare_cached("SELECT channel_id FROM messages WHERE id = ?1")?
            .query_row(params![message_id], |row| row.get(0))?;
        let channel = ChannelId::parse(channel).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        apply_early_statuses(tx, &channel, platform_id)?;
    }
    Ok(opened > 0)
}

/// Applies the statuses that arrived before this message's send was recorded.
fn apply_early_statuses(
    tx: &rusqlite::Connection,
    channel: &ChannelId,
    platform_id: &PlatformMessageId,
) -> Result<(), StoreError> {
    let statuses: Vec<String> = tx
        .prepare_cached(
            "SELECT status FROM early_statuses WHERE channel_id = ?1 AND platform_id = ?2
             ORDER BY status_rank",
        )?
        .query_map(params![channel.as_str(), platform_id.as_str()], |row| {
            row.get(0)
        })?
        .collect::<Result<_, _>>()?;
    for status in statuses {
        let status: DeliveryStatus = parse_json(&status)?;
        apply_status(tx, channel, platform_id, &status)?;
    }
    tx.prepare_cached("DELETE FROM early_statuses WHERE channel_id = ?1 AND platform_id = ?2")?
        .execute(params![channel.as_str(), platform_id.as_str()])?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_message(
    tx: &rusqlite::Connection,
    id: MessageId,
    conversation: &ConversationId,
    channel: &ChannelId,
    contact: &ContactId,
    platform_id: Option<&PlatformMessageId>,
    direction: Direction,
    author: &Author,
    content: &concierge_domain::Content,
    reply_to: Option<&PlatformMessageId>,
    created_at: Millis,
    status: &DeliveryStatus,
) -> Result<bool, StoreError> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO messages (id, conversation_id, channel_id, contact_id, platform_id,
             direction, author, content, reply_to, created_at, status, status_rank)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            id.to_string(),
            conversation.as_str(),
            channel.as_str(),
            contact.as_str(),
            platform_id.map(PlatformMessageId::as_str),
            json(&direction)?,
            json(author)?,
            json(content)?,
            reply_to.map(PlatformMessageId::as_str),
            created_at,
            json(status)?,
            status.rank()
        ],
    )?;
    Ok(inserted > 0)
}

/// Puts one reply in the outbox with its message; `None` when its idempotency key was
/// already used (a replayed turn or request).
fn queue_reply(
    tx: &rusqlite::Connection,
    conversation: &ConversationId,
    channel: &ChannelId,
    contact: &ContactId,
    reply: &concierge_store::NewReply,
    now: Millis,
) -> Result<Option<MessageId>, StoreError> {
    let id = MessageId::new();
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO outbox (idempotency_key, message_id, conversation_id, state,
             next_attempt_at, created_at, reengage)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?5)",
        params![
            reply.idempotency_key,
            id.to_string(),
            conversation.as_str(),
            now,
            reply.reengage
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    insert_message(
        tx,
        id,
        conversation,
        channel,
        contact,
        None,
        Direction::Outbound,
        &reply.author,
        &reply.content,
        reply.reply_to.as_ref(),
        now,
        &DeliveryStatus::Pending,
    )?;
    Ok(Some(id))
}

/// The deployment's conversation key: made and kept at the first start, read after.
fn conversation_key(conn: &rusqlite::Connection) -> Result<ConversationKey, StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES ('conversation_key', ?1)",
        params![ConversationKey::generate().as_bytes()],
    )?;
    let stored: Vec<u8> = conn.query_row(
        "SELECT value FROM secrets WHERE name = 'conversation_key'",
        [],
        |row| row.get(0),
    )?;
    ConversationKey::from_bytes(&stored).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "the stored conversation key has {} bytes, not {}",
            stored.len(),
            ConversationKey::LEN
        ))
    })
}

/// The id of the pair's conversation: the legacy one when a conversation was stored under
/// it before ids were keyed, else the keyed one.
fn conversation_id(
    conn: &rusqlite::Connection,
    key: &ConversationKey,
    channel: &ChannelId,
    contact: &ContactId,
) -> Result<ConversationId, StoreError> {
    let legacy = ConversationId::legacy(channel, contact);
    let stored = conn
        .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
        .exists(params![legacy.as_str()])?;
    Ok(if stored {
        legacy
    } else {
        key.conversation(channel, contact)
    })
}

/// Appends one webhook's events, and its raw request with the first inbox row it produces;
/// the caller holds the transaction (or savepoint). Every step below writes through `tx`,
/// so the webhook is stored whole or not at all.
fn ingest_events(
    tx: &rusqlite::Connection,
    key: &ConversationKey,
    events: &[InboundEvent],
    now: Millis,
    raw: Option<&concierge_store::RawWebhook>,
) -> Result<IngestOutcome, StoreError> {
    let mut outcome = IngestOutcome::default();
    let mut raw_id = None;
    // Something new that touches no conversation: the raw webhook is then kept alone.
    let mut alone = events.is_empty();
    for event in events {
        match &event.kind {
            EventKind::Typing => {
                alone = true;
                continue;
            }
            EventKind::ChannelError(fault) => {
                if record_fault(tx, event, fault, now)? {
                    outcome.accepted += 1;
                    alone = true;
                } else {
                    outcome.duplicates += 1;
                }
                continue;
            }
            _ => {}
        }
        if in_inbox(tx, event)? {
            outcome.duplicates += 1;
            continue;
        }
        let resolved = resolve_contact(tx, event)?;
        let event = resolved.as_ref().unwrap_or(event);
        let conversation = conversation_id(tx, key, &event.channel, &event.contact)?;
        if raw_id.is_none()
            && let Some(raw) = raw
        {
            raw_id = Some(raw::insert(tx, raw)?);
        }
        let Some(seq) = insert_inbox_row(tx, event, &conversation, now, raw_id)? else {
            outcome.duplicates += 1;
            continue;
        };
        let recorded = record_event(tx, event, seq, &conversation, now)?;
        tally(&mut outcome, recorded, seq, conversation);
    }
    // A webhook the adapter found nothing in (an update kind it does not read, an echo), or
    // nothing for a conversation (typing, a channel fault), is kept all the same, to no
    // conversation: nothing a platform sends vanishes without a trace to read back.
    if alone
        && raw_id.is_none()
        && let Some(raw) = raw
    {
        raw::insert(tx, raw)?;
    }
    Ok(outcome)
}

/// Keeps a channel fault on the channel's health record; `false` when it was kept already
/// (a redelivered webhook). Faults past 30 days, or past the 200 newest of the channel, go.
fn record_fault(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    fault: &concierge_domain::ChannelFault,
    now: Millis,
) -> Result<bool, StoreError> {
    let channel = event.channel.as_str();
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO channel_faults (channel_id, event_id, code, title, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            channel,
            event.event_id.as_str(),
            fault.code,
            fault.title,
            fault.detail,
            event.at
        ])?;
    tx.prepare_cached(
        "DELETE FROM channel_faults WHERE at < ?1
            OR (channel_id = ?2 AND seq <= (SELECT seq FROM channel_faults WHERE channel_id = ?2
                                            ORDER BY seq DESC LIMIT 1 OFFSET ?3))",
    )?
    .execute(params![
        now - concierge_store::FAULT_RETENTION_MS,
        channel,
        concierge_store::FAULTS_PER_CHANNEL as i64
    ])?;
    Ok(inserted > 0)
}

/// Whether the event is in the inbox already. Asked before the INSERT: with AUTOINCREMENT,
/// even an ignored insert bumps the sequence, which is a page to write and sync for a
/// duplicate.
fn in_inbox(tx: &rusqlite::Connection, event: &InboundEvent) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM inbox WHERE channel_id = ?1 AND event_id = ?2")?
        .exists(params![event.channel.as_str(), event.event_id.as_str()])?)
}

/// The event's inbox row, and its place in the inbox; `None` when the row was there.
fn insert_inbox_row(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    conversation: &ConversationId,
    now: Millis,
    raw_id: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO inbox (channel_id, event_id, conversation_id, event, received_at, done_at, raw_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            event.channel.as_str(),
            event.event_id.as_str(),
            conversation.as_str(),
            json(event)?,
            now,
            done_at(&event.kind, now),
            raw_id
        ])?;
    Ok((inserted > 0).then(|| tx.last_insert_rowid()))
}

/// A delivery status or a contact's change is applied as it is ingested, so its row is done
/// at once; every other event waits for its turn.
fn done_at(kind: &EventKind, now: Millis) -> Option<Millis> {
    kind.applied_at_ingest().then_some(now)
}

/// What a new inbox row turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Applied at once (a delivery status): nothing to process.
    Applied,
    /// Waiting in the inbox for its conversation's turn.
    Appended,
    /// A message already stored under another event id.
    Duplicate,
}

/// Counts one new inbox row into the webhook's outcome.
fn tally(outcome: &mut IngestOutcome, recorded: Recorded, seq: i64, conversation: ConversationId) {
    match recorded {
        Recorded::Applied => outcome.accepted += 1,
        Recorded::Appended => {
            outcome.accepted += 1;
            outcome.appended.push(Appended { seq, conversation });
        }
        Recorded::Duplicate => outcome.duplicates += 1,
    }
}

/// Writes what the event means beyond its inbox row at `seq`.
fn record_event(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    seq: i64,
    conversation: &ConversationId,
    now: Millis,
) -> Result<Recorded, StoreError> {
    match &event.kind {
        EventKind::Status { target, status, .. } => {
            record_status(tx, &event.channel, target, status, now)?;
            return Ok(Recorded::Applied);
        }
        EventKind::Message(message) => {
            return record_message(tx, event, message, seq, conversation, now);
        }
        EventKind::ContactChanged { .. } | EventKind::IdentityChanged => {
            record_contact_change(tx, event, conversation, now)?;
            return Ok(Recorded::Applied);
        }
        _ => {}
    }
    upsert_conversation(tx, event, conversation, now)?;
    match &event.kind {
        EventKind::Started {
            source: Some(source),
        } => {
            tx.prepare_cached("UPDATE conversations SET source = ?1 WHERE id = ?2")?
                .execute(params![source, conversation.as_str()])?;
        }
        EventKind::Edit { target, content } => {
            // The customer's own message now reads as edited.
            tx.prepare_cached(
                "UPDATE messages SET content = ?1
                 WHERE channel_id = ?2 AND platform_id = ?3 AND direction = ?4",
            )?
            .execute(params![
                json(content)?,
                event.channel.as_str(),
                target.as_str(),
                json(&Direction::Inbound)?
            ])?;
        }
        _ => {}
    }
    Ok(Recorded::Appended)
}

/// A changed number or identity: the conversation is addressed to the new number (the ids
/// were linked when the event was resolved), and concierges find a note of it.
fn record_contact_change(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    conversation: &ConversationId,
    now: Millis,
) -> Result<(), StoreError> {
    upsert_conversation(tx, event, conversation, now)?;
    if let EventKind::ContactChanged { previous, address } = &event.kind {
        tx.prepare_cached(
            "UPDATE conversations SET contact_id = ?1 WHERE id = ?2 AND contact_id = ?3",
        )?
        .execute(params![
            address.as_str(),
            conversation.as_str(),
            previous.as_str()
        ])?;
    }
    if let Some(note) = event.kind.note() {
        tx.prepare_cached(
            "INSERT INTO notes (conversation_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            conversation.as_str(),
            event.channel.as_str(),
            note,
            now
        ])?;
    }
    Ok(())
}

/// A delivery status, applied to the send it describes, or kept until that send is
/// recorded.
fn record_status(
    tx: &rusqlite::Connection,
    channel: &ChannelId,
    target: &PlatformMessageId,
    status: &DeliveryStatus,
    now: Millis,
) -> Result<(), StoreError> {
    if apply_status(tx, channel, target, status)? || message_exists(tx, channel, target)? {
        return Ok(());
    }
    // The send it describes is not recorded yet (the platform answered the status webhook
    // before our send call returned): keep it for mark_sent.
    tx.prepare_cached(
        "INSERT OR IGNORE INTO early_statuses (channel_id, platform_id, status, status_rank, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        channel.as_str(),
        target.as_str(),
        json(status)?,
        status.rank(),
        now
    ])?;
    // Statuses for sends never recorded (another tool on the same number) would otherwise
    // pile up: a week is far longer than any send takes.
    tx.prepare_cached("DELETE FROM early_statuses WHERE received_at < ?1")?
        .execute(params![now - EARLY_STATUS_RETENTION_MS])?;
    Ok(())
}

/// A customer's message, tied to its inbox row; one already stored under another event id
/// (a platform re-sent it with a new envelope) is recorded as done, not answered twice.
fn record_message(
    tx: &rusqlite::Connection,
    event: &InboundEvent,
    message: &concierge_domain::InboundMessage,
    seq: i64,
    conversation: &ConversationId,
    now: Millis,
) -> Result<Recorded, StoreError> {
    upsert_conversation(tx, event, conversation, now)?;
    let id = MessageId::new();
    let fresh = insert_message(
        tx,
        id,
        conversation,
        &event.channel,
        &event.contact,
        Some(&message.platform_id),
        Direction::Inbound,
        &message.content.inbound_author(),
        &message.content,
        message.reply_to.as_ref(),
        event.at,
        &DeliveryStatus::Delivered,
    )?;
    if fresh {
        tx.prepare_cached("UPDATE inbox SET message_id = ?1 WHERE seq = ?2")?
            .execute(params![id.to_string(), seq])?;
        return Ok(Recorded::Appended);
    }
    tx.prepare_cached("UPDATE inbox SET done_at = ?1, note = 'duplicate message' WHERE seq = ?2")?
        .execute(params![now, seq])?;
    Ok(Recorded::Duplicate)
}

impl concierge_store::Instances for SqliteStore {}

#[async_trait]
impl Inbox for SqliteStore {
    async fn ingest(&self, events: &[InboundEvent]) -> Result<IngestOutcome, StoreError> {
        let (events, key) = (events.to_vec(), self.key.clone());
        self.write(move |tx| ingest_events(tx, &key, &events, now_millis(), None))
            .await
    }

    async fn ingest_raw(
        &self,
        events: &[InboundEvent],
        raw: concierge_store::RawWebhook,
    ) -> Result<IngestOutcome, StoreError> {
        let (events, key) = (events.to_vec(), self.key.clone());
        let outcome = self
            .write(move |tx| ingest_events(tx, &key, &events, now_millis(), Some(&raw)))
            .await?;
        self.prune_raw_when_due();
        Ok(outcome)
    }

    async fn raw_webhooks(
        &self,
        filter: concierge_store::RawFilter,
    ) -> Result<Vec<concierge_store::KeptWebhook>, StoreError> {
        self.read(move |conn| raw::read(conn, &filter)).await
    }

    async fn channel_faults(
        &self,
        limit: usize,
    ) -> Result<Vec<concierge_store::KeptFault>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT channel_id, code, title, detail, at FROM channel_faults
                 ORDER BY at DESC, seq DESC LIMIT ?1",
            )?;
            let mut rows = stmt.query(params![limit as i64])?;
            let mut faults = Vec::new();
            while let Some(row) = rows.next()? {
                let channel: String = row.get(0)?;
                faults.push(concierge_store::KeptFault {
                    channel: ChannelId::parse(channel)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    fault: concierge_domain::ChannelFault {
                        code: row.get(1)?,
                        title: row.get(2)?,
                        detail: row.get(3)?,
                    },
                    at: row.get(4)?,
                });
            }
            Ok(faults)
        })
        .await
    }

    async fn pending(&self, after: i64, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let result = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, conversation_id, event, message_id, received_at FROM inbox
                 WHERE done_at IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, limit as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })?;
                let mut entries = Vec::new();
                let mut unreadable = Vec::new();
                for row in rows {
                    let (seq, conversation, event, message, received_at) = row?;
                    let decoded = (|| -> Result<InboxEntry, StoreError> {
                        Ok(InboxEntry {
                            seq,
                            conversation: ConversationId::parse(conversation)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                            event: parse_json(&event)?,
                            message: message
                                .map(|m| MessageId::parse(&m))
                                .transpose()
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                            received_at,
                        })
                    })();
                    match decoded {
                        Ok(entry) => entries.push(entry),
                        Err(e) => unreadable.push((seq, e.to_string())),
                    }
                }
                Ok((entries, unreadable))
            })
            .await?;
        let (entries, unreadable) = result;
        if !unreadable.is_empty() {
            for (seq, reason) in &unreadable {
                tracing::error!(seq, %reason, "an inbox entry cannot be read; set aside");
            }
            self.write(move |tx| {
                let now = now_millis();
                for (seq, reason) in &unreadable {
                    tx.prepare_cached(
                        "UPDATE inbox SET done_at = ?1, note = ?2 WHERE seq = ?3 AND done_at IS NULL",
                    )?
                    .execute(params![now, format!("unreadable: {reason}"), seq])?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(entries)
    }

    async fn complete(&self, seq: i64, outcome: TurnOutcome) -> Result<Completion, StoreError> {
        self.write(move |tx| {
            let now = now_millis();
            let row: Option<(Option<i64>, String)> = tx
                .query_row(
                    "SELECT done_at, conversation_id FROM inbox WHERE seq = ?1",
                    params![seq],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((done_at, conversation)) = row else {
                return Err(StoreError::NotFound(format!("inbox entry {seq}")));
            };
            let mut completion = Completion::default();
            if done_at.is_some() {
                completion.already_done = true;
                return Ok(completion);
            }
            let conv: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT channel_id, contact_id, thread FROM conversations WHERE id = ?1",
                    params![conversation],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            if let Some((channel, contact, thread)) = conv {
                let current: ThreadState = parse_json(&thread)?;
                // Compare-and-set: a change decided from a state that no longer holds (a
                // concierge took the thread meanwhile) is not applied.
                let applied = match &outcome.thread {
                    Some(change) if change.from == current => {
                        if change.to != current {
                            tx.execute(
                                "UPDATE conversations SET thread = ?1 WHERE id = ?2",
                                params![json(&change.to)?, conversation],
                            )?;
                        }
                        true
                    }
                    _ => false,
                };
                // Replies are judged by the state the turn was decided from (the current
                // one when the change applied): a turn that queues the thread for a human
                // still tells the customer so; a takeover meanwhile silences it.
                let thread = &current;
                completion.thread_changed = applied && outcome.thread.is_some();
                if applied && let Some(handoff) = &outcome.handoff {
                    queue::insert_handoff(tx, &conversation, handoff, now)?;
                }
                for note in &outcome.notes {
                    tx.execute(
                        "INSERT INTO notes (conversation_id, author, body, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![conversation, note.author, note.body, now],
                    )?;
                }
                if let Some(usage) = outcome.usage.filter(|u| u.llm_calls > 0) {
                    tx.execute(
                        "INSERT OR REPLACE INTO llm_usage (inbox_seq, conversation_id, input_tokens,
                             output_tokens, llm_calls, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            seq,
                            conversation,
                            usage.input_tokens as i64,
                            usage.output_tokens as i64,
                            usage.llm_calls as i64,
                            now
                        ],
                    )?;
                }
                let conversation_id = ConversationId::parse(conversation.clone())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let channel =
                    ChannelId::parse(channel).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let contact =
                    ContactId::parse(contact).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                for reply in &outcome.replies {
                    let automated = matches!(reply.author, Author::Agent(_) | Author::System);
                    if automated && !thread.bot_may_reply() {
                        completion.refused += 1;
                        continue;
                    }
                    if let Some(id) =
                        queue_reply(tx, &conversation_id, &channel, &contact, reply, now)?
                    {
                        completion.queued.push(id);
                    }
                }
            }
            for absorbed in &outcome.absorbed {
                // Only events of the same conversation: a caller's mistake cannot close
                // another conversation's work.
                tx.execute(
                    "UPDATE inbox SET done_at = ?1
                     WHERE seq = ?2 AND conversation_id = ?3 AND done_at IS NULL",
                    params![now, absorbed, conversation],
                )?;
            }
            tx.execute(
                "UPDATE inbox SET done_at = ?1 WHERE seq = ?2",
                params![now, seq],
            )?;
            Ok(completion)
        })
        .await
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.write(move |tx| {
            let ids: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    CLAIM_DUE,
                )?;
                stmt.query_map(params![now, limit as i64], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let mut entries = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(
                    "UPDATE outbox SET
                         maybe_sent = CASE WHEN state = 'sending' THEN 1 ELSE maybe_sent END,
                         state = 'sending', attempts = attempts + 1, lease_until = ?2,
                         first_attempt_at = COALESCE(first_attempt_at, ?1)
                     WHERE id = ?3",
                    params![now, now + lease_ms, id],
                )?;
                let sql = format!(
                    "SELECT o.id, o.idempotency_key, o.attempts, o.first_attempt_at, o.maybe_sent, o.reengage, {MESSAGE_COLUMNS}
                     FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.id = ?1"
                );
                let entry = tx.query_row(&sql, params![id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, bool>(4)?,
                        row.get::<_, bool>(5)?,
                        message_from_row(row, 6)?,
                    ))
                })?;
                let (id, idempotency_key, attempts, first_attempt_at, maybe_sent, reengage, message) =
                    entry;
                entries.push(OutboxEntry {
                    id,
                    idempotency_key,
                    message: message?,
                    attempts,
                    first_attempt_at,
                    maybe_sent,
                    reengage,
                });
            }
            Ok(entries)
        })
        .await
    }

    async fn mark_sent(
        &self,
        id: i64,
        platform_id: Option<PlatformMessageId>,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let message_id: Option<String> = tx
                .query_row(
                    "SELECT message_id FROM outbox WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(message_id) = message_id else {
                return Err(StoreError::NotFound(format!("outbox entry {id}")));
            };
            record_sent(tx, id, &message_id, platform_id.as_ref(), now)?;
            Ok(())
        })
        .await
    }

    async fn confirm_sent(
        &self,
        channel: &ChannelId,
        message: MessageId,
        platform_id: PlatformMessageId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        // Most statuses name a reply long recorded as sent: a read answers them without a
        // turn of the single writer. An entry that is not open now never opens again.
        let open = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM outbox WHERE message_id = ?1 AND state IN ('pending', 'sending')",
                    )?
                    .exists(params![message.to_string()])?)
            })
            .await?;
        if !open {
            return Ok(false);
        }
        let channel = channel.clone();
        self.write(move |tx| {
            let message_id = message.to_string();
            let open: Option<i64> = tx
                .prepare_cached(
                    "SELECT o.id FROM outbox o JOIN messages m ON m.id = o.message_id
                     WHERE o.message_id = ?1 AND o.state IN ('pending', 'sending')
                       AND m.channel_id = ?2",
                )?
                .query_row(params![message_id, channel.as_str()], |row| row.get(0))
                .optional()?;
            let Some(id) = open else {
                return Ok(false);
            };
            record_sent(tx, id, &message_id, Some(&platform_id), now)
        })
        .await
    }

    async fn retry_at(
        &self,
        id: i64,
        at: Millis,
        error: &str,
        maybe_sent: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?1, lease_until = NULL,
                     last_error = ?2, maybe_sent = MAX(maybe_sent, ?4)
                 WHERE id = ?3 AND state = 'sending'",
                params![at, error, id, maybe_sent],
            )?;
            Ok(())
        })
        .await
    }

    async fn mark_failed(
        &self,
        id: i64,
        code: Option<String>,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.write(move |tx| {
            let message_id: Option<String> = tx
                .query_row(
                    "SELECT message_id FROM outbox WHERE id = ?1 AND state IN ('pending', 'sending')",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(message_id) = message_id else {
                return Ok(());
            };
            tx.execute(
                "UPDATE outbox SET state = 'failed', lease_until = NULL, finished_at = ?1, last_error = ?2
                 WHERE id = ?3",
                params![now, reason, id],
            )?;
            let failed = DeliveryStatus::Failed { code, reason };
            tx.execute(
                "UPDATE messages SET status = ?1, status_rank = ?2 WHERE id = ?3 AND status_rank < ?2",
                params![json(&failed)?, failed.rank(), message_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<Millis>, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(CASE o.state WHEN 'pending' THEN o.next_attempt_at ELSE o.lease_until END)
                 FROM outbox o
                 WHERE o.state IN ('pending', 'sending')
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox p
                       WHERE p.conversation_id = o.conversation_id AND p.id < o.id
                         AND p.state IN ('pending', 'sending'))",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }

    async fn is_reengagement(&self, message: MessageId) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT reengage FROM outbox WHERE message_id = ?1")?
                .query_row(params![message.to_string()], |row| row.get::<_, bool>(0))
                .optional()?
                .unwrap_or(false))
        })
        .await
    }

    async fn release_leases(&self, keep: &[i64]) -> Result<usize, StoreError> {
        let keep = serde_json::to_string(keep).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE outbox SET state = 'pending', maybe_sent = 1, lease_until = NULL
                 WHERE state = 'sending' AND id NOT IN (SELECT value FROM json_each(?1))",
                params![keep],
            )?)
        })
        .await
    }
}

#[async_trait]
impl Conversations for SqliteStore {
    async fn conversation_of(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<ConversationId, StoreError> {
        let (channel, contact, key) = (channel.clone(), contact.clone(), self.key.clone());
        self.read(move |conn| conversation_id(conn, &key, &channel, &contact))
            .await
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT channel_id, contact_id, thread, created_at, last_message_at, source
                     FROM conversations WHERE id = ?1",
                    params![id.as_str()],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, Option<String>>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((channel, contact, thread, created_at, last_message_at, source)) = row else {
                return Ok(None);
            };
            Ok(Some(Conversation {
                id,
                channel: ChannelId::parse(channel)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                contact: ContactId::parse(contact)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                thread: parse_json(&thread)?,
                created_at,
                last_message_at,
                source,
            }))
        })
        .await
    }

    async fn messages(
        &self,
        id: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![id.as_str(), after, limit as i64], |row| {
                message_from_row(row, 0)
            })?;
            let mut messages = Vec::new();
            for row in rows {
                messages.push(row??);
            }
            Ok(messages)
        })
        .await
    }

    async fn recent_messages(
        &self,
        id: &ConversationId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 ORDER BY m.seq DESC LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![id.as_str(), limit as i64], |row| {
                message_from_row(row, 0)
            })?;
            let mut messages = Vec::new();
            for row in rows {
                messages.push(row??);
            }
            messages.reverse();
            Ok(messages)
        })
        .await
    }

    async fn messages_upto(
        &self,
        id: &ConversationId,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let before = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.seq <= ?2 ORDER BY m.seq DESC LIMIT ?3"
            );
            let mut messages = Vec::new();
            for row in conn
                .prepare_cached(&before)?
                .query_map(params![id.as_str(), upto, limit as i64], |row| {
                    message_from_row(row, 0)
                })?
            {
                messages.push(row??);
            }
            messages.reverse();
            let after = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.seq > ?2 AND m.direction = ?3
                 ORDER BY m.seq LIMIT ?4"
            );
            for row in conn.prepare_cached(&after)?.query_map(
                params![id.as_str(), upto, json(&Direction::Outbound)?, limit as i64],
                |row| message_from_row(row, 0),
            )? {
                messages.push(row??);
            }
            Ok(messages)
        })
        .await
    }

    async fn last_inbound_at(&self, id: &ConversationId) -> Result<Option<Millis>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MAX(created_at) FROM messages WHERE conversation_id = ?1 AND direction = ?2 AND author = ?3",
                )?
                .query_row(params![id.as_str(), json(&Direction::Inbound)?, json(&Author::Customer)?], |row| {
                    row.get::<_, Option<i64>>(0)
                })?)
        })
        .await
    }

    async fn message_by_platform_id(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
    ) -> Result<Option<Message>, StoreError> {
        let (channel, platform_id) = (channel.clone(), platform_id.clone());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.channel_id = ?1 AND m.platform_id = ?2"
            );
            let row = conn
                .query_row(&sql, params![channel.as_str(), platform_id.as_str()], |row| {
                    message_from_row(row, 0)
                })
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1");
            let row = conn
                .query_row(&sql, params![id.to_string()], |row| {
                    message_from_row(row, 0)
                })
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn thread_state(&self, id: &ConversationId) -> Result<ThreadState, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let thread: Option<String> = conn
                .query_row(
                    "SELECT thread FROM conversations WHERE id = ?1",
                    params![id.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            match thread {
                Some(thread) => parse_json(&thread),
                None => Ok(ThreadState::initial()),
            }
        })
        .await
    }

    async fn set_thread_state(
        &self,
        id: &ConversationId,
        state: ThreadState,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let changed = conn.execute(
                "UPDATE conversations SET thread = ?1 WHERE id = ?2",
                params![json(&state)?, id.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("conversation {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn update_status(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
        status: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        let channel = channel.clone();
        let platform_id = platform_id.clone();
        self.write(move |tx| {
            let changed = apply_status(tx, &channel, &platform_id, &status)?;
            Ok(changed)
        })
        .await
    }

    async fn set_media(&self, message: MessageId, kept: &KeptMedia) -> Result<bool, StoreError> {
        let kept = kept.clone();
        self.write(move |tx| {
            let id = message.to_string();
            let content: Option<String> = tx
                .prepare_cached("SELECT content FROM messages WHERE id = ?1")?
                .query_row(params![id], |row| row.get(0))
                .optional()?;
            let Some(content) = content else {
                return Ok(false);
            };
            let Some(changed) = parse_json::<Content>(&content)?.with_kept(kept) else {
                return Ok(false);
            };
            tx.prepare_cached("UPDATE messages SET content = ?1 WHERE id = ?2")?
                .execute(params![json(&changed)?, id])?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Journal for SqliteStore {
    async fn notes(&self, id: &ConversationId) -> Result<Vec<Note>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, author, body, created_at FROM notes
                 WHERE conversation_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id.as_str()], |row| {
                Ok(Note {
                    seq: row.get(0)?,
                    conversation: id.clone(),
                    author: row.get(1)?,
                    body: row.get(2)?,
                    created_at: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn handoffs(&self, id: &ConversationId) -> Result<Vec<Handoff>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM handoffs h WHERE h.conversation_id = ?1 ORDER BY h.created_at, h.rowid",
                queue::HANDOFF_COLUMNS
            ))?;
            let rows = stmt.query_map(params![id.as_str()], |row| queue::handoff_from_row(row, 0))?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn usage(&self, id: &ConversationId) -> Result<TurnUsage, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                            COALESCE(SUM(llm_calls), 0)
                     FROM llm_usage WHERE conversation_id = ?1",
                )?
                .query_row(params![id.as_str()], |row| {
                    Ok(TurnUsage {
                        input_tokens: row.get::<_, i64>(0)?.max(0) as u64,
                        output_tokens: row.get::<_, i64>(1)?.max(0) as u64,
                        llm_calls: row.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?)
        })
        .await
    }

    async fn usage_since(
        &self,
        id: &ConversationId,
        since: Millis,
    ) -> Result<TurnUsage, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                            COALESCE(SUM(llm_calls), 0)
                     FROM llm_usage WHERE conversation_id = ?1 AND created_at >= ?2",
                )?
                .query_row(params![id.as_str(), since], |row| {
                    Ok(TurnUsage {
                        input_tokens: row.get::<_, i64>(0)?.max(0) as u64,
                        output_tokens: row.get::<_, i64>(1)?.max(0) as u64,
                        llm_calls: row.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?)
        })
        .await
    }

    async fn summary(&self, id: &ConversationId) -> Result<Option<Summary>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT body, upto_seq FROM summaries WHERE conversation_id = ?1")?
                .query_row(params![id.as_str()], |row| {
                    Ok(Summary {
                        text: row.get(0)?,
                        upto_seq: row.get(1)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn set_summary(&self, id: &ConversationId, summary: Summary) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO summaries (conversation_id, body, upto_seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (conversation_id) DO UPDATE
                 SET body = excluded.body, upto_seq = excluded.upto_seq,
                     updated_at = excluded.updated_at
                 WHERE excluded.upto_seq > summaries.upto_seq",
                params![id.as_str(), summary.text, summary.upto_seq, now_millis()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod plan_tests {
    /// The hot queries go through their indexes: a plan that scans a table grows with
    /// every message ever sent.
    #[test]
    fn the_hot_queries_scan_no_table() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::schema::migrations().to_latest(&mut conn).unwrap();
        for (what, sql) in [
            ("claim_due", super::CLAIM_DUE),
            (
                "webhook prune",
                "DELETE FROM webhook_deliveries WHERE state = ?1 AND done_at < ?2",
            ),
        ] {
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let lines: Vec<String> = plan
                .query_map(rusqlite::params![1, 2], |row| row.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                lines.iter().all(|l| !l.starts_with("SCAN")),
                "{what}: {lines:?}"
            );
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// A constraint SQLite refuses is a conflict, anything else unavailability; both keep
    /// SQLite's error as their source.
    #[test]
    fn sqlite_errors_keep_their_source_and_tell_a_conflict() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        let duplicate = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        let e = StoreError::from(duplicate);
        assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
        let missing = conn
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .unwrap_err();
        let e = StoreError::from(missing);
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("nowhere")));
    }
}

#[cfg(test)]
mod ingest_tests {
    use super::*;
    use concierge_domain::{Content, EventId, InboundMessage};

    fn event(event_id: &str, kind: EventKind) -> InboundEvent {
        InboundEvent {
            channel: ChannelId::parse("web").unwrap(),
            event_id: EventId::parse(event_id).unwrap(),
            contact: ContactId::parse("ana").unwrap(),
            aliases: Vec::new(),
            at: 1_000,
            kind,
        }
    }

    fn message(platform_id: &str) -> EventKind {
        EventKind::Message(InboundMessage {
            platform_id: PlatformMessageId::parse(platform_id).unwrap(),
            content: Content::text("hello"),
            reply_to: None,
            display_name: None,
            over_budget: None,
        })
    }

    #[test]
    fn each_new_row_is_counted_by_what_it_turned_out_to_be() {
        let conversation = ConversationId::parse("c1").unwrap();
        let mut outcome = IngestOutcome::default();
        tally(&mut outcome, Recorded::Applied, 1, conversation.clone());
        tally(&mut outcome, Recorded::Appended, 2, conversation.clone());
        tally(&mut outcome, Recorded::Duplicate, 3, conversation.clone());
        assert_eq!((outcome.accepted, outcome.duplicates), (2, 1));
        assert_eq!(
            outcome.appended,
            [Appended {
                seq: 2,
                conversation
            }]
        );
        assert_eq!(done_at(&EventKind::Typing, 5), None);
    }

    #[test]
    fn one_webhook_is_counted_and_stored_step_by_step() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        schema::migrations().to_latest(&mut conn).unwrap();
        let key = conversation_key(&conn).unwrap();
        let status = EventKind::Status {
            target: PlatformMessageId::parse("ours-1").unwrap(),
            status: DeliveryStatus::Read,
            ours: None,
        };
        let events = [
            event("e1", message("p1")),
            event("e1", message("p1")),
            event("e2", message("p1")),
            event("e3", EventKind::Typing),
            event("e4", status),
            event(
                "e5",
                EventKind::Started {
                    source: Some("ad".into()),
                },
            ),
        ];
        let tx = conn.transaction().unwrap();
        let outcome = ingest_events(&tx, &key, &events, 2_000, None).unwrap();
        tx.commit().unwrap();
        assert_eq!((outcome.accepted, outcome.duplicates), (3, 2));
        let seqs: Vec<i64> = outcome.appended.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, [1, 4]);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM inbox"), 4);
        assert_eq!(count("SELECT COUNT(*) FROM messages"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM early_statuses"), 1);
        assert_eq!(
            count("SELECT COUNT(*) FROM inbox WHERE note = 'duplicate message' AND done_at = 2000"),
            1
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM conversations WHERE source = 'ad'"),
            1
        );
    }
}
