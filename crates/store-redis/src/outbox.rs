//! The outbox on Redis: each conversation's open entries in order, the due time of each
//! conversation's head in one sorted set, and leases taken and released by the store script,
//! so any instance's delivery worker may send any conversation's next reply, one at a time.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::json;

use super::inbox::status_json;
use super::{RedisStore, corrupt, hashes, message_from, status};
use concierge_domain::{ChannelId, DeliveryStatus, MessageId, Millis, PlatformMessageId};
use concierge_store::{Outbox, OutboxEntry, StoreError};

#[async_trait]
impl Outbox for RedisStore {
    async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let answer = self
            .op(
                "claim_due",
                json!({"now": now, "limit": limit, "lease": lease_ms, "owner": self.instance()}),
            )
            .await?;
        let claims: Vec<&[String]> = answer.chunks(7).filter(|c| c.len() == 7).collect();
        let mut conn = self.conn();
        let messages = hashes(
            &mut conn,
            claims.iter().map(|c| self.key(&["msg", c[2].as_str()])),
        )
        .await?;
        let mut entries = Vec::with_capacity(claims.len());
        for (claim, fields) in claims.into_iter().zip(messages) {
            let Some(message) = message_from(&fields, &claim[2])? else {
                return Err(StoreError::Corrupt(format!(
                    "outbox entry {} has no message {}",
                    claim[0], claim[2]
                )));
            };
            entries.push(OutboxEntry {
                id: claim[0].parse().map_err(corrupt)?,
                idempotency_key: claim[1].clone(),
                message,
                attempts: claim[3].parse().map_err(corrupt)?,
                first_attempt_at: claim[4].parse().map_err(corrupt)?,
                maybe_sent: claim[5] == "1",
                reengage: claim[6] == "1",
            });
        }
        // Replies leave in the order they were decided.
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn mark_sent(
        &self,
        id: i64,
        platform_id: Option<PlatformMessageId>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let answer = self
            .op(
                "mark_sent",
                json!({
                    "id": id, "now": now,
                    "pid": platform_id.as_ref().map(|p| p.as_str().to_string()),
                    "sent": status_json(&DeliveryStatus::Sent)?,
                }),
            )
            .await?;
        match status(&answer) {
            "missing" => Err(StoreError::NotFound(format!("outbox entry {id}"))),
            _ => Ok(()),
        }
    }

    async fn confirm_sent(
        &self,
        channel: &ChannelId,
        message: MessageId,
        platform_id: PlatformMessageId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let answer = self
            .op(
                "confirm_sent",
                json!({
                    "msg": message.to_string(), "ch": channel.as_str(),
                    "pid": platform_id.as_str(), "now": now,
                    "sent": status_json(&DeliveryStatus::Sent)?,
                }),
            )
            .await?;
        Ok(status(&answer) == "1")
    }

    async fn retry_at(
        &self,
        id: i64,
        at: Millis,
        error: &str,
        maybe_sent: bool,
    ) -> Result<(), StoreError> {
        self.op(
            "retry_at",
            json!({"id": id, "at": at, "error": error, "maybe_sent": maybe_sent}),
        )
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: i64,
        code: Option<String>,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let failed = DeliveryStatus::Failed {
            code,
            reason: reason.to_string(),
        };
        self.op(
            "mark_failed",
            json!({"id": id, "now": now, "reason": reason, "failed": status_json(&failed)?}),
        )
        .await?;
        Ok(())
    }

    async fn next_due_at(&self) -> Result<Option<Millis>, StoreError> {
        let mut conn = self.conn();
        let head: Vec<(String, f64)> = conn.zrange_withscores(self.key(&["due"]), 0, 0).await?;
        Ok(head.first().map(|(_, score)| *score as Millis))
    }

    async fn is_reengagement(&self, message: MessageId) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let flag: Option<String> = conn
            .hget(self.key(&["msg", &message.to_string()]), "reengage")
            .await?;
        Ok(flag.as_deref() == Some("1"))
    }

    async fn release_leases(&self, keep: &[i64]) -> Result<usize, StoreError> {
        let answer = self
            .op(
                "release_leases",
                json!({"owner": self.instance(), "now": concierge_domain::now_millis(), "keep": keep}),
            )
            .await?;
        Ok(status(&answer).parse().unwrap_or(0))
    }
}
