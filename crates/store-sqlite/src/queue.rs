//! The handoff queue on SQLite: thread moves as compare-and-set in one transaction with
//! their handoff, note and audit rows; concierge replies checked against the owner in the
//! same transaction that queues them; SLA breaches, offers, tokens and presence.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::rows::{MESSAGE_COLUMNS, corrupt, json, message_from_row, parse_json};
use super::{SqliteStore, queue_reply};
use concierge_domain::{
    ChannelId, ContactId, ConversationId, MessageId, Millis, ThreadState, now_millis,
};
use concierge_store::{
    AuditRecord, ConciergeReplied, Conversation, Handoff, HandoffChange, NewAudit, NewHandoff,
    NewNote, NewReply, Presence, Queue, QueueEntry, ServiceToken, SlaBreach, StoreError,
    ThreadMove,
};

/// The handoff columns, in the order [`handoff_from_row`] reads them, from alias `h`.
pub const HANDOFF_COLUMNS: &str = "h.id, h.conversation_id, h.reason, h.priority, h.team, \
     h.requested_by, h.created_at, h.brief, h.sla_due_at, h.breached_at, h.claimed_by, \
     h.claimed_at, h.first_response_at, h.offered_to, h.offer_until, h.closed_at, h.outcome, \
     h.release_note";

/// Reads a handoff starting at column `start`.
pub fn handoff_from_row(
    row: &rusqlite::Row<'_>,
    start: usize,
) -> rusqlite::Result<Result<Handoff, StoreError>> {
    let conversation: String = row.get(start + 1)?;
    let conversation = match ConversationId::parse(conversation) {
        Ok(c) => c,
        Err(e) => return Ok(Err(corrupt(e))),
    };
    Ok(Ok(Handoff {
        id: row.get(start)?,
        conversation,
        reason: row.get(start + 2)?,
        priority: row.get(start + 3)?,
        team: row.get(start + 4)?,
        requested_by: row.get(start + 5)?,
        created_at: row.get(start + 6)?,
        brief: row.get(start + 7)?,
        sla_due_at: row.get(start + 8)?,
        breached_at: row.get(start + 9)?,
        claimed_by: row.get(start + 10)?,
        claimed_at: row.get(start + 11)?,
        first_response_at: row.get(start + 12)?,
        offered_to: row.get(start + 13)?,
        offer_until: row.get(start + 14)?,
        closed_at: row.get(start + 15)?,
        outcome: row.get(start + 16)?,
        release_note: row.get(start + 17)?,
    }))
}

pub fn insert_handoff(
    tx: &rusqlite::Connection,
    conversation: &str,
    handoff: &NewHandoff,
    now: Millis,
) -> Result<(), StoreError> {
    // A new request replaces one still open (a thread is in the queue once).
    tx.execute(
        "UPDATE handoffs SET closed_at = ?1, outcome = 'superseded'
         WHERE conversation_id = ?2 AND closed_at IS NULL AND id <> ?3",
        params![now, conversation, handoff.id],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO handoffs (id, conversation_id, reason, priority, team,
             requested_by, created_at, brief, sla_due_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            handoff.id,
            conversation,
            handoff.reason,
            handoff.priority,
            handoff.team,
            handoff.requested_by,
            now,
            handoff.brief,
            handoff.sla_due_at
        ],
    )?;
    Ok(())
}

/// Cancels the agents' replies of a conversation still waiting in the outbox: a person holds
/// the thread now.
fn cancel_agent_replies(
    tx: &rusqlite::Connection,
    conversation: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let reason = "cancelled: a person took the thread over before it was sent";
    let failed = concierge_domain::DeliveryStatus::Failed {
        code: None,
        reason: reason.to_string(),
    };
    let ids: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT o.message_id FROM outbox o JOIN messages m ON m.id = o.message_id
             WHERE o.conversation_id = ?1 AND o.state = 'pending'
               AND json_extract(m.author, '$.kind') = 'agent'",
        )?;
        stmt.query_map(params![conversation], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };
    for id in ids {
        tx.execute(
            "UPDATE outbox SET state = 'failed', finished_at = ?1, last_error = ?2
             WHERE message_id = ?3 AND state = 'pending'",
            params![now, reason, id],
        )?;
        tx.execute(
            "UPDATE messages SET status = ?1, status_rank = ?2 WHERE id = ?3 AND status_rank < ?2",
            params![json(&failed)?, failed.rank(), id],
        )?;
    }
    Ok(())
}

fn insert_audit(
    tx: &rusqlite::Connection,
    entry: &NewAudit,
    now: Millis,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, conversation_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            now,
            entry.actor,
            entry.action,
            entry.conversation.as_ref().map(ConversationId::as_str),
            entry.detail
        ],
    )?;
    Ok(())
}

fn insert_note(
    tx: &rusqlite::Connection,
    conversation: &ConversationId,
    note: &NewNote,
    now: Millis,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO notes (conversation_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![conversation.as_str(), note.author, note.body, now],
    )?;
    Ok(())
}

/// The next priority up, for an SLA breach.
pub fn raised(priority: Option<&str>) -> &'static str {
    match priority.unwrap_or("normal") {
        "low" => "normal",
        "normal" => "high",
        _ => "urgent",
    }
}

/// The contact a conversation's address stands for: the address itself, or the contact it is
/// an alias of (a number the customer changed to), whose row holds the name.
const PERSON: &str = "COALESCE((SELECT a.contact_id FROM contact_aliases a
                                WHERE a.channel_id = c.channel_id AND a.alias = c.contact_id),
                               c.contact_id)";

#[async_trait]
impl Queue for SqliteStore {
    async fn queue(&self) -> Result<Vec<QueueEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT c.id, c.channel_id, c.contact_id, c.thread, c.created_at,
                        c.last_message_at, c.source, k.display_name, {HANDOFF_COLUMNS}
                 FROM conversations c
                 LEFT JOIN contacts k ON k.channel_id = c.channel_id AND k.contact_id = {PERSON}
                 LEFT JOIN handoffs h ON h.conversation_id = c.id AND h.closed_at IS NULL
                 WHERE json_extract(c.thread, '$.state') IN ('queued', 'human')"
            ))?;
            let mut rows = stmt.query([])?;
            let mut entries: Vec<QueueEntry> = Vec::new();
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let channel: String = row.get(1)?;
                let contact: String = row.get(2)?;
                let thread: String = row.get(3)?;
                let conversation = Conversation {
                    id: ConversationId::parse(id).map_err(corrupt)?,
                    channel: ChannelId::parse(channel).map_err(corrupt)?,
                    contact: ContactId::parse(contact).map_err(corrupt)?,
                    thread: parse_json(&thread)?,
                    created_at: row.get(4)?,
                    last_message_at: row.get(5)?,
                    source: row.get(6)?,
                };
                let handoff = match row.get::<_, Option<String>>(8)? {
                    Some(_) => Some(handoff_from_row(row, 8)??),
                    None => None,
                };
                // Two open handoffs cannot happen (a new one closes the old); keep the newest.
                if let Some(existing) = entries
                    .iter_mut()
                    .find(|e| e.conversation.id == conversation.id)
                {
                    if let Some(h) = handoff
                        && existing
                            .handoff
                            .as_ref()
                            .is_none_or(|e| e.created_at <= h.created_at)
                    {
                        existing.handoff = Some(h);
                    }
                    continue;
                }
                entries.push(QueueEntry {
                    conversation,
                    contact_name: row.get(7)?,
                    handoff,
                    last_inbound: None,
                });
            }
            let mut last = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.direction = '\"inbound\"'
                 ORDER BY m.seq DESC LIMIT 1"
            ))?;
            for entry in &mut entries {
                entry.last_inbound = last
                    .query_row(params![entry.conversation.id.as_str()], |row| {
                        message_from_row(row, 0)
                    })
                    .optional()?
                    .transpose()?;
            }
            Ok(entries)
        })
        .await
    }

    async fn contact_name(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<String>, StoreError> {
        let conversation = conversation.clone();
        self.read(move |conn| {
            let name: Option<Option<String>> = conn
                .prepare_cached(&format!(
                    "SELECT k.display_name FROM conversations c
                     JOIN contacts k ON k.channel_id = c.channel_id AND k.contact_id = {PERSON}
                     WHERE c.id = ?1"
                ))?
                .query_row(params![conversation.as_str()], |row| row.get(0))
                .optional()?;
            Ok(name.flatten())
        })
        .await
    }

    async fn move_thread(&self, change: ThreadMove) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let now = now_millis();
            let conversation = change.conversation.as_str();
            let thread: Option<String> = tx
                .query_row(
                    "SELECT thread FROM conversations WHERE id = ?1",
                    params![conversation],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(thread) = thread else {
                return Err(StoreError::NotFound(format!("conversation {conversation}")));
            };
            let current: ThreadState = parse_json(&thread)?;
            if current != change.from {
                return Ok(false);
            }
            tx.execute(
                "UPDATE conversations SET thread = ?1 WHERE id = ?2",
                params![json(&change.to)?, conversation],
            )?;
            match &change.handoff {
                HandoffChange::None => {}
                HandoffChange::Open(handoff) => insert_handoff(tx, conversation, handoff, now)?,
                HandoffChange::Close { outcome, note } => {
                    tx.execute(
                        "UPDATE handoffs SET closed_at = ?1, outcome = ?2, release_note = ?3,
                             offered_to = NULL, offer_until = NULL
                         WHERE conversation_id = ?4 AND closed_at IS NULL",
                        params![now, outcome, note, conversation],
                    )?;
                }
                HandoffChange::Requeue { team, sla_due_at } => {
                    tx.execute(
                        "UPDATE handoffs SET team = COALESCE(?1, team), claimed_by = NULL,
                             offered_to = NULL, offer_until = NULL, sla_due_at = ?2,
                             breached_at = NULL, first_response_at = NULL
                         WHERE conversation_id = ?3 AND closed_at IS NULL",
                        params![team, sla_due_at, conversation],
                    )?;
                }
            }
            if !change.to.bot_may_reply() {
                cancel_agent_replies(tx, conversation, now)?;
            }
            if let ThreadState::Human { concierge } = &change.to {
                tx.execute(
                    "UPDATE handoffs SET claimed_by = ?1, claimed_at = COALESCE(claimed_at, ?2),
                         offered_to = NULL, offer_until = NULL
                     WHERE conversation_id = ?3 AND closed_at IS NULL",
                    params![concierge, now, conversation],
                )?;
                tx.execute(
                    "INSERT INTO presence (concierge, status, seen_at, idle_since)
                     VALUES (?1, 'away', 0, ?2)
                     ON CONFLICT (concierge) DO UPDATE SET idle_since = excluded.idle_since",
                    params![concierge, now],
                )?;
            }
            if let Some(note) = &change.note {
                insert_note(tx, &change.conversation, note, now)?;
            }
            insert_audit(tx, &change.audit, now)?;
            Ok(true)
        })
        .await
    }

    async fn concierge_reply(
        &self,
        conversation: &ConversationId,
        concierge: &str,
        replies: Vec<NewReply>,
        audit: NewAudit,
    ) -> Result<Option<ConciergeReplied>, StoreError> {
        let conversation = conversation.clone();
        let concierge = concierge.to_string();
        self.write(move |tx| {
            let now = now_millis();
            let used = |key: &str| -> Result<Option<MessageId>, StoreError> {
                tx.prepare_cached("SELECT message_id FROM outbox WHERE idempotency_key = ?1")?
                    .query_row(params![key], |row| row.get::<_, String>(0))
                    .optional()?
                    .map(|id| MessageId::parse(&id).map_err(corrupt))
                    .transpose()
            };
            if let Some(first) = replies.first()
                && used(&first.idempotency_key)?.is_some()
            {
                let mut ids = Vec::new();
                for reply in &replies {
                    if let Some(id) = used(&reply.idempotency_key)? {
                        ids.push(id);
                    }
                }
                return Ok(Some(ConciergeReplied {
                    ids,
                    replayed: true,
                }));
            }
            let row: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT channel_id, contact_id, thread FROM conversations WHERE id = ?1",
                    params![conversation.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((channel, contact, thread)) = row else {
                return Err(StoreError::NotFound(format!("conversation {conversation}")));
            };
            let thread: ThreadState = parse_json(&thread)?;
            if thread
                != (ThreadState::Human {
                    concierge: concierge.clone(),
                })
            {
                return Ok(None);
            }
            let channel = ChannelId::parse(channel).map_err(corrupt)?;
            let contact = ContactId::parse(contact).map_err(corrupt)?;
            let mut queued = Vec::new();
            for reply in &replies {
                if let Some(id) = queue_reply(tx, &conversation, &channel, &contact, reply, now)? {
                    queued.push(id);
                }
            }
            tx.execute(
                "UPDATE handoffs SET first_response_at = ?1
                 WHERE conversation_id = ?2 AND closed_at IS NULL AND first_response_at IS NULL",
                params![now, conversation.as_str()],
            )?;
            insert_audit(tx, &audit, now)?;
            Ok(Some(ConciergeReplied {
                ids: queued,
                replayed: false,
            }))
        })
        .await
    }

    async fn add_note(
        &self,
        conversation: &ConversationId,
        note: NewNote,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        let conversation = conversation.clone();
        self.write(move |tx| {
            let now = now_millis();
            insert_note(tx, &conversation, &note, now)?;
            insert_audit(tx, &audit, now)
        })
        .await
    }

    async fn sla_breaches(&self, now: Millis) -> Result<Vec<SlaBreach>, StoreError> {
        self.write(move |tx| {
            let due: Vec<(String, String, Option<String>, Option<String>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, conversation_id, team, priority FROM handoffs
                     WHERE closed_at IS NULL AND first_response_at IS NULL
                       AND breached_at IS NULL AND sla_due_at <= ?1",
                )?;
                stmt.query_map(params![now], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_, _>>()?
            };
            let mut breaches = Vec::new();
            for (id, conversation, team, priority) in due {
                let priority = raised(priority.as_deref()).to_string();
                tx.execute(
                    "UPDATE handoffs SET breached_at = ?1, priority = ?2 WHERE id = ?3",
                    params![now, priority, id],
                )?;
                breaches.push(SlaBreach {
                    handoff: id,
                    conversation: ConversationId::parse(conversation).map_err(corrupt)?,
                    team,
                    priority,
                });
            }
            Ok(breaches)
        })
        .await
    }

    async fn offer(
        &self,
        handoff: &str,
        concierge: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let (handoff, concierge) = (handoff.to_string(), concierge.to_string());
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE handoffs SET offered_to = ?1, offer_until = ?2
                 WHERE id = ?3 AND closed_at IS NULL AND claimed_by IS NULL
                   AND (offer_until IS NULL OR offer_until <= ?4)
                   AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = handoffs.conversation_id
                               AND json_extract(c.thread, '$.state') = 'queued')",
                params![concierge, until, handoff, now],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn add_token(&self, hash: &str, concierge: &str) -> Result<(), StoreError> {
        let (hash, concierge) = (hash.to_string(), concierge.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO concierge_tokens (hash, concierge, created_at) VALUES (?1, ?2, ?3)",
                params![hash, concierge, now_millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_owner(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT concierge FROM concierge_tokens WHERE hash = ?1")?
                .query_row(params![hash], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn revoke_tokens(&self, concierge: &str) -> Result<usize, StoreError> {
        let concierge = concierge.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM concierge_tokens WHERE concierge = ?1",
                params![concierge],
            )?)
        })
        .await
    }

    async fn add_service_token(
        &self,
        hash: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<(), StoreError> {
        let (hash, service, scopes) = (hash.to_string(), service.to_string(), scopes.join(" "));
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO service_tokens (hash, service, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, service, scopes, now_millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn service_token(&self, hash: &str) -> Result<Option<ServiceToken>, StoreError> {
        let hash = hash.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT service, scopes FROM service_tokens WHERE hash = ?1")?
                .query_row(params![hash], |row| {
                    let scopes: String = row.get(1)?;
                    Ok(ServiceToken {
                        service: row.get(0)?,
                        scopes: scopes.split_whitespace().map(str::to_string).collect(),
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn revoke_service_tokens(&self, service: &str) -> Result<usize, StoreError> {
        let service = service.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM service_tokens WHERE service = ?1",
                params![service],
            )?)
        })
        .await
    }

    async fn touch_presence(
        &self,
        concierge: &str,
        status: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (concierge, status) = (concierge.to_string(), status.map(str::to_string));
        self.write(move |tx| {
            match status {
                Some(status) => tx.execute(
                    // Coming online starts the idle clock; staying online keeps it.
                    "INSERT INTO presence (concierge, status, seen_at, idle_since)
                     VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT (concierge) DO UPDATE SET
                         idle_since = CASE WHEN presence.status <> excluded.status
                                           THEN excluded.idle_since ELSE presence.idle_since END,
                         status = excluded.status, seen_at = excluded.seen_at",
                    params![concierge, status, now],
                )?,
                None => tx.execute(
                    "INSERT INTO presence (concierge, status, seen_at, idle_since)
                     VALUES (?1, 'online', ?2, ?2)
                     ON CONFLICT (concierge) DO UPDATE SET seen_at = excluded.seen_at",
                    params![concierge, now],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn clear_presence(&self, concierge: &str) -> Result<(), StoreError> {
        let concierge = concierge.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM presence WHERE concierge = ?1",
                params![concierge],
            )?;
            Ok(())
        })
        .await
    }

    async fn presence(&self) -> Result<Vec<Presence>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT concierge, status, seen_at, idle_since FROM presence ORDER BY concierge",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(Presence {
                    concierge: row.get(0)?,
                    status: row.get(1)?,
                    seen_at: row.get(2)?,
                    idle_since: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn audit(&self, entry: NewAudit) -> Result<(), StoreError> {
        self.write(move |tx| insert_audit(tx, &entry, now_millis()))
            .await
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, actor, action, conversation_id, detail FROM audit
                 ORDER BY seq DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |row| {
                Ok(AuditRecord {
                    seq: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    conversation: row.get(4)?,
                    detail: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
