//! Raw webhooks on Redis: one entry per accepted webhook in the stream `PREFIX:raw`, added
//! by the ingest script in the same call as the webhook's events (no extra round trip). The
//! stream is ordered by arrival and trimmed by time (`MINID`) to `dedupe_ttl_secs` at every
//! add; the key itself expires after that long without webhooks. Each entry names the
//! conversations its events went to (`convs`), so an export can pick one conversation.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value as Json, json};

use super::{RedisStore, corrupt};
use concierge_domain::ChannelId;
use concierge_store::{KeptWebhook, RawFilter, RawWebhook, StoreError};

/// Entries read per XRANGE while filtering.
const PAGE: usize = 500;
/// How far the gateway's clock (`at`) may run ahead of Redis's (the stream ids): a `since`
/// read starts this much earlier and filters on `at`.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The raw request as the ingest script takes it: the body as text when it is UTF-8 (JSON
/// and form bodies, nearly always), in base64 otherwise (the script's arguments are JSON).
pub(super) fn script_json(raw: &RawWebhook) -> Result<Json, StoreError> {
    let headers = serde_json::to_string(&raw.headers).map_err(corrupt)?;
    let mut value = json!({
        "ch": raw.channel.as_str(),
        "kind": raw.kind,
        "at": raw.received_at,
        "query": raw.query,
        "headers": headers,
    });
    let body = match std::str::from_utf8(&raw.body) {
        Ok(text) => ("body", Json::from(text)),
        Err(_) => (
            "body64",
            Json::from(base64::engine::general_purpose::STANDARD.encode(&raw.body)),
        ),
    };
    if let Some(map) = value.as_object_mut() {
        map.insert(body.0.to_string(), body.1);
    }
    Ok(value)
}

/// The kept webhooks matching `filter`, oldest first, read page by page from the stream.
pub(super) async fn read(
    store: &RedisStore,
    filter: &RawFilter,
) -> Result<Vec<KeptWebhook>, StoreError> {
    let key = store.key(&["raw"]);
    let mut conn = store.conn();
    let mut start = match (&filter.after, filter.since) {
        (Some(cursor), _) => format!("({cursor}"),
        (None, Some(since)) => format!("{}", since.saturating_sub(CLOCK_SKEW_MS).max(0)),
        (None, None) => "-".to_string(),
    };
    let mut kept = Vec::new();
    while kept.len() < filter.limit {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        start = format!("({last}");
        let full = page.len() == PAGE;
        for (id, fields) in page {
            let raw = entry(&id, &fields)?;
            let wanted = filter.channel.as_ref().is_none_or(|c| *c == raw.channel)
                && filter.since.is_none_or(|since| raw.received_at >= since)
                && filter.conversation.as_ref().is_none_or(|c| {
                    fields
                        .get("convs")
                        .is_some_and(|convs| convs.split(' ').any(|x| x == c.as_str()))
                });
            if wanted && kept.len() < filter.limit {
                kept.push(KeptWebhook { cursor: id, raw });
            }
        }
        if !full {
            break;
        }
    }
    Ok(kept)
}

fn entry(id: &str, fields: &HashMap<String, String>) -> Result<RawWebhook, StoreError> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("raw webhook {id} lacks `{name}`")))
    };
    let body = match (fields.get("body"), fields.get("body64")) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(corrupt)?,
        (None, None) => {
            return Err(StoreError::Corrupt(format!(
                "raw webhook {id} lacks a body"
            )));
        }
    };
    Ok(RawWebhook {
        channel: ChannelId::parse(field("ch")?.as_str()).map_err(corrupt)?,
        kind: field("kind")?.clone(),
        received_at: field("at")?.parse().map_err(corrupt)?,
        query: fields.get("query").cloned(),
        // Entries added before a header was known to be a credential expire with the
        // stream; until then an export still leaves it out.
        headers: concierge_store::credentials::kept_headers(
            serde_json::from_str::<Vec<(String, String)>>(field("headers")?).map_err(corrupt)?,
        ),
        body: body.into(),
    })
}
