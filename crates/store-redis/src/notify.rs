//! Notifications on Redis: one Lua step checks the key and the consent ledger, then creates
//! the conversation and queues the message with the notification's record.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::json;

use super::inbox::{partition, replies_json, status_json};
use super::{Fields, RedisStore, corrupt, status, thread_json};
use concierge_domain::{
    Author, ChannelId, ContactId, ConversationId, DeliveryStatus, MessageId, ThreadState,
};
use concierge_store::{
    NewNotification, NewReply, Notification, Notifications, Notified, Purpose, Refusal, StoreError,
};

#[async_trait]
impl Notifications for RedisStore {
    async fn notify(&self, n: &NewNotification) -> Result<Notified, StoreError> {
        let reply = NewReply {
            idempotency_key: n.outbox_key(),
            author: Author::System,
            content: n.content.clone(),
            reply_to: None,
            reengage: false,
        };
        let reply = replies_json(std::slice::from_ref(&reply))?
            .pop()
            .ok_or_else(|| corrupt("a notification without its message"))?;
        let (batch, index) = match &n.batch {
            Some((batch, index)) => (Some(batch.clone()), Some(*index)),
            None => (None, None),
        };
        let answer = self
            .op(
                "notify",
                json!({
                    "key": n.key, "id": n.id, "service": n.service,
                    "channel": n.channel.as_str(), "contact": n.contact.as_str(),
                    "conv": n.conversation.as_str(),
                    "part": partition(&n.conversation, self.inner.settings.partitions),
                    "purpose": n.purpose.name(), "template": n.template,
                    "batch": batch, "batch_index": index, "at": n.at,
                    "reply": reply,
                    "pending": status_json(&DeliveryStatus::Pending)?,
                    "initial": thread_json(&ThreadState::initial())?,
                }),
            )
            .await?;
        let id = answer.get(1).cloned().unwrap_or_default();
        match status(&answer) {
            state @ ("ok" | "replayed") => {
                let notification = self
                    .notification(&id)
                    .await?
                    .ok_or_else(|| corrupt(format!("notification {id} is not stored")))?;
                Ok(Notified::Queued {
                    notification,
                    replayed: state == "replayed",
                })
            }
            "refused" if id == "opted_out" => Ok(Notified::Refused(Refusal::OptedOut)),
            "refused" => Ok(Notified::Refused(Refusal::NoConsent)),
            "conflict" => Err(StoreError::Conflict {
                what: format!("the outbox key of notification {} was used", n.id),
                cause: None,
            }),
            other => Err(corrupt(format!("notify answered `{other}`"))),
        }
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        let mut conn = self.conn();
        let fields: Fields = conn.hgetall(self.key(&["notification", id])).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| corrupt(format!("notification {id} without its {name}")))
        };
        let purpose = get("purpose")?;
        Ok(Some(Notification {
            id: id.to_string(),
            service: get("service")?,
            channel: ChannelId::parse(get("ch")?).map_err(corrupt)?,
            contact: ContactId::parse(get("contact")?).map_err(corrupt)?,
            conversation: ConversationId::parse(get("conv")?).map_err(corrupt)?,
            message: MessageId::parse(&get("msg")?).map_err(corrupt)?,
            purpose: Purpose::parse(&purpose)
                .ok_or_else(|| corrupt(format!("a notification purpose `{purpose}`")))?,
            template: fields.get("template").cloned(),
            created_at: get("at")?.parse().map_err(corrupt)?,
        }))
    }
}
