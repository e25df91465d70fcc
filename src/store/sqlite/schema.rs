//! The SQLite schema, as ordered migrations run at start-up.

use rusqlite_migration::{M, Migrations};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    thread TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_message_at INTEGER NOT NULL,
    -- Where the conversation came from (a Telegram start parameter), when known.
    source TEXT
);

CREATE TABLE contacts (
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    display_name TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, contact_id)
) WITHOUT ROWID;

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    platform_id TEXT,
    direction TEXT NOT NULL,
    author TEXT NOT NULL,
    content TEXT NOT NULL,
    reply_to TEXT,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE UNIQUE INDEX messages_by_platform_id ON messages (channel_id, platform_id)
    WHERE platform_id IS NOT NULL;

CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event TEXT NOT NULL,
    message_id TEXT,
    received_at INTEGER NOT NULL,
    done_at INTEGER,
    -- Why an entry was set aside without a turn (a duplicate message, an unreadable row).
    note TEXT,
    UNIQUE (channel_id, event_id)
);
CREATE INDEX inbox_pending ON inbox (seq) WHERE done_at IS NULL;

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    first_attempt_at INTEGER,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    reengage INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX outbox_open ON outbox (conversation_id, id) WHERE state IN ('pending', 'sending');
-- Other ids of a contact (a WhatsApp phone number beside its business-scoped user id).
CREATE TABLE contact_aliases (
    channel_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (channel_id, alias)
) WITHOUT ROWID;

-- Delivery statuses that arrived before the send they describe was recorded.
CREATE TABLE early_statuses (
    channel_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, platform_id, status_rank)
) WITHOUT ROWID;

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('pending', 'sending');
"#,
        ),
        // v2: what the agents leave beside a conversation.
        M::up(
            r#"
-- Internal notes: the agents' audit trail, for concierges; never sent to the customer.
CREATE TABLE notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX notes_by_conversation ON notes (conversation_id, seq);

CREATE TABLE handoffs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    priority TEXT,
    team TEXT,
    requested_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX handoffs_by_conversation ON handoffs (conversation_id, created_at);

-- Tokens spent, one row per turn that called an LLM.
CREATE TABLE llm_usage (
    inbox_seq INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX llm_usage_by_conversation ON llm_usage (conversation_id);

CREATE TABLE summaries (
    conversation_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    upto_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
        ),
        // v3: the handoff queue, concierges' tokens and presence, the audit log.
        M::up(
            r#"
ALTER TABLE handoffs ADD COLUMN brief TEXT;
ALTER TABLE handoffs ADD COLUMN sla_due_at INTEGER;
ALTER TABLE handoffs ADD COLUMN breached_at INTEGER;
ALTER TABLE handoffs ADD COLUMN claimed_by TEXT;
ALTER TABLE handoffs ADD COLUMN claimed_at INTEGER;
ALTER TABLE handoffs ADD COLUMN first_response_at INTEGER;
ALTER TABLE handoffs ADD COLUMN offered_to TEXT;
ALTER TABLE handoffs ADD COLUMN offer_until INTEGER;
ALTER TABLE handoffs ADD COLUMN closed_at INTEGER;
ALTER TABLE handoffs ADD COLUMN outcome TEXT;
ALTER TABLE handoffs ADD COLUMN release_note TEXT;
-- Handoffs of threads no longer held by the queue or a person are over.
UPDATE handoffs SET closed_at = created_at, outcome = 'released'
 WHERE conversation_id NOT IN (
     SELECT id FROM conversations WHERE json_extract(thread, '$.state') IN ('queued', 'human'));
-- One open handoff per conversation: the newest.
UPDATE handoffs SET closed_at = created_at, outcome = 'superseded'
 WHERE closed_at IS NULL AND EXISTS (
     SELECT 1 FROM handoffs newer
      WHERE newer.conversation_id = handoffs.conversation_id AND newer.closed_at IS NULL
        AND (newer.created_at > handoffs.created_at
             OR (newer.created_at = handoffs.created_at AND newer.rowid > handoffs.rowid)));
CREATE INDEX handoffs_open ON handoffs (conversation_id) WHERE closed_at IS NULL;
CREATE INDEX handoffs_sla ON handoffs (sla_due_at)
    WHERE closed_at IS NULL AND first_response_at IS NULL AND breached_at IS NULL;
CREATE INDEX conversations_held ON conversations (json_extract(thread, '$.state'));

-- Only hashes: a token is shown once, when created.
CREATE TABLE concierge_tokens (
    hash TEXT PRIMARY KEY,
    concierge TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE presence (
    concierge TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    idle_since INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    conversation_id TEXT,
    detail TEXT NOT NULL
);
"#,
        ),
        // v4: a platform's status report can name the reply it is about (a send whose answer
        // was lost is then confirmed rather than sent again).
        M::up(
            "CREATE INDEX outbox_open_message ON outbox (message_id) WHERE state IN ('pending', 'sending');",
        ),
        // v5: each accepted webhook's raw request (credentials removed), for export and
        // replay; the inbox entries it produced point at it. No index on received_at: rows
        // are pruned from the oldest id (see `prune_raw`), which keeps the ingest write to
        // one row.
        M::up(
            r#"
CREATE TABLE raw_webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    query TEXT,
    -- JSON: [[name, value], ...] in the order received.
    headers TEXT NOT NULL,
    body BLOB NOT NULL
);
ALTER TABLE inbox ADD COLUMN raw_id INTEGER;
"#,
        ),
        // v6: the web chat's visitor key became a credential: rows kept before hold it, and
        // get its pseudonym instead.
        M::up_with_hook("", scrub_raw_credentials),
        // v7: the deployment's secrets (the key new conversation ids are made with), made
        // once at the first start; `INSERT OR IGNORE` lets processes sharing the file agree.
        M::up(
            r#"
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#,
        ),
    ])
}

/// Rewrites the kept headers of every raw webhook that still holds a credential.
fn scrub_raw_credentials(tx: &rusqlite::Transaction) -> rusqlite_migration::HookResult {
    let mut rows = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT id, headers FROM raw_webhooks")?;
        let mut query = stmt.query([])?;
        while let Some(row) = query.next()? {
            let id: i64 = row.get(0)?;
            let text: String = row.get(1)?;
            // A row whose headers cannot be read is left to the export to report.
            let Ok(headers) = serde_json::from_str::<Vec<(String, String)>>(&text) else {
                continue;
            };
            if crate::channels::holds_credential(&headers) {
                rows.push((id, crate::channels::kept_headers(headers)));
            }
        }
    }
    for (id, headers) in rows {
        let text = serde_json::to_string(&headers)
            .map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))?;
        tx.execute(
            "UPDATE raw_webhooks SET headers = ?1 WHERE id = ?2",
            rusqlite::params![text, id],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }

    /// A visitor key kept before v6 is replaced by its pseudonym; other rows are untouched.
    #[test]
    fn visitor_keys_kept_before_are_scrubbed() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_version(&mut conn, 5).unwrap();
        let with_key = r#"[["content-type","application/json"],["x-webchat-key","visitor-key-LEAK-0123456789"]]"#;
        let without = r#"[["content-type","application/x-www-form-urlencoded"]]"#;
        for headers in [with_key, without] {
            conn.execute(
                "INSERT INTO raw_webhooks (channel_id, kind, received_at, query, headers, body)
                 VALUES ('web', 'webchat', 1, NULL, ?1, x'7b7d')",
                [headers],
            )
            .unwrap();
        }
        super::migrations().to_latest(&mut conn).unwrap();
        let rows: Vec<String> = conn
            .prepare("SELECT headers FROM raw_webhooks ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!rows[0].contains("LEAK"), "{}", rows[0]);
        let headers: Vec<(String, String)> = serde_json::from_str(&rows[0]).unwrap();
        assert_eq!(
            headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                (
                    crate::channels::VISITOR_HEADER.to_string(),
                    crate::channels::kept_headers([(
                        "x-webchat-key".to_string(),
                        "visitor-key-LEAK-0123456789".to_string()
                    )])[0]
                        .1
                        .clone()
                ),
            ]
        );
        assert_eq!(rows[1], without);
    }
}
