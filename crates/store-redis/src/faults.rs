//! Channel faults on Redis: the ingest script pushes each new one (deduplicated by its event
//! id) onto `PREFIX:faults:{channel}`, trimmed to the newest `FAULTS_PER_CHANNEL` and
//! expiring 30 days after the last; `PREFIX:faulted` names the channels that have a list.

use serde_json::{Value as Json, json};

use super::{RedisStore, corrupt};
use concierge_domain::{ChannelFault, ChannelId, now_millis};
use concierge_store::{FAULT_RETENTION_MS, FAULTS_PER_CHANNEL, KeptFault, StoreError};

/// A fault as the list keeps it: JSON text.
pub(super) fn to_json(kept: &KeptFault) -> Result<String, StoreError> {
    serde_json::to_string(&json!({
        "ch": kept.channel.as_str(),
        "fault": kept.fault,
        "at": kept.at,
    }))
    .map_err(corrupt)
}

fn from_json(text: &str) -> Result<KeptFault, StoreError> {
    let value: Json = serde_json::from_str(text).map_err(corrupt)?;
    let channel = value["ch"]
        .as_str()
        .ok_or_else(|| StoreError::Corrupt("a channel fault without its channel".into()))?;
    Ok(KeptFault {
        channel: ChannelId::parse(channel).map_err(corrupt)?,
        fault: serde_json::from_value::<ChannelFault>(value["fault"].clone()).map_err(corrupt)?,
        at: value["at"].as_i64().unwrap_or_default(),
    })
}

/// The newest faults of every channel, newest first, at most `limit`; those past 30 days
/// are left out (the list expires only 30 days after its last push).
pub(super) async fn read(store: &RedisStore, limit: usize) -> Result<Vec<KeptFault>, StoreError> {
    let mut conn = store.conn();
    let mut channels: Vec<String> = redis::cmd("SMEMBERS")
        .arg(store.key(&["faulted"]))
        .query_async(&mut conn)
        .await?;
    channels.sort();
    let mut pipe = redis::pipe();
    for channel in &channels {
        pipe.cmd("LRANGE")
            .arg(store.key(&["faults", channel]))
            .arg(0)
            .arg(FAULTS_PER_CHANNEL as i64 - 1);
    }
    let lists: Vec<Vec<String>> = if channels.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn).await?
    };
    let cutoff = now_millis() - FAULT_RETENTION_MS;
    let mut faults = Vec::new();
    for text in lists.iter().flatten() {
        match from_json(text) {
            Ok(kept) if kept.at >= cutoff => faults.push(kept),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping a channel fault that cannot be read"),
        }
    }
    faults.sort_by_key(|k| std::cmp::Reverse(k.at));
    faults.truncate(limit);
    Ok(faults)
}
