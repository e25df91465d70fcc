//! The shared store suite on the Redis backend, each test under its own key prefix.

use std::sync::Arc;

use concierge::store::redis::{RedisSettings, RedisStore};
use concierge::store::{Inbox, Outbox, SharedStore};

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

concierge_testkit::store_suite!(optional fresh_store);

async fn instance(redis: &TestRedis, partitions: u16) -> RedisStore {
    RedisStore::open(RedisSettings {
        url: redis.url.clone(),
        prefix: redis.prefix.clone(),
        partitions,
        // Long enough that no background renewal runs during the test: each step is explicit.
        takeover_ms: 60_000,
        dedupe_ttl_secs: 3_600,
    })
    .await
    .expect("open the Redis store")
}

fn reply(key: &str, text: &str) -> concierge::store::NewReply {
    concierge::store::NewReply {
        idempotency_key: key.to_string(),
        author: concierge::domain::Author::Agent("front_desk".to_string()),
        content: concierge::domain::Content::text(text),
        reply_to: None,
        reengage: false,
    }
}

/// Instance A takes an event, then stalls past its lease; instance B takes the partition
/// over with the event A left pending, before the newer one. A's late completion is refused
/// (fenced); B's is the one that counts: one reply, not two.
#[tokio::test]
async fn a_stalled_instance_is_fenced_and_its_pending_work_taken_over_in_order() {
    use concierge::store::{StoreError, TurnOutcome};
    use concierge_testkit::store_suite::text_event;
    let Some(redis) = redis("a_stalled_instance_is_fenced") else {
        return;
    };
    let a = instance(&redis, 1).await;
    let b = instance(&redis, 1).await;
    a.ingest(&[text_event("ana", "e1", "first")]).await.unwrap();
    let taken = a.take(0, 10).await.unwrap();
    assert_eq!(taken.len(), 1, "A holds the only partition and takes e1");
    let e1 = taken[0].seq;

    // A stalls: its lease runs out (deleted here, as expiry would), and a newer message
    // arrives meanwhile.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{}:lease:0", redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    b.ingest(&[text_event("ana", "e2", "second")])
        .await
        .unwrap();
    // B's first take starts it holding partitions: it claims the one A lost, with e1 first.
    let taken = b.take(0, 10).await.unwrap();
    let seqs: Vec<i64> = taken.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), 2, "B takes over e1 and reads e2: {seqs:?}");
    assert_eq!(
        seqs[0], e1,
        "the work A left comes before the newer message"
    );

    // A wakes up and reads again: it no longer holds the partition, so it reads nothing of
    // it (the read checks the lease), and B gets the newer message.
    b.ingest(&[text_event("ana", "e3", "third")]).await.unwrap();
    assert!(
        a.take(0, 10).await.unwrap().is_empty(),
        "A reads nothing it lost"
    );
    let later = b.take(0, 10).await.unwrap();
    assert_eq!(later.len(), 1, "B reads e3");

    let late = a
        .complete(
            e1,
            TurnOutcome {
                replies: vec![reply("e1-r", "from A")],
                ..TurnOutcome::default()
            },
        )
        .await;
    assert!(matches!(late, Err(StoreError::Moved(_))), "{late:?}");
    let done = b
        .complete(
            e1,
            TurnOutcome {
                replies: vec![reply("e1-r", "from B")],
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.queued.len(), 1);
    let claimed = b
        .claim_due(concierge::domain::now_millis(), 10, 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one reply, B's");
    assert_eq!(
        claimed[0].message.content,
        concierge::domain::Content::text("from B")
    );
    assert_eq!(
        a.pending(0, 10).await.unwrap().len(),
        2,
        "e2 and e3 still to do"
    );
}

/// An instance that stops hands its partitions back at once, with the events it took and
/// did not finish: the next instance takes them all, without waiting for leases to expire.
#[tokio::test]
async fn a_stopping_instance_hands_its_partitions_back_at_once() {
    use concierge::store::Instances;
    use concierge_testkit::store_suite::text_event;
    let Some(redis) = redis("a_stopping_instance_hands_its_partitions_back") else {
        return;
    };
    let a = instance(&redis, 4).await;
    // Messages from many contacts: they spread over the partitions.
    let events: Vec<_> = (0..40)
        .map(|i| text_event(&format!("c{i}"), &format!("e{i}"), "hello"))
        .collect();
    a.ingest(&events).await.unwrap();
    let first = a.take(0, 100).await.unwrap().len();
    assert_eq!(first, 40, "alone, A holds every partition");
    a.release_inbox().await;
    let c = instance(&redis, 4).await;
    let taken = c.take(0, 100).await.unwrap().len();
    assert_eq!(taken, 40, "a new instance takes over everything A left");
}

/// A conversation stored before ids were keyed keeps its id (and its partition); instances
/// sharing a prefix share the key; another prefix has its own.
#[tokio::test]
async fn a_stored_conversation_keeps_its_legacy_id_and_instances_share_the_key() {
    use concierge::domain::ConversationId;
    use concierge::store::Conversations;
    use concierge_testkit::store_suite::text_event;
    use redis::AsyncCommands;
    let Some(redis) = redis("legacy_conversation_ids") else {
        return;
    };
    let a = instance(&redis, 4).await;
    let old = text_event("15550100001", "e1", "from before");
    let first = a.ingest(std::slice::from_ref(&old)).await.unwrap();
    let keyed = first.appended[0].conversation.clone();
    let legacy = ConversationId::legacy(&old.channel, &old.contact);
    assert_ne!(keyed, legacy);
    // What an earlier version left: the conversation's hash under the legacy id.
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = |id: &ConversationId| format!("{}:conv:{}", redis.prefix, id.as_str());
    let _: () = conn.rename(key(&keyed), key(&legacy)).await.unwrap();
    let b = instance(&redis, 4).await;
    assert_eq!(
        b.conversation_of(&old.channel, &old.contact).await.unwrap(),
        legacy
    );
    let next = b
        .ingest(&[text_event("15550100001", "e2", "and now")])
        .await
        .unwrap();
    assert_eq!(next.appended[0].conversation, legacy);
    // A new contact: both instances give it the same keyed id.
    let new = text_event("15550100002", "e3", "hello");
    let made = a.ingest(std::slice::from_ref(&new)).await.unwrap();
    let id = made.appended[0].conversation.clone();
    assert_ne!(id, ConversationId::legacy(&new.channel, &new.contact));
    assert_eq!(
        b.conversation_of(&new.channel, &new.contact).await.unwrap(),
        id
    );
    // Another prefix is another deployment, with its own key.
    let elsewhere = RedisStore::open(RedisSettings {
        url: redis.url.clone(),
        prefix: format!("{}-other", redis.prefix),
        partitions: 4,
        takeover_ms: 60_000,
        dedupe_ttl_secs: 3_600,
    })
    .await
    .unwrap();
    assert_ne!(
        elsewhere
            .conversation_of(&new.channel, &new.contact)
            .await
            .unwrap(),
        id
    );
    let _: () = conn
        .del(format!("{}-other:meta", redis.prefix))
        .await
        .unwrap();
}
