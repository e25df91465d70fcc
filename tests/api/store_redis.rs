//! The shared store suite on the Redis backend, each test under its own key prefix.

use std::sync::Arc;

use concierge::store::SharedStore;
use concierge::store::redis::{RedisSettings, RedisStore};

use crate::redis_server::{TestRedis, redis};

/// A fresh store on the test Redis; `None` when there is none (the helper says so).
async fn fresh_store(test: &str) -> Option<(SharedStore, TestRedis)> {
    let redis = redis(test)?;
    let store = RedisStore::open(RedisSettings {
        url: redis.url.clone(),
        prefix: redis.prefix.clone(),
        partitions: 4,
        takeover_ms: 3_000,
        dedupe_ttl_secs: 3_600,
    })
    .await
    .expect("open the Redis store");
    Some((Arc::new(store), redis))
}

concierge::store_suite!(optional fresh_store);
