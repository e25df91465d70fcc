//! The shared store suite on the SQLite backend, each test on its own file.

use std::sync::Arc;

use concierge::config::SyncMode;
use concierge::store::sqlite::SqliteStore;
use concierge::store::{Conversations, Inbox, SharedStore};

async fn fresh_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, SyncMode::Normal)
        .await
        .expect("open");
    (Arc::new(store), dir)
}

concierge_testkit::store_suite!(fresh_store);

#[tokio::test]
async fn an_unreadable_inbox_row_is_set_aside_and_does_not_stall_the_rest() {
    let (store, dir) = fresh_store().await;
    let broken = concierge_testkit::store_suite::text_event("ana", "e1", "first");
    let fine = concierge_testkit::store_suite::text_event("bob", "e2", "second");
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

/// A conversation stored before ids were keyed keeps its id: its next message lands in it;
/// a new contact gets a keyed id; the key outlives a restart and is the file's own.
#[tokio::test]
async fn a_stored_conversation_keeps_its_legacy_id_and_the_key_lasts() {
    use concierge::domain::ConversationId;
    use concierge_testkit::store_suite::text_event;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let old = text_event("15550100001", "e1", "from before");
    let legacy = ConversationId::legacy(&old.channel, &old.contact);
    {
        let store = SqliteStore::open(&path, SyncMode::Normal).await.unwrap();
        store.ingest(std::slice::from_ref(&old)).await.unwrap();
    }
    // What a store written by an earlier version holds: the same rows under the legacy id.
    let keyed = {
        let raw = rusqlite::Connection::open(&path).unwrap();
        let keyed: String = raw
            .query_row("SELECT id FROM conversations", [], |row| row.get(0))
            .unwrap();
        raw.execute("UPDATE conversations SET id = ?1", [legacy.as_str()])
            .unwrap();
        for table in ["messages", "inbox"] {
            raw.execute(
                &format!("UPDATE {table} SET conversation_id = ?1"),
                [legacy.as_str()],
            )
            .unwrap();
        }
        keyed
    };
    assert_ne!(keyed, legacy.as_str());
    let store = SqliteStore::open(&path, SyncMode::Normal).await.unwrap();
    assert_eq!(
        store
            .conversation_of(&old.channel, &old.contact)
            .await
            .unwrap(),
        legacy
    );
    let next = store
        .ingest(&[text_event("15550100001", "e2", "and now")])
        .await
        .unwrap();
    assert_eq!(next.appended[0].conversation, legacy);
    assert_eq!(store.messages(&legacy, 0, 10).await.unwrap().len(), 2);
    // A new contact after the restart: keyed with the same key as before it.
    let new = text_event("15550100002", "e3", "hello");
    let outcome = store.ingest(std::slice::from_ref(&new)).await.unwrap();
    let id = outcome.appended[0].conversation.clone();
    assert_ne!(id, ConversationId::legacy(&new.channel, &new.contact));
    let again = SqliteStore::open(&path, SyncMode::Normal).await.unwrap();
    assert_eq!(
        again
            .conversation_of(&new.channel, &new.contact)
            .await
            .unwrap(),
        id
    );
    // Another deployment (another file) computes another id for the same pair.
    let elsewhere = SqliteStore::open(&dir.path().join("other.db"), SyncMode::Normal)
        .await
        .unwrap();
    assert_ne!(
        elsewhere
            .conversation_of(&new.channel, &new.contact)
            .await
            .unwrap(),
        id
    );
}
