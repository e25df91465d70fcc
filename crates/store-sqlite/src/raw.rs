//! Raw webhooks on SQLite: one row per accepted webhook in `raw_webhooks`, written in the
//! ingest transaction and pointed at by its inbox rows (`inbox.raw_id`); read back for
//! `concierge inbox export`; pruned after `[store] raw_retention_days`, with the done inbox
//! entries (the dedupe keys) of the same age.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, params};

use concierge_domain::{ChannelId, Millis};
use concierge_store::{KeptWebhook, RawFilter, RawWebhook, StoreError};

/// The default of `[store] raw_retention_days`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a prune runs at most (it is started by an ingest that finds it due).
const PRUNE_EVERY_MS: i64 = 60_000;
/// The most rows one prune deletes, so it never makes a group commit slow; a full prune
/// runs again at the next ingest.
pub const PRUNE_BATCH: usize = 500;

/// How long raw webhooks are kept, and when the next prune is due.
#[derive(Debug)]
pub struct Retention {
    keep_ms: AtomicI64,
    next_prune_at: AtomicI64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_ms: AtomicI64::new(millis(DEFAULT_RETENTION)),
            next_prune_at: AtomicI64::new(0),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Retention {
    pub fn set_keep(&self, keep: Duration) {
        self.keep_ms.store(millis(keep), Ordering::Relaxed);
    }

    /// The cutoff to prune at when a prune is due at `now` (and this caller takes it).
    pub fn due(&self, now: Millis) -> Option<Millis> {
        let next = self.next_prune_at.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        self.next_prune_at
            .compare_exchange(
                next,
                now + PRUNE_EVERY_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()?;
        Some(now.saturating_sub(self.keep_ms.load(Ordering::Relaxed)))
    }

    /// More is left to prune: the next ingest prunes again.
    pub fn again(&self) {
        self.next_prune_at.store(0, Ordering::Relaxed);
    }
}

/// Writes a webhook's raw row; returns its id for the inbox rows.
pub fn insert(tx: &Connection, raw: &RawWebhook) -> Result<i64, StoreError> {
    let headers = serde_json::to_string(&raw.headers)
        .map_err(|e| StoreError::Corrupt(format!("raw headers: {e}")))?;
    tx.prepare_cached(
        "INSERT INTO raw_webhooks (channel_id, kind, received_at, query, headers, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        raw.channel.as_str(),
        raw.kind,
        raw.received_at,
        raw.query,
        headers,
        raw.body.as_ref()
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Deletes up to `PRUNE_BATCH` of the oldest rows received before `cutoff`. Rows are in
/// id order, which is the order they were received in: the oldest are a prefix, found by
/// reading at most a batch of ids (no index on time to keep up on every ingest).
pub fn prune(tx: &Connection, cutoff: Millis) -> Result<usize, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT id, received_at FROM raw_webhooks ORDER BY id LIMIT ?1")?;
    let rows = stmt.query_map(params![PRUNE_BATCH as i64], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut last = None;
    for row in rows {
        let (id, received_at) = row?;
        if received_at >= cutoff {
            break;
        }
        last = Some(id);
    }
    let raws = match last {
        Some(last) => tx
            .prepare_cached("DELETE FROM raw_webhooks WHERE id <= ?1")?
            .execute(params![last])?,
        None => 0,
    };
    Ok(raws.max(prune_dedupe(tx, cutoff)?))
}

/// Deletes up to `PRUNE_BATCH` of the oldest inbox entries, done and received before
/// `cutoff`: their `(channel, event id)` was the dedupe key, which expires with the raw
/// webhooks (a platform's retry comes within minutes or hours; a message older than
/// `[server] max_event_age_secs` is refused before the store). The oldest are a prefix of
/// the sequence, up to the first entry not done or not old enough.
fn prune_dedupe(tx: &Connection, cutoff: Millis) -> Result<usize, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT seq, received_at, done_at FROM inbox ORDER BY seq LIMIT ?1")?;
    let rows = stmt.query_map(params![PRUNE_BATCH as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut last = None;
    for row in rows {
        let (seq, received_at, done_at) = row?;
        if received_at >= cutoff || done_at.is_none() {
            break;
        }
        last = Some(seq);
    }
    let Some(last) = last else {
        return Ok(0);
    };
    Ok(tx
        .prepare_cached("DELETE FROM inbox WHERE seq <= ?1")?
        .execute(params![last])?)
}

/// The kept webhooks matching `filter`, oldest first.
pub fn read(conn: &Connection, filter: &RawFilter) -> Result<Vec<KeptWebhook>, StoreError> {
    let after: i64 = match filter.after.as_deref() {
        Some(cursor) => cursor
            .parse()
            .map_err(|_| StoreError::NotFound(format!("no raw webhook cursor `{cursor}`")))?,
        None => 0,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel_id, kind, received_at, query, headers, body FROM raw_webhooks
         WHERE id > ?1
           AND (?2 IS NULL OR channel_id = ?2)
           AND (?3 IS NULL OR received_at >= ?3)
           AND (?4 IS NULL OR id IN (SELECT raw_id FROM inbox WHERE conversation_id = ?4))
         ORDER BY id LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            after,
            filter.channel.as_ref().map(ChannelId::as_str),
            filter.since,
            filter.conversation.as_ref().map(|c| c.as_str()),
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, Vec<u8>>(6)?,
            ))
        },
    )?;
    let mut kept = Vec::new();
    for row in rows {
        let (id, channel, kind, received_at, query, headers, body) = row?;
        kept.push(KeptWebhook {
            cursor: id.to_string(),
            raw: RawWebhook {
                channel: ChannelId::parse(channel)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                kind,
                received_at,
                query,
                headers: concierge_store::credentials::kept_headers(
                    serde_json::from_str::<Vec<(String, String)>>(&headers).map_err(|e| {
                        StoreError::Corrupt(format!("raw webhook {id} headers: {e}"))
                    })?,
                ),
                body: body.into(),
            },
        });
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(received_at: Millis) -> RawWebhook {
        RawWebhook {
            channel: ChannelId::parse("web").unwrap(),
            kind: "webchat".to_string(),
            received_at,
            query: None,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_prune_deletes_the_rows_past_retention_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        for at in [10, 20, 30, 40] {
            insert(&conn, &raw(at)).unwrap();
        }
        assert_eq!(prune(&conn, 30).unwrap(), 2);
        assert_eq!(prune(&conn, 30).unwrap(), 0);
        let left = read(
            &conn,
            &RawFilter {
                limit: 10,
                ..RawFilter::default()
            },
        )
        .unwrap();
        let times: Vec<Millis> = left.iter().map(|k| k.raw.received_at).collect();
        assert_eq!(times, vec![30, 40]);
    }

    /// Done entries past retention lose their dedupe key; one not done yet keeps it, and
    /// every entry after it.
    #[test]
    fn a_prune_expires_the_dedupe_keys_of_done_entries_past_retention() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrations()
            .to_latest(&mut conn)
            .unwrap();
        for (event, at, done) in [
            ("e1", 10, Some(11)),
            ("e2", 20, Some(21)),
            ("e3", 25, None),
            ("e4", 26, Some(27)),
            ("e5", 40, Some(41)),
        ] {
            conn.execute(
                "INSERT INTO inbox (channel_id, event_id, conversation_id, event, received_at, done_at)
                 VALUES ('web', ?1, 'c', '{}', ?2, ?3)",
                params![event, at, done],
            )
            .unwrap();
        }
        assert_eq!(prune(&conn, 30).unwrap(), 2);
        let left: Vec<String> = conn
            .prepare("SELECT event_id FROM inbox ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["e3", "e4", "e5"]);
    }

    #[test]
    fn a_prune_is_due_once_a_minute_unless_more_is_left() {
        let retention = Retention::default();
        retention.set_keep(Duration::from_millis(1_000));
        assert_eq!(retention.due(5_000), Some(4_000));
        assert_eq!(retention.due(5_001), None);
        assert_eq!(
            retention.due(5_000 + PRUNE_EVERY_MS),
            Some(4_000 + PRUNE_EVERY_MS)
        );
        retention.again();
        assert!(retention.due(5_000 + PRUNE_EVERY_MS + 1).is_some());
    }
}
