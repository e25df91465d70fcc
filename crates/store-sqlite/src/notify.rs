//! Notifications on SQLite: the key, the consent check, the conversation and the outbox entry
//! in one write.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::consent::ledger;
use super::rows::corrupt;
use super::{SqliteStore, json, queue_reply};
use concierge_domain::{Author, ChannelId, ContactId, ConversationId, MessageId, ThreadState};
use concierge_store::notify::allows;
use concierge_store::{
    NewNotification, NewReply, Notification, Notifications, Notified, Purpose, StoreError,
};

const COLUMNS: &str = "id, service, channel_id, contact_id, conversation_id, message_id, \
                       purpose, template, created_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 8]> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ])
}

fn notification(fields: [Option<String>; 8], created_at: i64) -> Result<Notification, StoreError> {
    let [
        id,
        service,
        channel,
        contact,
        conversation,
        message,
        purpose,
        template,
    ] = fields;
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| corrupt(format!("a notification without its {what}")))
    };
    let purpose = need(purpose, "purpose")?;
    Ok(Notification {
        id: need(id, "id")?,
        service: need(service, "service")?,
        channel: ChannelId::parse(need(channel, "channel")?).map_err(corrupt)?,
        contact: ContactId::parse(need(contact, "contact")?).map_err(corrupt)?,
        conversation: ConversationId::parse(need(conversation, "conversation")?)
            .map_err(corrupt)?,
        message: MessageId::parse(&need(message, "message")?).map_err(corrupt)?,
        purpose: Purpose::parse(&purpose)
            .ok_or_else(|| corrupt(format!("a notification purpose `{purpose}`")))?,
        template,
        created_at,
    })
}

fn read_one(
    conn: &rusqlite::Connection,
    filter: &str,
    value: &str,
) -> Result<Option<Notification>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE {filter} = ?1"
        ))?
        .query_row(params![value], |row| {
            Ok((from_row(row)?, row.get::<_, i64>(8)?))
        })
        .optional()?;
    row.map(|(fields, at)| notification(fields, at)).transpose()
}

#[async_trait]
impl Notifications for SqliteStore {
    async fn notify(&self, n: &NewNotification) -> Result<Notified, StoreError> {
        let n = n.clone();
        self.write(move |tx| {
            if let Some(existing) = read_one(tx, "key", &n.key)? {
                return Ok(Notified::Queued {
                    notification: existing,
                    replayed: true,
                });
            }
            if let Err(refusal) = allows(&ledger(tx, &n.channel, &n.contact)?, n.purpose) {
                return Ok(Notified::Refused(refusal));
            }
            tx.execute(
                "INSERT INTO contacts (channel_id, contact_id, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3) ON CONFLICT (channel_id, contact_id) DO NOTHING",
                params![n.channel.as_str(), n.contact.as_str(), n.at],
            )?;
            tx.execute(
                "INSERT INTO conversations (id, channel_id, contact_id, thread, created_at, last_message_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (id) DO UPDATE SET last_message_at = MAX(last_message_at, excluded.last_message_at)",
                params![
                    n.conversation.as_str(),
                    n.channel.as_str(),
                    n.contact.as_str(),
                    json(&ThreadState::initial())?,
                    n.at
                ],
            )?;
            let reply = NewReply {
                idempotency_key: n.outbox_key(),
                author: Author::System,
                content: n.content.clone(),
                reply_to: None,
                reengage: false,
            };
            let message = queue_reply(tx, &n.conversation, &n.channel, &n.contact, &reply, n.at)?
                .ok_or_else(|| StoreError::Conflict {
                    what: format!("the outbox key of notification {} was used", n.id),
                    cause: None,
                })?;
            let (batch, index) = match &n.batch {
                Some((batch, index)) => (Some(batch.clone()), Some(*index)),
                None => (None, None),
            };
            tx.execute(
                "INSERT INTO notifications (id, key, service, channel_id, contact_id, conversation_id,
                     message_id, purpose, template, batch_id, batch_index, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    n.id,
                    n.key,
                    n.service,
                    n.channel.as_str(),
                    n.contact.as_str(),
                    n.conversation.as_str(),
                    message.to_string(),
                    n.purpose.name(),
                    n.template,
                    batch,
                    index,
                    n.at
                ],
            )?;
            Ok(Notified::Queued {
                notification: Notification {
                    id: n.id.clone(),
                    service: n.service.clone(),
                    channel: n.channel.clone(),
                    contact: n.contact.clone(),
                    conversation: n.conversation.clone(),
                    message,
                    purpose: n.purpose,
                    template: n.template.clone(),
                    created_at: n.at,
                },
                replayed: false,
            })
        })
        .await
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| read_one(conn, "id", &id)).await
    }
}
