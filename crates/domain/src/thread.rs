//! Who holds a conversation: the bot, the handoff queue, a human concierge, or nobody.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ThreadState {
    /// An agent answers (the FAQ tier when no agent is configured).
    Bot {
        agent: String,
    },
    /// Waiting in the handoff queue; no bot reply may leave.
    Queued {
        handoff: String,
    },
    /// Owned by a human concierge; no bot reply may leave.
    Human {
        concierge: String,
    },
    Closed,
}

impl ThreadState {
    /// The state of a conversation the gateway has never seen.
    pub fn initial() -> Self {
        ThreadState::Bot {
            agent: "front_desk".to_string(),
        }
    }

    /// Whether an automated reply may leave for this thread.
    pub fn bot_may_reply(&self) -> bool {
        matches!(self, ThreadState::Bot { .. } | ThreadState::Closed)
    }

    /// A customer writing to a closed thread reopens it with the bot.
    pub fn on_customer_message(self) -> Self {
        match self {
            ThreadState::Closed => ThreadState::initial(),
            other => other,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ThreadState::Bot { .. } => "bot",
            ThreadState::Queued { .. } => "queued",
            ThreadState::Human { .. } => "human",
            ThreadState::Closed => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans_and_queue_silence_the_bot() {
        assert!(ThreadState::initial().bot_may_reply());
        assert!(
            !ThreadState::Queued {
                handoff: "h".into()
            }
            .bot_may_reply()
        );
        assert!(
            !ThreadState::Human {
                concierge: "ana".into()
            }
            .bot_may_reply()
        );
        assert_eq!(
            ThreadState::Closed.on_customer_message(),
            ThreadState::initial()
        );
    }
}
