//! Carts and open forms on SQLite: one JSON row a conversation.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::corrupt;
use concierge_domain::{ConversationId, now_millis};
use concierge_store::{Commerce, CommerceState, StoreError};

#[async_trait]
impl Commerce for SqliteStore {
    async fn commerce(&self, id: &ConversationId) -> Result<CommerceState, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT state FROM commerce WHERE conversation_id = ?1")?
                .query_row(params![id.as_str()], |row| row.get(0))
                .optional()?;
            match text {
                Some(text) => serde_json::from_str(&text).map_err(corrupt),
                None => Ok(CommerceState::default()),
            }
        })
        .await
    }

    async fn set_commerce(
        &self,
        id: &ConversationId,
        state: &CommerceState,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        let text = serde_json::to_string(state).map_err(corrupt)?;
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO commerce (conversation_id, state, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (conversation_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )?
            .execute(params![id.as_str(), text, now_millis()])?;
            Ok(())
        })
        .await
    }
}
