//! The webhook outbox on SQLite: a row a delivery, claimed by a lease.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::rows::corrupt;
use concierge_domain::Millis;
use concierge_store::{DeliveryState, NewDelivery, StoreError, WebhookDelivery, WebhookOutbox};

/// Delivered and failed deliveries are kept this long.
const KEPT_MS: Millis = 7 * 24 * 3600 * 1000;

const COLUMNS: &str = "id, webhook, event_id, event_type, payload, state, attempts, created_at, \
                       next_at, last_error, last_status, done_at";

fn delivery(row: &rusqlite::Row<'_>) -> rusqlite::Result<(WebhookDelivery, String)> {
    Ok((
        WebhookDelivery {
            id: row.get(0)?,
            webhook: row.get(1)?,
            event_id: row.get(2)?,
            event_type: row.get(3)?,
            payload: row.get(4)?,
            state: DeliveryState::Pending,
            attempts: row.get(6)?,
            created_at: row.get(7)?,
            next_at: row.get(8)?,
            last_error: row.get(9)?,
            last_status: row.get(10)?,
            done_at: row.get(11)?,
        },
        row.get::<_, String>(5)?,
    ))
}

fn with_state((mut d, state): (WebhookDelivery, String)) -> Result<WebhookDelivery, StoreError> {
    d.state = DeliveryState::parse(&state)
        .ok_or_else(|| corrupt(format!("a webhook delivery state `{state}`")))?;
    Ok(d)
}

#[async_trait]
impl WebhookOutbox for SqliteStore {
    async fn enqueue_webhooks(&self, deliveries: &[NewDelivery]) -> Result<usize, StoreError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let deliveries = deliveries.to_vec();
        self.write(move |tx| {
            let mut added = 0;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_deliveries
                     (webhook, event_id, event_type, payload, state, created_at, next_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            )?;
            for d in &deliveries {
                added += insert.execute(params![
                    d.webhook,
                    d.event_id,
                    d.event_type,
                    d.payload,
                    d.at
                ])?;
            }
            Ok(added)
        })
        .await
    }

    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |tx| {
            let claimed: Vec<WebhookDelivery> = tx
                .prepare_cached(&format!(
                    "UPDATE webhook_deliveries SET leased_until = ?1, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM webhook_deliveries
                                  WHERE state = 'pending' AND next_at <= ?2
                                    AND (leased_until IS NULL OR leased_until <= ?2)
                                  ORDER BY next_at, id LIMIT ?3)
                     RETURNING {COLUMNS}"
                ))?
                .query_map(params![now + lease_ms, now, limit], delivery)?
                .map(|row| row.map_err(StoreError::from).and_then(with_state))
                .collect::<Result<_, _>>()?;
            Ok(claimed)
        })
        .await
    }

    async fn webhook_delivered(&self, id: i64, status: u16, now: Millis) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'delivered', done_at = ?2, last_status = ?3,
                     leased_until = NULL, last_error = NULL
                 WHERE id = ?1 AND state = 'pending'",
                params![id, now, status],
            )?;
            // Done ones are kept a week, then forgotten: pruned now and then as new ones
            // finish, through the index by state and time (never a scan of the table).
            if id % 64 == 0 {
                for state in ["delivered", "failed"] {
                    tx.prepare_cached(
                        "DELETE FROM webhook_deliveries WHERE state = ?1 AND done_at < ?2",
                    )?
                    .execute(params![state, now - KEPT_MS])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn webhook_attempt_failed(
        &self,
        id: i64,
        at: Option<Millis>,
        error: &str,
        status: Option<u16>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write(move |tx| {
            match at {
                Some(at) => tx.execute(
                    "UPDATE webhook_deliveries SET next_at = ?2, leased_until = NULL,
                         last_error = ?3, last_status = ?4
                     WHERE id = ?1 AND state = 'pending'",
                    params![id, at, error, status],
                )?,
                None => tx.execute(
                    "UPDATE webhook_deliveries SET state = 'failed', done_at = ?2,
                         leased_until = NULL, last_error = ?3, last_status = ?4
                     WHERE id = ?1 AND state = 'pending'",
                    params![id, now, error, status],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn webhook_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let order = match state {
                DeliveryState::Pending => "next_at DESC, id DESC",
                _ => "done_at DESC, id DESC",
            };
            let found: Vec<WebhookDelivery> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM webhook_deliveries WHERE state = ?1
                     ORDER BY {order} LIMIT ?2"
                ))?
                .query_map(params![state.name(), limit], delivery)?
                .map(|row| row.map_err(StoreError::from).and_then(with_state))
                .collect::<Result<_, _>>()?;
            Ok(found)
        })
        .await
    }

    async fn retry_webhook(&self, id: i64, now: Millis) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ?2,
                     created_at = ?2, done_at = NULL, leased_until = NULL
                 WHERE id = ?1 AND state = 'failed'",
                params![id, now],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}
