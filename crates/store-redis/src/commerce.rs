//! Carts and open forms on Redis: one JSON string a conversation.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, corrupt};
use concierge_domain::ConversationId;
use concierge_store::{Commerce, CommerceState, StoreError};

#[async_trait]
impl Commerce for RedisStore {
    async fn commerce(&self, id: &ConversationId) -> Result<CommerceState, StoreError> {
        let mut conn = self.conn();
        let text: Option<String> = conn.get(self.key(&["commerce", id.as_str()])).await?;
        match text {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| corrupt(format!("a conversation's cart: {e}"))),
            None => Ok(CommerceState::default()),
        }
    }

    async fn set_commerce(
        &self,
        id: &ConversationId,
        state: &CommerceState,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).map_err(corrupt)?;
        let mut conn = self.conn();
        let () = conn.set(self.key(&["commerce", id.as_str()]), text).await?;
        Ok(())
    }
}
