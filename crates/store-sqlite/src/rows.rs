//! Reading rows back into domain values, and the JSON encoding of stored enums.

use serde::Serialize;
use serde::de::DeserializeOwned;

use concierge_domain::{
    ChannelId, ContactId, ConversationId, Message, MessageId, PlatformMessageId,
};
use concierge_store::StoreError;

/// The message columns, in the order [`message_from_row`] reads them, from alias `m`.
pub const MESSAGE_COLUMNS: &str = "m.seq, m.id, m.conversation_id, m.channel_id, m.contact_id, \
     m.platform_id, m.direction, m.author, m.content, m.reply_to, m.created_at, m.status";

pub fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Reads a message starting at column `start`. The outer error is SQLite's; the inner one a
/// stored value that does not decode.
pub fn message_from_row(
    row: &rusqlite::Row<'_>,
    start: usize,
) -> rusqlite::Result<Result<Message, StoreError>> {
    let seq: i64 = row.get(start)?;
    let id: String = row.get(start + 1)?;
    let conversation: String = row.get(start + 2)?;
    let channel: String = row.get(start + 3)?;
    let contact: String = row.get(start + 4)?;
    let platform_id: Option<String> = row.get(start + 5)?;
    let direction: String = row.get(start + 6)?;
    let author: String = row.get(start + 7)?;
    let content: String = row.get(start + 8)?;
    let reply_to: Option<String> = row.get(start + 9)?;
    let created_at: i64 = row.get(start + 10)?;
    let status: String = row.get(start + 11)?;
    Ok((|| {
        Ok(Message {
            id: MessageId::parse(&id).map_err(corrupt)?,
            seq,
            conversation: ConversationId::parse(conversation).map_err(corrupt)?,
            channel: ChannelId::parse(channel).map_err(corrupt)?,
            contact: ContactId::parse(contact).map_err(corrupt)?,
            platform_id: platform_id
                .map(PlatformMessageId::parse)
                .transpose()
                .map_err(corrupt)?,
            direction: parse_json(&direction)?,
            author: parse_json(&author)?,
            content: parse_json(&content)?,
            reply_to: reply_to
                .map(PlatformMessageId::parse)
                .transpose()
                .map_err(corrupt)?,
            created_at,
            status: parse_json(&status)?,
        })
    })())
}
