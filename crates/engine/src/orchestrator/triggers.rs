//! Handoff triggers that need no LLM, tried before any other responder: the customer asking
//! for a person (configured phrases per language), and a bot that has answered too many
//! turns in a row without a person involved.

use async_trait::async_trait;

use super::responder::{DecidedBy, Decision, Responder, ResponderError, Turn};
use crate::handoff::keywords::Keywords;
use concierge_domain::Direction;
use concierge_store::NewHandoff;

/// The handoff reason when the customer asks for a person.
pub const ASKED_FOR_A_PERSON: &str = "the customer asked for a person";

pub struct TriggerResponder {
    keywords: Keywords,
    /// 0: no limit.
    max_bot_turns: usize,
}

impl TriggerResponder {
    pub fn new(keywords: Keywords, max_bot_turns: usize) -> Self {
        Self {
            keywords,
            max_bot_turns,
        }
    }

    fn handoff(reason: String, priority: &str) -> Decision {
        let mut decision = Decision::new(DecidedBy::HandoffTrigger, Vec::new());
        let id = uuid::Uuid::now_v7().simple().to_string();
        decision.thread = Some(concierge_domain::ThreadState::Queued {
            handoff: id.clone(),
        });
        decision.handoff = Some(NewHandoff {
            id,
            reason,
            priority: Some(priority.to_string()),
            requested_by: "gateway".to_string(),
            ..NewHandoff::default()
        });
        decision
    }

    /// Customer turns since a person last had the thread (or since it began).
    async fn bot_turns(&self, turn: &Turn<'_>) -> Result<usize, ResponderError> {
        let conversation = &turn.entry.conversation;
        let since = turn
            .store
            .handoffs(conversation)
            .await?
            .iter()
            .map(|h| h.closed_at.unwrap_or(h.created_at))
            .max()
            .unwrap_or(0);
        let recent = turn
            .store
            .recent_messages(
                conversation,
                self.max_bot_turns.saturating_mul(4).saturating_add(8),
            )
            .await?;
        // One turn's replies (parts of a long answer, text then choices) are written together,
        // with one timestamp: count the bot's answering turns, plus this one.
        let mut turns: Vec<i64> = recent
            .iter()
            .filter(|m| m.created_at > since && m.direction == Direction::Outbound)
            .filter(|m| matches!(m.author, concierge_domain::Author::Agent(_)))
            .map(|m| m.created_at)
            .collect();
        turns.dedup();
        Ok(turns.len() + 1)
    }
}

#[async_trait]
impl Responder for TriggerResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        if let Some(text) = turn.text()
            && let Some(phrase) = self.keywords.find(&text)
        {
            tracing::debug!(phrase, "the customer asked for a person");
            return Ok(Some(Self::handoff(
                ASKED_FOR_A_PERSON.to_string(),
                "normal",
            )));
        }
        // A merchant's event is no customer turn that went unresolved.
        if self.max_bot_turns > 0 && !turn.is_merchant_event() {
            let turns = self.bot_turns(turn).await?;
            if turns > self.max_bot_turns {
                return Ok(Some(Self::handoff(
                    format!("no resolution after {} bot turns", self.max_bot_turns),
                    "normal",
                )));
            }
        }
        Ok(None)
    }
}
