//! The responder chain: each step may answer a turn or pass it on: the handoff triggers,
//! the FAQ tier, the agents, and last the holding reply, which hands the thread to a person.

use std::collections::BTreeMap;

use async_trait::async_trait;

use concierge_domain::{Author, Content, Direction, InboundMessage, Millis, ThreadState};
use concierge_faq::{FaqIndex, Lang, detect_language};
use concierge_store::{InboxEntry, NewHandoff, NewNote, SharedStore, StoreError, TurnUsage};

/// The customer's messages to answer (one, or a burst written in quick succession), with
/// what a responder may need to know.
pub struct Turn<'a> {
    /// The last message's inbox entry: the one the turn answers.
    pub entry: &'a InboxEntry,
    /// The last message.
    pub message: &'a InboundMessage,
    /// Every message of the burst, oldest first, the last one included.
    pub messages: &'a [&'a InboundMessage],
    /// The inbox entries of the burst, oldest first, `entry` last.
    pub burst: &'a [InboxEntry],
    pub thread: &'a ThreadState,
    pub store: &'a SharedStore,
    pub now: Millis,
}

impl Turn<'_> {
    /// The text of the turn: the burst's texts, one per line.
    pub fn text(&self) -> Option<String> {
        let texts: Vec<&str> = self
            .messages
            .iter()
            .filter_map(|m| m.content.plain_text())
            .collect();
        (!texts.is_empty()).then(|| texts.join("\n"))
    }

    /// Whether the turn answers an event the merchant's systems posted, not the customer.
    pub fn is_merchant_event(&self) -> bool {
        matches!(self.message.content, Content::Event { .. })
    }
}

/// Which step of the chain decided a turn: what the lanes act on (no brief from a failed
/// LLM, no brief for a suppressed holding reply) and the `responder` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    Faq,
    Holding,
    /// The holding reply was already sent to this conversation: nothing said again.
    HoldingRepeatSuppressed,
    Agent,
    AgentFailed,
    AgentHandoff,
    /// The conversation spent its token budget.
    TokenBudget,
    /// A budget of new conversations or LLM calls a minute was spent.
    Budget,
    HandoffTrigger,
    /// A stop or start keyword: the consent ledger recorded it, the customer was told.
    Consent,
    /// A cart button: the kept cart changed, the customer was shown it.
    Cart,
    /// A responder of the embedder's own (tests, a custom chain), by its name.
    Other(&'static str),
}

impl DecidedBy {
    pub fn name(self) -> &'static str {
        match self {
            DecidedBy::Faq => "faq",
            DecidedBy::Holding => "holding",
            DecidedBy::HoldingRepeatSuppressed => "holding_repeat_suppressed",
            DecidedBy::Agent => "agent",
            DecidedBy::AgentFailed => "agent_failed",
            DecidedBy::AgentHandoff => "agent_handoff",
            DecidedBy::TokenBudget => "token_budget",
            DecidedBy::Budget => "budget",
            DecidedBy::HandoffTrigger => "handoff_trigger",
            DecidedBy::Consent => "consent",
            DecidedBy::Cart => "cart",
            DecidedBy::Other(name) => name,
        }
    }

    /// The LLM could not be used for this turn: the handoff gets no LLM brief.
    pub fn llm_down(self) -> bool {
        matches!(self, DecidedBy::AgentFailed | DecidedBy::TokenBudget)
    }
}

/// What a responder decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Which step decided (metrics, logs, and what the lanes do after).
    pub by: DecidedBy,
    pub replies: Vec<(Author, Content)>,
    pub thread: Option<ThreadState>,
    /// Quote the customer's message in the first reply (where the channel can), for an
    /// answer that would otherwise be ambiguous after later messages.
    pub quote: bool,
    /// Internal notes to keep with the conversation.
    pub notes: Vec<NewNote>,
    /// A request for a human; `thread` then says `Queued` with the same id.
    pub handoff: Option<NewHandoff>,
    pub usage: Option<TurnUsage>,
}

impl Decision {
    pub fn new(by: DecidedBy, replies: Vec<(Author, Content)>) -> Self {
        Self {
            by,
            replies,
            thread: None,
            quote: false,
            notes: Vec::new(),
            handoff: None,
            usage: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something the turn needs is not there yet; the turn is tried again shortly.
    #[error("not yet: {0}")]
    NotYet(&'static str),
}

#[async_trait]
pub trait Responder: Send + Sync {
    /// Answers the turn, or returns `None` to let the next responder try.
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError>;
}

/// Tries each responder in order; the first decision wins.
pub struct ResponderChain {
    steps: Vec<Box<dyn Responder>>,
}

impl ResponderChain {
    pub fn new(steps: Vec<Box<dyn Responder>>) -> Self {
        Self { steps }
    }
}

#[async_trait]
impl Responder for ResponderChain {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        for step in &self.steps {
            if let Some(decision) = step.respond(turn).await? {
                return Ok(Some(decision));
            }
        }
        Ok(None)
    }
}

/// Answers from the merchant's FAQ when a question matches with enough confidence.
pub struct FaqResponder {
    index: FaqIndex,
    threshold: f64,
}

impl FaqResponder {
    pub fn new(index: FaqIndex, threshold: f64) -> Self {
        Self { index, threshold }
    }
}

#[async_trait]
impl Responder for FaqResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        // A button the customer pressed answers the question that offered it (a delivery
        // choice, "Checkout"): the agents who asked take it, not the FAQ, whatever its words.
        if matches!(turn.message.content, Content::Choice(_)) {
            return Ok(None);
        }
        let Some(text) = turn.text() else {
            return Ok(None);
        };
        let Some(found) = self.index.best_match(&text) else {
            return Ok(None);
        };
        tracing::debug!(
            entry = found.index,
            confidence = found.confidence,
            threshold = self.threshold,
            "faq match"
        );
        if found.confidence < self.threshold {
            return Ok(None);
        }
        Ok(Some(Decision::new(
            DecidedBy::Faq,
            vec![(
                Author::Agent("faq".to_string()),
                Content::text(found.entry.answer.clone()),
            )],
        )))
    }
}

/// The last resort: a person will answer. The thread goes to the handoff queue (with no LLM
/// configured, Concierge is then a shared team inbox) and the customer is told so in their
/// language (the desk adds the expected wait). A customer who keeps writing to a thread the
/// queue holds hears nothing more from the bot; one whose thread is back with the bot hears
/// it again, but not twice within `repeat_after`.
pub struct HoldingResponder {
    messages: BTreeMap<String, String>,
    repeat_after_ms: i64,
}

/// The handoff reason when nothing automated could answer.
pub const NO_AUTOMATED_ANSWER: &str = "no automated answer";

impl HoldingResponder {
    pub fn new(messages: BTreeMap<String, String>, repeat_after_secs: u64) -> Self {
        Self {
            messages,
            repeat_after_ms: i64::try_from(repeat_after_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }

    /// The holding message in the language of `text`.
    pub fn message_for(&self, text: Option<&str>) -> String {
        let lang = match text.and_then(detect_language) {
            Some(Lang::Fr) => "fr",
            _ => "en",
        };
        self.messages
            .get(lang)
            .or_else(|| self.messages.get("en"))
            .or_else(|| self.messages.values().next())
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl Responder for HoldingResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        if turn.is_merchant_event() {
            // Without agents to tell it, an event stays in the thread for the team: the
            // customer is not told a person is coming because a payment came in.
            return Ok(None);
        }
        let recent = turn
            .store
            .recent_messages(&turn.entry.conversation, 20)
            .await?;
        let last_outbound = recent
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Outbound);
        let said_recently = last_outbound.is_some_and(|m| {
            m.author == Author::System && turn.now - m.created_at < self.repeat_after_ms
        });
        let mut decision = if said_recently {
            Decision::new(DecidedBy::HoldingRepeatSuppressed, Vec::new())
        } else {
            Decision::new(
                DecidedBy::Holding,
                vec![(
                    Author::System,
                    Content::text(self.message_for(turn.text().as_deref())),
                )],
            )
        };
        let id = uuid::Uuid::now_v7().simple().to_string();
        decision.thread = Some(ThreadState::Queued {
            handoff: id.clone(),
        });
        decision.handoff = Some(NewHandoff {
            id,
            reason: NO_AUTOMATED_ANSWER.to_string(),
            priority: Some("normal".to_string()),
            requested_by: "gateway".to_string(),
            ..NewHandoff::default()
        });
        Ok(Some(decision))
    }
}
