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
