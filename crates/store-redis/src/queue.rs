//! The handoff queue on Redis: thread moves, concierge replies, SLA breaches and offers as
//! store-script operations (compare-and-set on the thread, with their handoff, note and audit
//! record in the same call); tokens, presence and the audit log.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::inbox::{replies_json, status_json};
use super::{Fields, RedisStore, corrupt, hashes, parse, status, thread_json};
use concierge_domain::{
    ConversationId, DeliveryStatus, MessageId, Millis, ThreadState, now_millis,
};
use concierge_store::{
    AuditRecord, ConciergeReplied, HandoffChange, NewAudit, NewNote, NewReply, Presence, Queue,
    QueueEntry, ServiceToken, SlaBreach, StoreError, ThreadMove,
};

/// An audit record as the store script writes it.
#[derive(Deserialize)]
struct StoredAudit {
    seq: i64,
    at: Millis,
    actor: String,
    action: String,
    #[serde(default)]
    conversation: Option<String>,
    detail: String,
}

fn audit_json(entry: &NewAudit) -> Json {
    json!({
        "actor": entry.actor,
        "action": entry.action,
        "conversation": entry.conversation.as_ref().map(|c| c.as_str().to_string()),
        "detail": entry.detail,
    })
}

fn note_json(note: &NewNote) -> Json {
    json!({"author": note.author, "body": note.body})
}

#[async_trait]
impl Queue for RedisStore {
    async fn queue(&self) -> Result<Vec<QueueEntry>, StoreError> {
        let mut conn = self.conn();
        let mut held: Vec<String> = conn.smembers(self.key(&["held"])).await?;
        held.sort();
        let rows = hashes(&mut conn, held.iter().map(|id| self.key(&["conv", id]))).await?;
        let mut conversations = Vec::new();
        for (id, fields) in held.iter().zip(rows) {
            let id = ConversationId::parse(id.as_str()).map_err(corrupt)?;
            if let Some(conversation) = self.conversation_from(&id, &fields)?
                && matches!(
                    conversation.thread,
                    ThreadState::Queued { .. } | ThreadState::Human { .. }
                )
            {
                conversations.push((conversation, fields));
            }
        }
        let mut pipe = redis::pipe();
        for (conversation, fields) in &conversations {
            // A conversation that followed a changed number names its person apart.
            let person = fields
                .get("person")
                .map_or(conversation.contact.as_str(), String::as_str);
            pipe.hget(
                self.key(&["contact", conversation.channel.as_str(), person]),
                "name",
            );
            pipe.hgetall(self.key(&["ho", fields.get("ho").map_or("-", String::as_str)]));
            pipe.hgetall(self.key(&["msg", fields.get("last_in_msg").map_or("-", String::as_str)]));
        }
        let answers: Vec<redis::Value> = if conversations.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let mut answers = answers.into_iter();
        let mut entries = Vec::with_capacity(conversations.len());
        for (conversation, fields) in conversations {
            let (Some(name), Some(handoff), Some(last)) =
                (answers.next(), answers.next(), answers.next())
            else {
                return Err(StoreError::Corrupt("a short queue reply".to_string()));
            };
            let name: Option<String> = redis::from_redis_value(name).map_err(corrupt)?;
            let handoff: Fields = redis::from_redis_value(handoff).map_err(corrupt)?;
            let last: Fields = redis::from_redis_value(last).map_err(corrupt)?;
            let handoff = super::handoff_from(&handoff)?.filter(|h| h.is_open());
            let last_inbound = match fields.get("last_in_msg") {
                Some(id) => super::message_from(&last, id)?,
                None => None,
            };
            entries.push(QueueEntry {
                conversation,
                contact_name: name,
                handoff,
                last_inbound,
            });
        }
        Ok(entries)
    }

    async fn contact_name(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        let (channel, contact, person): (Option<String>, Option<String>, Option<String>) =
            redis::pipe()
                .hget(self.key(&["conv", conversation.as_str()]), "ch")
                .hget(self.key(&["conv", conversation.as_str()]), "contact")
                .hget(self.key(&["conv", conversation.as_str()]), "person")
                .query_async(&mut conn)
                .await?;
        let (Some(channel), Some(contact)) = (channel, person.or(contact)) else {
            return Ok(None);
        };
        Ok(conn
            .hget(self.key(&["contact", &channel, &contact]), "name")
            .await?)
    }

    async fn move_thread(&self, change: ThreadMove) -> Result<bool, StoreError> {
        let handoff = match &change.handoff {
            HandoffChange::None => json!({"kind": "none"}),
            HandoffChange::Open(h) => json!({"kind": "open", "handoff": {
                "id": h.id, "reason": h.reason, "priority": h.priority, "team": h.team,
                "requested_by": h.requested_by, "brief": h.brief, "sla_due_at": h.sla_due_at,
            }}),
            HandoffChange::Close { outcome, note } => {
                json!({"kind": "close", "outcome": outcome, "note": note})
            }
            HandoffChange::Requeue { team, sla_due_at } => {
                json!({"kind": "requeue", "team": team, "sla_due_at": sla_due_at})
            }
        };
        let concierge = match &change.to {
            ThreadState::Human { concierge } => Json::String(concierge.clone()),
            _ => Json::Null,
        };
        let reason = "cancelled: a person took the thread over before it was sent";
        let cancelled = status_json(&DeliveryStatus::Failed {
            code: None,
            reason: reason.to_string(),
        })?;
        let answer = self
            .op(
                "move_thread",
                json!({
                    "conv": change.conversation.as_str(),
                    "from": serde_json::to_string(&change.from).map_err(corrupt)?,
                    "to": thread_json(&change.to)?,
                    "concierge": concierge,
                    "handoff": handoff,
                    "note": change.note.as_ref().map(note_json),
                    "audit": audit_json(&change.audit),
                    "cancel": {"reason": reason, "status": cancelled["status"], "rank": cancelled["rank"]},
                    "now": now_millis(),
                }),
            )
            .await?;
        match status(&answer) {
            "1" => Ok(true),
            "0" => Ok(false),
            "missing" => Err(StoreError::NotFound(format!(
                "conversation {}",
                change.conversation
            ))),
            other => Err(StoreError::Corrupt(format!(
                "move_thread answered `{other}`"
            ))),
        }
    }

    async fn concierge_reply(
        &self,
        conversation: &ConversationId,
        concierge: &str,
        replies: Vec<NewReply>,
        audit: NewAudit,
    ) -> Result<Option<ConciergeReplied>, StoreError> {
        let owner = ThreadState::Human {
            concierge: concierge.to_string(),
        };
        let answer = self
            .op(
                "concierge_reply",
                json!({
                    "conv": conversation.as_str(),
                    "owner_thread": serde_json::to_string(&owner).map_err(corrupt)?,
                    "replies": replies_json(&replies)?,
                    "audit": audit_json(&audit),
                    "pending": status_json(&DeliveryStatus::Pending)?,
                    "now": now_millis(),
                }),
            )
            .await?;
        match status(&answer) {
            state @ ("ok" | "replayed") => Ok(Some(ConciergeReplied {
                ids: answer
                    .iter()
                    .skip(1)
                    .map(|id| MessageId::parse(id).map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                replayed: state == "replayed",
            })),
            "no" => Ok(None),
            "missing" => Err(StoreError::NotFound(format!("conversation {conversation}"))),
            other => Err(StoreError::Corrupt(format!(
                "concierge_reply answered `{other}`"
            ))),
        }
    }

    async fn add_note(
        &self,
        conversation: &ConversationId,
        note: NewNote,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        self.op(
            "add_note",
            json!({
                "conv": conversation.as_str(), "note": note_json(&note),
                "audit": audit_json(&audit), "now": now_millis(),
            }),
        )
        .await?;
        Ok(())
    }

    async fn sla_breaches(&self, now: Millis) -> Result<Vec<SlaBreach>, StoreError> {
        let answer = self.op("sla_breaches", json!({"now": now})).await?;
        answer
            .chunks(4)
            .filter(|c| c.len() == 4)
            .map(|c| {
                Ok(SlaBreach {
                    handoff: c[0].clone(),
                    conversation: ConversationId::parse(c[1].as_str()).map_err(corrupt)?,
                    team: Some(c[2].clone()).filter(|t| !t.is_empty()),
                    priority: c[3].clone(),
                })
            })
            .collect()
    }

    async fn offer(
        &self,
        handoff: &str,
        concierge: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let answer = self
            .op(
                "offer",
                json!({"handoff": handoff, "concierge": concierge, "now": now, "until": until}),
            )
            .await?;
        Ok(status(&answer) == "1")
    }

    async fn add_token(&self, hash: &str, concierge: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .atomic()
            .set(self.key(&["token", hash]), concierge)
            .ignore()
            .sadd(self.key(&["tokens", concierge]), hash)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn token_owner(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        Ok(conn.get(self.key(&["token", hash])).await?)
    }

    async fn revoke_tokens(&self, concierge: &str) -> Result<usize, StoreError> {
        let answer = self
            .op("revoke_tokens", json!({"concierge": concierge}))
            .await?;
        Ok(status(&answer).parse().unwrap_or(0))
    }

    async fn add_service_token(
        &self,
        hash: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<(), StoreError> {
        let record = json!({ "service": service, "scopes": scopes }).to_string();
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .atomic()
            .set(self.key(&["service_token", hash]), record)
            .ignore()
            .sadd(self.key(&["service_tokens", service]), hash)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn service_token(&self, hash: &str) -> Result<Option<ServiceToken>, StoreError> {
        let mut conn = self.conn();
        let record: Option<String> = conn.get(self.key(&["service_token", hash])).await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("a service token record: {e}")))?;
        Ok(Some(ServiceToken {
            service: value["service"].as_str().unwrap_or_default().to_string(),
            scopes: value["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    async fn revoke_service_tokens(&self, service: &str) -> Result<usize, StoreError> {
        let answer = self
            .op("revoke_service_tokens", json!({"service": service}))
            .await?;
        Ok(status(&answer).parse().unwrap_or(0))
    }

    async fn touch_presence(
        &self,
        concierge: &str,
        status_value: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.op(
            "touch_presence",
            json!({"concierge": concierge, "status": status_value, "now": now}),
        )
        .await?;
        Ok(())
    }

    async fn clear_presence(&self, concierge: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .atomic()
            .del(self.key(&["presence", concierge]))
            .ignore()
            .srem(self.key(&["people"]), concierge)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn presence(&self) -> Result<Vec<Presence>, StoreError> {
        let mut conn = self.conn();
        let mut people: Vec<String> = conn.smembers(self.key(&["people"])).await?;
        people.sort();
        let rows = hashes(&mut conn, people.iter().map(|p| self.key(&["presence", p]))).await?;
        let mut out = Vec::with_capacity(people.len());
        for (concierge, fields) in people.into_iter().zip(rows) {
            if fields.is_empty() {
                continue;
            }
            let get = |name: &str| -> Result<i64, StoreError> {
                fields
                    .get(name)
                    .map_or(Ok(0), |v| v.parse().map_err(corrupt))
            };
            out.push(Presence {
                status: fields
                    .get("status")
                    .cloned()
                    .unwrap_or_else(|| "away".to_string()),
                seen_at: get("seen")?,
                idle_since: get("idle")?,
                concierge,
            });
        }
        Ok(out)
    }

    async fn audit(&self, entry: NewAudit) -> Result<(), StoreError> {
        self.op(
            "audit",
            json!({"audit": audit_json(&entry), "now": now_millis()}),
        )
        .await?;
        Ok(())
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let raw: Vec<String> = conn
            .lrange(self.key(&["audit"]), 0, limit as isize - 1)
            .await?;
        raw.iter()
            .map(|text| {
                let record: StoredAudit = parse(text)?;
                Ok(AuditRecord {
                    seq: record.seq,
                    at: record.at,
                    actor: record.actor,
                    action: record.action,
                    conversation: record.conversation,
                    detail: record.detail,
                })
            })
            .collect()
    }
}
