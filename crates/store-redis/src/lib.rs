//! The shared store on Redis: several gateway instances behind a load balancer work one
//! state. Every write that must be atomic is one call of the Lua script in `store.lua`;
//! reads are plain commands, pipelined.
//!
//! # Order per conversation across instances
//!
//! The inbox is split into a fixed number of partitions (`[store] partitions`), one Redis
//! Stream each, read through one consumer group. A conversation always hashes to the same
//! partition, and each partition is worked by **one instance at a time**, which holds it by a
//! lease that expires (`takeover_ms`) unless renewed. We chose partitions over a lease per
//! conversation because:
//! - the hot path stays one stream read per batch, not a lease round trip per conversation
//!   and per event;
//! - the consumer group then does what it is good at: it remembers what each instance took
//!   and did not acknowledge (the pending entries list), so a new holder finds the work of a
//!   dead one with XAUTOCLAIM, in stream order, before it reads anything newer;
//! - the number of leases is bounded (16 by default), whatever the traffic.
//!
//! Every read of a partition and every completion of one of its events checks, inside the
//! same script, that this instance still holds the partition's lease (and, for a completion,
//! that the inbox number still names the stream entry it took): an instance that stalled
//! past its lease (a long pause, a network split) reads nothing more of it and finds its
//! completions refused ([`StoreError::Moved`]); it drops that work, and the new holder does
//! it. The cost is a possibly repeated LLM call, never a reply queued twice: replies are
//! queued by `complete` itself, atomically, with idempotency keys.
//!
//! Because the lease proves the previous holder gone (or fenced), the new holder claims the
//! partition's pending entries with XAUTOCLAIM at a minimum idle time of zero: waiting for
//! them to idle too would let newer entries of the same conversations run first. The
//! configurable idle time is the lease itself (`takeover_ms`). Consumers that left nothing
//! pending are then removed from the group, so restarts do not pile them up.
//!
//! A dead instance's sends in flight are handed out again as soon as the others see it gone
//! (it stopped renewing for `takeover_ms`), not after their delivery lease, flagged
//! `maybe_sent`.
//!
//! Instances share the partitions evenly: each registers itself and takes up to
//! `ceil(partitions / live instances)`; one holding more drains the extra ones (stops reading
//! them, finishes what it holds) and hands them over.
//!
//! # Keys
//!
//! Everything lives under `PREFIX:`. Transient keys expire: webhook dedupe ids after
//! `dedupe_ttl_secs`, and with them the raw webhooks (the stream `PREFIX:raw`), delivery bookkeeping and early delivery statuses a week after they are
//! done with, leases after `takeover_ms`. The audit log keeps the newest 100,000 records.
//! Finished inbox entries are removed from their stream. Conversations, messages, notes and
//! handoffs are the merchant's record and are kept, as with SQLite.

mod batch;
mod commerce;
mod consent;
mod faults;
mod inbox;
mod notify;
mod outbox;
mod queue;
mod raw;
mod reads;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde_json::json;
use tokio::sync::{Notify, broadcast};

use concierge_domain::{
    ChannelId, ContactId, ConversationId, ConversationKey, Message, MessageId, PlatformMessageId,
    ThreadState,
};
use concierge_store::{Fanout, Handoff, Instances, StoreError, Topic};

/// What `[store]` says about the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    pub partitions: u16,
    pub takeover_ms: u64,
    pub dedupe_ttl_secs: u64,
}

/// The Redis backend. Cheap to clone: clones share one connection and one partition table.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    settings: RedisSettings,
    script: Script,
    /// This process's name among the instances: unique per start.
    instance: String,
    partitions: inbox::Partitions,
    /// Rung when an instance appended an inbox event to a partition this one holds.
    wake: Arc<Notify>,
    /// What the fanout heard, per topic.
    topics: HashMap<Topic, broadcast::Sender<String>>,
    listening: Mutex<bool>,
    /// What new conversation ids are keyed with: read (or made) at the first use, since
    /// Redis may be away when the gateway starts.
    conversation_key: tokio::sync::OnceCell<ConversationKey>,
}

impl RedisStore {
    /// Connects lazily: the gateway starts (and says it is not ready) while Redis is away,
    /// and reconnects by itself when it comes back.
    pub async fn open(settings: RedisSettings) -> Result<Self, StoreError> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| StoreError::unavailable(format!("{}: {e}", redact(&settings.url))))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let instance = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let store = RedisStore {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix: settings.prefix.clone(),
                partitions: inbox::Partitions::default(),
                settings,
                script: Script::new(include_str!("store.lua")),
                instance,
                wake: Arc::new(Notify::new()),
                topics: Topic::ALL
                    .into_iter()
                    .map(|t| (t, broadcast::channel(1024).0))
                    .collect(),
                listening: Mutex::new(false),
                conversation_key: tokio::sync::OnceCell::new(),
            }),
        };
        match store.check_layout().await {
            Ok(()) => {}
            Err(e @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %e, "Redis does not answer yet; the gateway will keep trying");
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// This instance's name among those sharing the store.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Runs one operation of the store script; its answer is a flat list of strings.
    async fn op(&self, op: &str, args: serde_json::Value) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let answer: Vec<String> = self
            .inner
            .script
            .arg(&self.inner.prefix)
            .arg(op)
            .arg(args.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(answer)
    }

    /// The deployment's conversation key, kept in the `meta` hash: the first instance to
    /// start makes it, every other one reads it.
    async fn conversation_key(&self) -> Result<&ConversationKey, StoreError> {
        self.inner
            .conversation_key
            .get_or_try_init(|| async {
                let mut conn = self.conn();
                let key = self.key(&["meta"]);
                let made = hex::encode(ConversationKey::generate().as_bytes());
                let _: bool = conn.hset_nx(&key, "conversation_key", made).await?;
                let stored: Option<String> = conn.hget(&key, "conversation_key").await?;
                stored
                    .and_then(|text| hex::decode(text).ok())
                    .and_then(|bytes| ConversationKey::from_bytes(&bytes))
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "`{key}` holds no readable conversation_key ({} hex bytes)",
                            ConversationKey::LEN
                        ))
                    })
            })
            .await
    }

    /// The id of the pair's conversation: the legacy one when a conversation was stored
    /// under it before ids were keyed (none is made under it since), else the keyed one.
    async fn conversation_id(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<ConversationId, StoreError> {
        let legacy = ConversationId::legacy(channel, contact);
        let mut conn = self.conn();
        let stored: bool = conn.exists(self.key(&["conv", legacy.as_str()])).await?;
        if stored {
            return Ok(legacy);
        }
        Ok(self
            .conversation_key()
            .await?
            .conversation(channel, contact))
    }

    /// The number of partitions is part of the keys' layout: a deployment cannot change it
    /// on a live keyspace (conversations would move partitions and lose their order).
    async fn check_layout(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let key = self.key(&["meta"]);
        let wanted = self.inner.settings.partitions;
        let _: bool = conn.hset_nx(&key, "partitions", wanted).await?;
        let stored: Option<u16> = conn.hget(&key, "partitions").await?;
        match stored {
            Some(stored) if stored != wanted => Err(StoreError::Corrupt(format!(
                "[store] partitions = {wanted}, but the keys under `{}:` were laid out with {stored}; \
                 set it back to {stored} or use another prefix",
                self.inner.prefix
            ))),
            _ => Ok(()),
        }
    }

    /// One subscriber connection per process, started on first need: inbox wake-ups for
    /// the dispatcher, console events for the consoles. It resubscribes after Redis comes
    /// back.
    fn listen(&self) {
        let mut started = self
            .inner
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *started {
            return;
        }
        *started = true;
        let store = self.clone();
        tokio::spawn(async move {
            let wake_channel = store.key(&["wake"]);
            let mut channels = vec![wake_channel.clone()];
            let topics: HashMap<String, Topic> = Topic::ALL
                .into_iter()
                .map(|t| (store.key(&["fan", t.name()]), t))
                .collect();
            channels.extend(topics.keys().cloned());
            loop {
                match store.inner.client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if let Err(e) = pubsub.subscribe(&channels).await {
                            tracing::warn!(error = %e, "cannot subscribe to Redis; retrying");
                        } else {
                            // Whatever happened while we were away: look at the inbox.
                            store.inner.wake.notify_one();
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let Ok(payload) = message.get_payload::<String>() else {
                                    continue;
                                };
                                let channel = message.get_channel_name();
                                if channel == wake_channel {
                                    let held = payload
                                        .parse::<u16>()
                                        .is_ok_and(|p| store.inner.partitions.holds(p));
                                    if held {
                                        store.inner.wake.notify_one();
                                    }
                                } else if let Some(sender) =
                                    topics.get(channel).and_then(|t| store.inner.topics.get(t))
                                {
                                    let _ = sender.send(payload);
                                }
                            }
                            tracing::warn!("the Redis subscription ended; reconnecting");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "Redis pub/sub unreachable; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

#[async_trait]
impl Instances for RedisStore {
    fn inbox_signal(&self) -> Option<Arc<Notify>> {
        self.listen();
        Some(self.inner.wake.clone())
    }

    fn fanout(&self) -> Option<Arc<dyn Fanout>> {
        self.listen();
        Some(Arc::new(self.clone()))
    }

    async fn release_inbox(&self) {
        inbox::release_all(self).await;
    }
}

impl Fanout for RedisStore {
    fn publish(&self, topic: Topic, payload: String) {
        let mut conn = self.conn();
        let channel = self.key(&["fan", topic.name()]);
        tokio::spawn(async move {
            let sent: Result<i64, _> = conn.publish(&channel, payload).await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, topic = topic.name(), "a live event could not be published");
            }
        });
    }

    fn subscribe(&self, topic: Topic) -> broadcast::Receiver<String> {
        match self.inner.topics.get(&topic) {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_string())
}

/// A Redis URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// How a thread state is stored: its JSON, its name, and whether the bot may reply.
fn thread_json(state: &ThreadState) -> Result<serde_json::Value, StoreError> {
    Ok(json!({
        "json": serde_json::to_string(state).map_err(corrupt)?,
        "state": state.name(),
        "bot": if state.bot_may_reply() { "1" } else { "0" },
    }))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, StoreError> {
    fields
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("stored record lacks `{name}`")))
}

fn number(fields: &Fields, name: &str) -> Result<i64, StoreError> {
    field(fields, name)?.parse().map_err(corrupt)
}

fn optional_number(fields: &Fields, name: &str) -> Result<Option<i64>, StoreError> {
    fields
        .get(name)
        .map(|v| v.parse().map_err(corrupt))
        .transpose()
}

/// A message from its hash; `None` for an empty hash (no such message).
fn message_from(fields: &Fields, id: &str) -> Result<Option<Message>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(Message {
        id: MessageId::parse(id).map_err(corrupt)?,
        seq: number(fields, "seq")?,
        conversation: ConversationId::parse(field(fields, "conv")?).map_err(corrupt)?,
        channel: concierge_domain::ChannelId::parse(field(fields, "ch")?).map_err(corrupt)?,
        contact: concierge_domain::ContactId::parse(field(fields, "contact")?).map_err(corrupt)?,
        platform_id: fields
            .get("pid")
            .map(|p| PlatformMessageId::parse(p.as_str()))
            .transpose()
            .map_err(corrupt)?,
        direction: parse(field(fields, "dir")?)?,
        author: parse(field(fields, "author")?)?,
        content: parse(field(fields, "content")?)?,
        reply_to: fields
            .get("reply_to")
            .map(|p| PlatformMessageId::parse(p.as_str()))
            .transpose()
            .map_err(corrupt)?,
        created_at: number(fields, "at")?,
        status: parse(field(fields, "status")?)?,
    }))
}

fn handoff_from(fields: &Fields) -> Result<Option<Handoff>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |name: &str| fields.get(name).cloned();
    Ok(Some(Handoff {
        id: field(fields, "id")?.to_string(),
        conversation: ConversationId::parse(field(fields, "conv")?).map_err(corrupt)?,
        reason: field(fields, "reason")?.to_string(),
        priority: text("priority"),
        team: text("team"),
        requested_by: field(fields, "by")?.to_string(),
        created_at: number(fields, "created")?,
        brief: text("brief"),
        sla_due_at: optional_number(fields, "sla")?,
        breached_at: optional_number(fields, "breached")?,
        claimed_by: text("claimed_by"),
        claimed_at: optional_number(fields, "claimed_at")?,
        first_response_at: optional_number(fields, "first_resp")?,
        offered_to: text("offered_to"),
        offer_until: optional_number(fields, "offer_until")?,
        closed_at: optional_number(fields, "closed")?,
        outcome: text("outcome"),
        release_note: text("note"),
    }))
}

/// Reads many hashes in one round trip.
async fn hashes(
    conn: &mut ConnectionManager,
    keys: impl IntoIterator<Item = String>,
) -> Result<Vec<Fields>, StoreError> {
    let mut pipe = redis::pipe();
    let mut count = 0;
    for key in keys {
        pipe.hgetall(key);
        count += 1;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    Ok(pipe.query_async(conn).await?)
}

/// The first string of a script answer.
fn status(answer: &[String]) -> &str {
    answer.first().map(String::as_str).unwrap_or("")
}
