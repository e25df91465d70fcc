//! A stored message: who wrote it, what it says, and how far its delivery got.

use serde::{Deserialize, Serialize};

use super::{ChannelId, ContactId, Content, ConversationId, MessageId, Millis, PlatformMessageId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Author {
    Customer,
    Agent(String),
    Concierge(String),
    System,
}

impl Author {
    /// Who spoke, as a transcript line names them.
    pub fn speaker(&self) -> String {
        match self {
            Author::Customer => "Customer".to_string(),
            Author::Agent(name) => format!("Assistant ({name})"),
            Author::Concierge(name) => format!("Concierge ({name})"),
            Author::System => "Assistant".to_string(),
        }
    }
}

/// How far an outbound message got. It only moves forward: `pending < sent < delivered <
/// read`; `failed` is final and may replace any state but `read` (a platform can report a
/// failure after `sent`, never after the customer read it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed {
        code: Option<String>,
        reason: String,
    },
}

impl DeliveryStatus {
    /// The position in the forward order; equal ranks never replace each other.
    pub fn rank(&self) -> u8 {
        match self {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Failed { .. } => 3,
            DeliveryStatus::Read => 4,
        }
    }

    /// Whether moving from `self` to `next` is a step forward.
    pub fn can_become(&self, next: &DeliveryStatus) -> bool {
        next.rank() > self.rank()
    }

    pub fn name(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed { .. } => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    /// The store's sequence number: the order of messages within a conversation.
    pub seq: i64,
    pub conversation: ConversationId,
    pub channel: ChannelId,
    pub contact: ContactId,
    pub platform_id: Option<PlatformMessageId>,
    pub direction: Direction,
    pub author: Author,
    pub content: Content,
    pub reply_to: Option<PlatformMessageId>,
    pub created_at: Millis,
    pub status: DeliveryStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_moves_forward() {
        let failed = DeliveryStatus::Failed {
            code: None,
            reason: "x".into(),
        };
        assert!(DeliveryStatus::Pending.can_become(&DeliveryStatus::Sent));
        assert!(DeliveryStatus::Sent.can_become(&DeliveryStatus::Read));
        assert!(!DeliveryStatus::Read.can_become(&DeliveryStatus::Delivered));
        assert!(!DeliveryStatus::Sent.can_become(&DeliveryStatus::Sent));
        assert!(DeliveryStatus::Delivered.can_become(&failed));
        assert!(!DeliveryStatus::Read.can_become(&failed));
        assert!(failed.can_become(&DeliveryStatus::Read));
    }
}
