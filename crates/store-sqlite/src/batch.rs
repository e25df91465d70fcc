//! Notification batches on SQLite: a row a batch, a row a recipient.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::corrupt;
use concierge_domain::{ChannelId, Millis};
use concierge_store::{Batch, BatchState, BatchStep, Batches, NewBatch, StoreError};

const COLUMNS: &str = "id, service, channel_id, template, request, state, total, next_index, \
                       queued, skipped, reasons, created_at, updated_at";

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    u32,
    u32,
    u32,
    u32,
    String,
    i64,
    i64,
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
    ))
}

fn batch(r: Row) -> Result<Batch, StoreError> {
    let (
        id,
        service,
        channel,
        template,
        request,
        state,
        total,
        next,
        queued,
        skipped,
        reasons,
        created_at,
        updated_at,
    ) = r;
    Ok(Batch {
        id,
        service,
        channel: ChannelId::parse(channel).map_err(corrupt)?,
        template,
        request,
        state: BatchState::parse(&state)
            .ok_or_else(|| corrupt(format!("a batch state `{state}`")))?,
        total,
        next,
        queued,
        skipped,
        reasons: serde_json::from_str(&reasons).map_err(corrupt)?,
        created_at,
        updated_at,
    })
}

fn read(
    conn: &rusqlite::Connection,
    filter: &str,
    value: &str,
) -> Result<Option<Batch>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notification_batches WHERE {filter} = ?1"
    ))?
    .query_row(params![value], row)
    .optional()?
    .map(batch)
    .transpose()
}

#[async_trait]
impl Batches for SqliteStore {
    async fn create_batch(&self, b: &NewBatch) -> Result<(Batch, bool), StoreError> {
        let b = b.clone();
        self.write(move |tx| {
            if let Some(existing) = read(tx, "key", &b.key)? {
                return Ok((existing, true));
            }
            let total = u32::try_from(b.recipients.len()).map_err(corrupt)?;
            tx.execute(
                "INSERT INTO notification_batches (id, key, service, channel_id, template, request,
                     state, total, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?8)",
                params![b.id, b.key, b.service, b.channel.as_str(), b.template, b.request, total, b.at],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO notification_batch_recipients (batch_id, idx, recipient) VALUES (?1, ?2, ?3)",
            )?;
            for (i, recipient) in b.recipients.iter().enumerate() {
                insert.execute(params![b.id, i as i64, recipient])?;
            }
            let created = read(tx, "id", &b.id)?
                .ok_or_else(|| corrupt("a batch just written is missing"))?;
            Ok((created, false))
        })
        .await
    }

    async fn batch(&self, id: &str) -> Result<Option<Batch>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| read(conn, "id", &id)).await
    }

    async fn running_batches(&self) -> Result<Vec<Batch>, StoreError> {
        self.read(move |conn| {
            let rows: Vec<Row> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM notification_batches WHERE state = 'running' ORDER BY created_at"
                ))?
                .query_map([], row)?
                .collect::<Result<_, _>>()?;
            rows.into_iter().map(batch).collect()
        })
        .await
    }

    async fn batch_recipients(
        &self,
        id: &str,
        from: u32,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let found: Vec<String> = conn
                .prepare_cached(
                    "SELECT recipient FROM notification_batch_recipients
                     WHERE batch_id = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3",
                )?
                .query_map(params![id, from, limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(found)
        })
        .await
    }

    async fn advance_batch(
        &self,
        id: &str,
        step: &BatchStep,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (id, step) = (id.to_string(), step.clone());
        self.write(move |tx| {
            let Some(current) = read(tx, "id", &id)? else {
                return Ok(false);
            };
            if current.state != BatchState::Running || current.next != step.from {
                return Ok(false);
            }
            let mut reasons: BTreeMap<String, u32> = current.reasons;
            for reason in &step.skipped {
                *reasons.entry(reason.clone()).or_default() += 1;
            }
            let state = if step.to >= current.total {
                "done"
            } else {
                "running"
            };
            tx.execute(
                "UPDATE notification_batches SET next_index = ?2, queued = queued + ?3,
                     skipped = skipped + ?4, reasons = ?5, state = ?6, updated_at = ?7
                 WHERE id = ?1",
                params![
                    id,
                    step.to,
                    step.queued,
                    step.skipped.len() as i64,
                    serde_json::to_string(&reasons).map_err(corrupt)?,
                    state,
                    now
                ],
            )?;
            if state == "done" {
                tx.execute(
                    "DELETE FROM notification_batch_recipients WHERE batch_id = ?1",
                    params![id],
                )?;
            }
            Ok(true)
        })
        .await
    }

    async fn stop_batch(&self, id: &str, now: Millis) -> Result<Option<Batch>, StoreError> {
        let id = id.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE notification_batches SET state = 'stopped', updated_at = ?2
                 WHERE id = ?1 AND state = 'running'",
                params![id, now],
            )?;
            read(tx, "id", &id)
        })
        .await
    }

    async fn lease_batch(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE notification_batches SET lease_owner = ?2, lease_until = ?4
                 WHERE id = ?1 AND state = 'running'
                   AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3)",
                params![id, owner, now, until],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}
