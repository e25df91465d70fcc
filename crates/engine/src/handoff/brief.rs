//! The handoff brief: what a concierge needs to pick a thread up without scrolling. The
//! structured part (reason, the last messages, what the agents tried, the facts their tools
//! returned) is always there; with an LLM, a summary, the customer's intent and mood, and
//! suggested first replies are added.

use serde::{Deserialize, Serialize};

use concierge_agents::{AgentRuntime, Redactor};
use concierge_domain::{ConversationId, Direction, clip_text};
use concierge_store::{Conversations, Journal, NewNote, StoreError, TurnUsage};

/// How many of the latest messages the brief quotes.
const LAST_MESSAGES: usize = 6;
/// How many messages the LLM reads for the brief.
const TRANSCRIPT_MESSAGES: usize = 30;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Brief {
    pub reason: String,
    pub summary: Option<String>,
    pub intent: Option<String>,
    pub mood: Option<String>,
    /// What the agents did: tool calls and questions to other agents, with their outcome.
    pub tried: Vec<String>,
    /// What the tools answered (orders, stock), clipped.
    pub facts: Vec<String>,
    pub last_messages: Vec<String>,
    pub suggested_replies: Vec<String>,
    /// `llm` when the narrative part was written, `gateway` for the structured part alone.
    pub written_by: String,
}

impl Brief {
    /// The brief from the handoff's reason and this turn's notes alone (when the history
    /// cannot be read).
    pub fn structured(reason: &str, notes: &[NewNote]) -> Brief {
        let (tried, facts) = tried_and_facts(notes);
        Brief {
            reason: reason.to_string(),
            tried,
            facts,
            written_by: "gateway".to_string(),
            ..Brief::default()
        }
    }
}

/// Splits the agents' notes into what was tried and the facts found.
fn tried_and_facts(notes: &[NewNote]) -> (Vec<String>, Vec<String>) {
    let (mut tried, mut facts) = (Vec::new(), Vec::new());
    for note in notes {
        let body = note.body.as_str();
        if let Some(call) = body.strip_prefix("called ") {
            // `called TOOL ARGS → ok: CONTENT`
            let (what, rest) = call.split_once(" → ").unwrap_or((call, ""));
            let (outcome, content) = rest.split_once(": ").unwrap_or((rest, ""));
            tried.push(format!("{} → {outcome}", clip_text(what, 160)));
            if outcome == "ok" && !content.is_empty() {
                facts.push(clip_text(content, 400));
            }
        } else if body.starts_with("asked ") || body.starts_with("handed ") {
            tried.push(format!("{}: {}", note.author, clip_text(body, 200)));
        } else if note.author == "gateway" {
            tried.push(clip_text(body, 200));
        }
    }
    (tried, facts)
}

/// Writes the brief of a handoff decided now; `notes` are this turn's (earlier turns' notes
/// are read from the store).
pub async fn write(
    conversations: &dyn Conversations,
    journal: &dyn Journal,
    llm: Option<&AgentRuntime>,
    redact_pii: bool,
    conversation: &ConversationId,
    reason: &str,
    notes: &[NewNote],
) -> Result<(Brief, TurnUsage), StoreError> {
    let recent = conversations
        .recent_messages(conversation, TRANSCRIPT_MESSAGES)
        .await?;
    let mut all_notes: Vec<NewNote> = journal
        .notes(conversation)
        .await?
        .into_iter()
        .rev()
        .take(40)
        .rev()
        .map(|n| NewNote {
            author: n.author,
            body: n.body,
        })
        .collect();
    all_notes.extend(notes.iter().cloned());
    let (tried, facts) = tried_and_facts(&all_notes);
    let lines: Vec<String> = recent
        .iter()
        .filter(|m| {
            m.direction == Direction::Inbound
                || !matches!(m.status, concierge_domain::DeliveryStatus::Failed { .. })
        })
        .map(|m| {
            format!(
                "{}: {}",
                m.author.speaker(),
                clip_text(&m.content.describe(), 300)
            )
        })
        .collect();
    let mut brief = Brief {
        reason: reason.to_string(),
        tried,
        facts,
        last_messages: lines
            .iter()
            .rev()
            .take(LAST_MESSAGES)
            .rev()
            .cloned()
            .collect(),
        written_by: "gateway".to_string(),
        ..Brief::default()
    };
    let mut usage = TurnUsage::default();
    if let Some(runtime) = llm {
        // With `redact_pii`, the LLM reads masked text; the brief, for concierges, is restored.
        let mut redactor = Redactor::new();
        let mut mask = |text: String| {
            if redact_pii {
                redactor.mask(&text)
            } else {
                text
            }
        };
        let transcript = mask(lines.join("\n"));
        let tried = mask(brief.tried.join("\n"));
        let restore = |text: String| {
            if redact_pii {
                redactor.restore(&text)
            } else {
                text
            }
        };
        match runtime
            .brief(conversation, reason, &transcript, &tried)
            .await
        {
            Ok((mut draft, input, output)) => {
                draft.summary = draft.summary.map(restore);
                draft.intent = draft.intent.map(restore);
                draft.suggested_replies =
                    draft.suggested_replies.into_iter().map(restore).collect();
                usage.add(TurnUsage {
                    input_tokens: input,
                    output_tokens: output,
                    llm_calls: 1,
                });
                brief.summary = draft.summary.filter(|s| !s.trim().is_empty());
                brief.intent = draft.intent.filter(|s| !s.trim().is_empty());
                brief.mood = draft.mood.filter(|s| !s.trim().is_empty());
                brief.suggested_replies = draft.suggested_replies;
                brief.written_by = "llm".to_string();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the handoff brief with the LLM; keeping its structured part");
            }
        }
    }
    Ok((brief, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_notes_become_what_was_tried_and_facts() {
        let notes = vec![
            NewNote {
                author: "orders".into(),
                body: "called order_status {\"order_id\":\"ML-10421\"} → ok: {\"status\":\"shipped\"}".into(),
            },
            NewNote {
                author: "orders".into(),
                body: "called start_return {\"order_id\":\"ML-1\"} → error: {\"error\":\"no such order\"}".into(),
            },
            NewNote {
                author: "front_desk".into(),
                body: "asked orders: where is ML-10421?".into(),
            },
        ];
        let (tried, facts) = tried_and_facts(&notes);
        assert_eq!(tried.len(), 3);
        assert!(tried[0].starts_with("order_status") && tried[0].ends_with("→ ok"));
        assert!(tried[1].ends_with("→ error"));
        assert_eq!(facts, vec!["{\"status\":\"shipped\"}".to_string()]);
    }
}
