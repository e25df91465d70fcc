//! Notification batches on Redis: a hash a batch, a list of its recipients, Lua steps for
//! every change (create, advance, stop, lease).

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::json;

use super::{Fields, RedisStore, corrupt, status};
use concierge_domain::{ChannelId, Millis};
use concierge_store::{Batch, BatchState, BatchStep, Batches, NewBatch, StoreError};

/// A batch from `id` then field, value pairs.
fn from_flat(items: &[String]) -> Result<Option<Batch>, StoreError> {
    let Some((id, rest)) = items.split_first() else {
        return Ok(None);
    };
    let fields: Fields = rest
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    from_fields(id, &fields).map(Some)
}

fn from_fields(id: &str, f: &Fields) -> Result<Batch, StoreError> {
    let text = |name: &str| {
        f.get(name)
            .cloned()
            .ok_or_else(|| corrupt(format!("batch {id} without its {name}")))
    };
    let number = |name: &str| -> Result<u32, StoreError> { text(name)?.parse().map_err(corrupt) };
    let at = |name: &str| -> Result<Millis, StoreError> { text(name)?.parse().map_err(corrupt) };
    let state = text("state")?;
    Ok(Batch {
        id: id.to_string(),
        service: text("service")?,
        channel: ChannelId::parse(text("ch")?).map_err(corrupt)?,
        template: f.get("template").cloned(),
        request: text("request")?,
        state: BatchState::parse(&state)
            .ok_or_else(|| corrupt(format!("a batch state `{state}`")))?,
        total: number("total")?,
        next: number("next")?,
        queued: number("queued")?,
        skipped: number("skipped")?,
        reasons: serde_json::from_str(&text("reasons")?).unwrap_or_default(),
        created_at: at("created")?,
        updated_at: at("updated")?,
    })
}

#[async_trait]
impl Batches for RedisStore {
    async fn create_batch(&self, b: &NewBatch) -> Result<(Batch, bool), StoreError> {
        let answer = self
            .op(
                "batch_create",
                json!({
                    "id": b.id, "key": b.key, "service": b.service, "channel": b.channel.as_str(),
                    "template": b.template, "request": b.request, "recipients": b.recipients,
                    "at": b.at,
                }),
            )
            .await?;
        let replayed = status(&answer) == "replayed";
        let batch = from_flat(answer.get(1..).unwrap_or_default())?
            .ok_or_else(|| corrupt("a batch just written is missing"))?;
        Ok((batch, replayed))
    }

    async fn batch(&self, id: &str) -> Result<Option<Batch>, StoreError> {
        let mut conn = self.conn();
        let fields: Fields = conn.hgetall(self.key(&["batch", id])).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        from_fields(id, &fields).map(Some)
    }

    async fn running_batches(&self) -> Result<Vec<Batch>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn.zrange(self.key(&["batches_running"]), 0, -1).await?;
        let mut batches = Vec::new();
        for id in ids {
            if let Some(batch) = self.batch(&id).await?
                && batch.state == BatchState::Running
            {
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    async fn batch_recipients(
        &self,
        id: &str,
        from: u32,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let start = from as isize;
        let found: Vec<String> = conn
            .lrange(
                self.key(&["batch_rcpt", id]),
                start,
                start + limit as isize - 1,
            )
            .await?;
        Ok(found)
    }

    async fn advance_batch(
        &self,
        id: &str,
        step: &BatchStep,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let answer = self
            .op(
                "batch_advance",
                json!({
                    "id": id, "from": step.from, "to": step.to, "queued": step.queued,
                    "skipped": step.skipped, "now": now,
                }),
            )
            .await?;
        Ok(status(&answer) == "1")
    }

    async fn stop_batch(&self, id: &str, now: Millis) -> Result<Option<Batch>, StoreError> {
        let answer = self
            .op("batch_stop", json!({ "id": id, "now": now }))
            .await?;
        from_flat(&answer)
    }

    async fn lease_batch(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let answer = self
            .op(
                "batch_lease",
                json!({ "id": id, "owner": owner, "now": now, "until": until }),
            )
            .await?;
        Ok(status(&answer) == "1")
    }
}
