//! The shared store suite on the SQLite backend, each test on its own file.

use std::sync::Arc;

use concierge::config::SyncMode;
use concierge::store::SharedStore;
use concierge::store::sqlite::SqliteStore;

async fn fresh_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, SyncMode::Normal)
        .await
        .expect("open");
    (Arc::new(store), dir)
}

concierge::store_suite!(fresh_store);

#[tokio::test]
async fn an_unreadable_inbox_row_is_set_aside_and_does_not_stall_the_rest() {
    let (store, dir) = fresh_store().await;
    let broken = concierge::store::suite::text_event("ana", "e1", "first");
    let fine = concierge::store::suite::text_event("bob", "e2", "second");
    store.ingest(&[broken, fine]).await.unwrap();
    // Damage the first row as another version, or a bad disk, might leave it.
    let raw = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    raw.execute(
        "UPDATE inbox SET event = '{\"not\": \"an event\"}' WHERE event_id = 'e1'",
        [],
    )
    .unwrap();
    let pending = store.pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.event_id.as_str(), "e2");
    let note: String = raw
        .query_row(
            "SELECT note FROM inbox WHERE event_id = 'e1' AND done_at IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(note.starts_with("unreadable"), "{note}");
    assert_eq!(store.pending(0, 10).await.unwrap().len(), 1);
}
