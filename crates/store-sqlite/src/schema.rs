//! The SQLite schema, as ordered migrations run at start-up: the SQL of each version is a
//! file in `migrations/`, the one data fix (v6) a Rust hook.

use rusqlite_migration::{M, Migrations};

pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!(
            "migrations/001_conversations_inbox_outbox.sql"
        )),
        // v2: what the agents leave beside a conversation.
        M::up(include_str!(
            "migrations/002_notes_handoffs_usage_summaries.sql"
        )),
        // v3: the handoff queue, concierges' tokens and presence, the audit log.
        M::up(include_str!(
            "migrations/003_queue_tokens_presence_audit.sql"
        )),
        // v4: a platform's status report can name the reply it is about (a send whose answer
        // was lost is then confirmed rather than sent again).
        M::up(include_str!("migrations/004_outbox_open_message.sql")),
        // v5: each accepted webhook's raw request (credentials removed), for export and
        // replay; the inbox entries it produced point at it. No index on received_at: rows
        // are pruned from the oldest id (see `prune_raw`), which keeps the ingest write to
        // one row.
        M::up(include_str!("migrations/005_raw_webhooks.sql")),
        // v6: the web chat's visitor key became a credential: rows kept before hold it, and
        // get its pseudonym instead.
        M::up_with_hook("", scrub_raw_credentials),
        // v7: the deployment's secrets (the key new conversation ids are made with), made
        // once at the first start; `INSERT OR IGNORE` lets processes sharing the file agree.
        M::up(include_str!("migrations/007_secrets.sql")),
        // v8: the faults platforms report about a channel itself, for its health.
        M::up(include_str!("migrations/008_channel_faults.sql")),
        // v9: systems' API tokens, with their scopes.
        M::up(include_str!("migrations/009_service_tokens.sql")),
        // v10: the consent ledger.
        M::up(include_str!("migrations/010_consent_ledger.sql")),
        // v11: notifications the merchant's systems sent.
        M::up(include_str!("migrations/011_notifications.sql")),
        // v12: the webhook outbox.
        M::up(include_str!("migrations/012_webhook_deliveries.sql")),
        // v13: notification batches.
        M::up(include_str!("migrations/013_notification_batches.sql")),
        // v14: carts and open forms.
        M::up(include_str!("migrations/014_commerce.sql")),
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
            if concierge_store::credentials::holds_credential(&headers) {
                rows.push((id, concierge_store::credentials::kept_headers(headers)));
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

    /// Every file of `migrations/` is one of the migrations, in the order of its number.
    #[test]
    fn every_migration_file_is_run_in_order() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/src/migrations");
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let source = include_str!("schema.rs");
        let mut last = 0;
        for file in &files {
            let at = source
                .find(&format!("migrations/{file}"))
                .unwrap_or_else(|| panic!("{file} is not among the migrations"));
            assert!(at > last, "{file} runs out of order");
            last = at;
        }
        assert_eq!(files.len(), 13, "{files:?}");
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
                    concierge_store::credentials::VISITOR_HEADER.to_string(),
                    concierge_store::credentials::kept_headers([(
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
