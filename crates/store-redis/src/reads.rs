//! Conversations, messages and what the agents leave beside them, on Redis: plain reads
//! (pipelined), and the few writes that need the store script.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::json;

use super::inbox::status_json;
use super::{
    Fields, RedisStore, corrupt, field, handoff_from, hashes, message_from, number, parse, status,
    thread_json,
};
use concierge_domain::{
    ChannelId, ContactId, ConversationId, DeliveryStatus, Direction, Message, MessageId, Millis,
    PlatformMessageId, ThreadState, now_millis,
};
use concierge_store::{
    Conversation, Conversations, Handoff, Journal, Note, StoreError, Summary, TurnUsage,
};

/// A note as the store script writes it.
#[derive(Deserialize)]
struct StoredNote {
    seq: i64,
    author: String,
    body: String,
    at: Millis,
}

impl RedisStore {
    pub(super) fn conversation_from(
        &self,
        id: &ConversationId,
        fields: &Fields,
    ) -> Result<Option<Conversation>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(Conversation {
            id: id.clone(),
            channel: ChannelId::parse(field(fields, "ch")?).map_err(corrupt)?,
            contact: ContactId::parse(field(fields, "contact")?).map_err(corrupt)?,
            thread: parse(field(fields, "thread")?)?,
            created_at: number(fields, "created")?,
            last_message_at: number(fields, "last")?,
            source: fields.get("source").cloned(),
        }))
    }

    /// Messages by id, in the order given; ids whose message is gone are skipped.
    pub(super) async fn messages_by_id(&self, ids: &[String]) -> Result<Vec<Message>, StoreError> {
        let mut conn = self.conn();
        let rows = hashes(&mut conn, ids.iter().map(|id| self.key(&["msg", id]))).await?;
        let mut messages = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(rows) {
            if let Some(message) = message_from(&fields, id)? {
                messages.push(message);
            }
        }
        Ok(messages)
    }

    pub(super) async fn handoffs_by_id(&self, ids: &[String]) -> Result<Vec<Handoff>, StoreError> {
        let mut conn = self.conn();
        let rows = hashes(&mut conn, ids.iter().map(|id| self.key(&["ho", id]))).await?;
        let mut handoffs = Vec::with_capacity(ids.len());
        for fields in rows {
            if let Some(handoff) = handoff_from(&fields)? {
                handoffs.push(handoff);
            }
        }
        Ok(handoffs)
    }
}

#[async_trait]
impl Conversations for RedisStore {
    async fn conversation_of(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<ConversationId, StoreError> {
        self.conversation_id(channel, contact).await
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let mut conn = self.conn();
        let fields: Fields = conn.hgetall(self.key(&["conv", id.as_str()])).await?;
        self.conversation_from(id, &fields)
    }

    async fn messages(
        &self,
        id: &ConversationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrangebyscore_limit(
                self.key(&["msgs", id.as_str()]),
                format!("({after}"),
                "+inf",
                0,
                limit as isize,
            )
            .await?;
        self.messages_by_id(&ids).await
    }

    async fn recent_messages(
        &self,
        id: &ConversationId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let mut ids: Vec<String> = conn
            .zrevrange(self.key(&["msgs", id.as_str()]), 0, limit as isize - 1)
            .await?;
        ids.reverse();
        self.messages_by_id(&ids).await
    }

    async fn messages_upto(
        &self,
        id: &ConversationId,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(&["msgs", id.as_str()]);
        let mut conn = self.conn();
        let mut before: Vec<String> = conn
            .zrevrangebyscore_limit(&key, upto, "-inf", 0, limit as isize)
            .await?;
        before.reverse();
        let mut messages = self.messages_by_id(&before).await?;
        // Later messages are mostly customers' waiting their turn: read them in pages and
        // keep the outbound ones.
        let mut offset = 0;
        let mut outbound = 0;
        loop {
            let page: Vec<String> = conn
                .zrangebyscore_limit(&key, format!("({upto}"), "+inf", offset, 256)
                .await?;
            if page.is_empty() {
                break;
            }
            offset += page.len() as isize;
            for message in self.messages_by_id(&page).await? {
                if message.direction == Direction::Outbound && outbound < limit {
                    outbound += 1;
                    messages.push(message);
                }
            }
            if outbound >= limit {
                break;
            }
        }
        Ok(messages)
    }

    async fn last_inbound_at(&self, id: &ConversationId) -> Result<Option<Millis>, StoreError> {
        let mut conn = self.conn();
        let at: Option<String> = conn
            .hget(self.key(&["conv", id.as_str()]), "last_in")
            .await?;
        at.map(|at| at.parse().map_err(corrupt)).transpose()
    }

    async fn message_by_platform_id(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
    ) -> Result<Option<Message>, StoreError> {
        let mut conn = self.conn();
        let id: Option<String> = conn
            .get(self.key(&["pmid", channel.as_str(), platform_id.as_str()]))
            .await?;
        match id {
            Some(id) => Ok(self.messages_by_id(&[id]).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        Ok(self
            .messages_by_id(&[id.to_string()])
            .await?
            .into_iter()
            .next())
    }

    async fn thread_state(&self, id: &ConversationId) -> Result<ThreadState, StoreError> {
        let mut conn = self.conn();
        let thread: Option<String> = conn
            .hget(self.key(&["conv", id.as_str()]), "thread")
            .await?;
        match thread {
            Some(thread) => parse(&thread),
            None => Ok(ThreadState::initial()),
        }
    }

    async fn set_thread_state(
        &self,
        id: &ConversationId,
        state: ThreadState,
    ) -> Result<(), StoreError> {
        let answer = self
            .op(
                "set_thread",
                json!({"conv": id.as_str(), "to": thread_json(&state)?}),
            )
            .await?;
        match status(&answer) {
            "missing" => Err(StoreError::NotFound(format!("conversation {id}"))),
            _ => Ok(()),
        }
    }

    async fn update_status(
        &self,
        channel: &ChannelId,
        platform_id: &PlatformMessageId,
        status_value: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        let s = status_json(&status_value)?;
        let answer = self
            .op(
                "update_status",
                json!({
                    "ch": channel.as_str(), "pid": platform_id.as_str(),
                    "status": s["status"], "rank": s["rank"],
                }),
            )
            .await?;
        Ok(status(&answer) == "1")
    }

    async fn set_media(
        &self,
        message: MessageId,
        kept: &concierge_domain::KeptMedia,
    ) -> Result<bool, StoreError> {
        let key = self.key(&["msg", &message.to_string()]);
        // Read, change, and write only if nothing changed it meanwhile (an edit of the
        // caption): then read again.
        for _ in 0..3 {
            let mut conn = self.conn();
            let content: Option<String> = conn.hget(&key, "content").await?;
            let Some(content) = content else {
                return Ok(false);
            };
            let Some(changed) =
                parse::<concierge_domain::Content>(&content)?.with_kept(kept.clone())
            else {
                return Ok(false);
            };
            let changed = serde_json::to_string(&changed).map_err(super::corrupt)?;
            let answer = self
                .op(
                    "set_content",
                    json!({"msg": message.to_string(), "old": content, "new": changed}),
                )
                .await?;
            if status(&answer) == "ok" {
                return Ok(true);
            }
        }
        Err(StoreError::unavailable(format!(
            "message {message} kept changing while its media was recorded"
        )))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[async_trait]
impl Journal for RedisStore {
    async fn notes(&self, id: &ConversationId) -> Result<Vec<Note>, StoreError> {
        let mut conn = self.conn();
        let raw: Vec<String> = conn
            .lrange(self.key(&["notes", id.as_str()]), 0, -1)
            .await?;
        raw.iter()
            .map(|text| {
                let note: StoredNote = parse(text)?;
                Ok(Note {
                    seq: note.seq,
                    conversation: id.clone(),
                    author: note.author,
                    body: note.body,
                    created_at: note.at,
                })
            })
            .collect()
    }

    async fn handoffs(&self, id: &ConversationId) -> Result<Vec<Handoff>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn.lrange(self.key(&["hos", id.as_str()]), 0, -1).await?;
        self.handoffs_by_id(&ids).await
    }

    async fn usage(&self, id: &ConversationId) -> Result<TurnUsage, StoreError> {
        let mut conn = self.conn();
        let fields: Fields = conn.hgetall(self.key(&["usage", id.as_str()])).await?;
        let get = |name: &str| -> u64 {
            fields
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64
        };
        Ok(TurnUsage {
            input_tokens: get("in"),
            output_tokens: get("out"),
            llm_calls: get("calls"),
        })
    }

    async fn usage_since(
        &self,
        id: &ConversationId,
        since: Millis,
    ) -> Result<TurnUsage, StoreError> {
        let mut conn = self.conn();
        // One member per turn: `seq:input:output:calls`, scored by its completion time.
        let turns: Vec<String> = conn
            .zrangebyscore(self.key(&["usage_log", id.as_str()]), since, "+inf")
            .await?;
        let mut usage = TurnUsage::default();
        for turn in &turns {
            let mut parts = turn.split(':').skip(1).map(|n| n.parse::<u64>());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(input)), Some(Ok(output)), Some(Ok(calls))) => usage.add(TurnUsage {
                    input_tokens: input,
                    output_tokens: output,
                    llm_calls: calls,
                }),
                _ => return Err(StoreError::Corrupt(format!("a usage record `{turn}`"))),
            }
        }
        Ok(usage)
    }

    async fn summary(&self, id: &ConversationId) -> Result<Option<Summary>, StoreError> {
        let mut conn = self.conn();
        let fields: Fields = conn.hgetall(self.key(&["summary", id.as_str()])).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(Summary {
            text: field(&fields, "text")?.to_string(),
            upto_seq: number(&fields, "upto")?,
        }))
    }

    async fn set_summary(&self, id: &ConversationId, summary: Summary) -> Result<(), StoreError> {
        self.op(
            "set_summary",
            json!({
                "conv": id.as_str(), "text": summary.text, "upto": summary.upto_seq,
                "now": now_millis(),
            }),
        )
        .await?;
        Ok(())
    }
}
