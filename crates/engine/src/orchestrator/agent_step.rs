//! The agents' step of the responder chain: builds the turn's context (history, rolling
//! summary, who the customer is, what the channel can show), runs the entry agent, and turns
//! its outcome into a decision. When the agents cannot answer, the customer gets the holding
//! reply and the thread goes to a human with the reason "agent unavailable"; when the
//! conversation has spent its token budget, the same happens without any LLM call, with the
//! reason "token budget"; when the model asked for more tool calls than a turn allows, the
//! reason is "tool call limit".
//! A turn past a budget of new conversations or LLM calls a minute
//! (`super::budgets`) gets the holding reply without any LLM call, and stays with the bot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::budgets::{Budgets, NEW_CONVERSATIONS_PER_IP};
use super::lanes::ChannelHints;
use super::media_out::MediaSender;
use super::responder::{DecidedBy, Decision, HoldingResponder, Responder, ResponderError, Turn};
use concierge_agents::{
    AgentFailure, AgentReply, AgentRuntime, ChannelContext, CustomerContext, Identity, LlmMedia,
    LlmMessage, PromptContext, Redactor, TurnInput,
};
use concierge_domain::{
    Author, Choice, Content, Direction, KeptMedia, MediaKind, Message, MessageId, ThreadState,
    clip_text,
};
use concierge_media::{MediaStore, Variant};
use concierge_store::{CommerceState, NewHandoff, NewNote, OpenFlow, Summary, TurnUsage};

/// How long after a release its note is given to the agents.
const RELEASE_NOTE_TTL_MS: i64 = 24 * 3600 * 1000;

/// The handoff reason when the agents fail.
pub const AGENT_UNAVAILABLE: &str = "agent unavailable";

/// The handoff reason when the model asked for more tool calls than a turn allows.
pub const TOOL_CALL_LIMIT: &str = "tool call limit";

/// The handoff reason when the conversation has spent its token budget.
pub const TOKEN_BUDGET: &str = "token budget";

/// The window of `conversation_token_budget`: a rolling day.
const BUDGET_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The deployment's settings the agent step reads.
pub struct AgentSettings {
    pub merchant: String,
    pub business_hours: String,
    pub timezone: jiff::tz::TimeZone,
    /// How many of the latest messages the agents read.
    pub history_messages: usize,
    pub redact_pii: bool,
    /// See [`concierge_agents::AgentsConfig::conversation_token_budget`]; 0: no limit.
    pub conversation_token_budget: u64,
}

pub struct AgentResponder {
    runtime: Arc<AgentRuntime>,
    settings: AgentSettings,
    hints: Arc<dyn ChannelHints>,
    holding: Arc<HoldingResponder>,
    budgets: Arc<Budgets>,
    /// Where customers' images are kept, when the model is to see them.
    media: Option<MediaStore>,
    /// Whether the provider reads PDFs as files (OpenAI's and Anthropic's APIs do).
    files: bool,
    /// Fetches and keeps what agents send with `send_media`.
    sender: Option<MediaSender>,
}

/// The most images one LLM call carries (the newest of the window).
const IMAGES_PER_TURN: usize = 4;
/// The most PDFs one LLM call carries, and the largest one sent.
const FILES_PER_TURN: usize = 2;
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

impl AgentResponder {
    pub fn new(
        runtime: Arc<AgentRuntime>,
        settings: AgentSettings,
        hints: Arc<dyn ChannelHints>,
        holding: Arc<HoldingResponder>,
    ) -> Self {
        Self {
            runtime,
            settings,
            hints,
            holding,
            budgets: Arc::new(Budgets::unlimited()),
            media: None,
            files: false,
            sender: None,
        }
    }

    /// Sends customers' PDFs to the model as files too (a provider that reads them).
    pub fn with_files(mut self) -> Self {
        self.files = true;
        self
    }

    /// Sends what agents show with `send_media` (without it, such a reply is its caption).
    pub fn with_sender(mut self, sender: MediaSender) -> Self {
        self.sender = Some(sender);
        self
    }

    /// Shows customers' kept images to the model (`[media] images_to_llm`).
    pub fn with_images(mut self, media: MediaStore) -> Self {
        self.media = Some(media);
        self
    }

    /// The budgets of new conversations and LLM calls a minute (none by default).
    pub fn with_budgets(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    fn now(&self) -> String {
        let now = jiff::Timestamp::now().to_zoned(self.settings.timezone.clone());
        now.strftime("%A %-d %B %Y, %H:%M (%Z)").to_string()
    }

    /// The messages the agents read, oldest first, ending with the turn's last message; the
    /// ones that fall out of the window are folded into the rolling summary first.
    async fn history(
        &self,
        turn: &Turn<'_>,
        forms: &CommerceState,
        redactor: &mut Redactor,
        usage: &mut TurnUsage,
    ) -> Result<(Vec<LlmMessage>, Option<String>), ResponderError> {
        let conversation = &turn.entry.conversation;
        let window = self.settings.history_messages.max(1);
        let summary = turn.store.summary(conversation).await?;
        let upto = summary.as_ref().map_or(0, |s| s.upto_seq);
        let limit = window * 2 + 16 + turn.burst.len();
        // Read up to the turn's last message, not the conversation's: with customers'
        // messages waiting behind this turn (a backlog after a restart, a flood), the latest
        // messages are theirs, and the turn's own could fall out of what is read.
        let last_own = match turn.entry.message {
            Some(id) => turn.store.message(id).await?,
            None => None,
        };
        let read = match &last_own {
            Some(last) => {
                turn.store
                    .messages_upto(conversation, last.seq, limit)
                    .await?
            }
            None => turn.store.recent_messages(conversation, limit).await?,
        };
        let mut recent: Vec<Message> = read.into_iter().filter(|m| m.seq > upto).collect();
        // Customer messages that came after this turn's own belong to the next turn; the
        // turn's own messages go last, after any reply sent while they were being written.
        let own: Vec<_> = turn.burst.iter().filter_map(|e| e.message).collect();
        if let Some(at) = turn
            .entry
            .message
            .and_then(|id| recent.iter().position(|m| m.id == id))
        {
            let mut index = 0;
            recent.retain(|m| {
                index += 1;
                index <= at + 1 || m.direction == Direction::Outbound
            });
        }
        let (mut recent, burst): (Vec<Message>, Vec<Message>) =
            recent.into_iter().partition(|m| !own.contains(&m.id));
        recent.extend(burst);
        let mut summary_text = summary.map(|s| s.text);
        // Folded down to half the window, not to the window itself: the next fold comes a
        // few turns later, instead of one summary call every turn once a conversation is
        // longer than the window. The turn's own messages always stay, however many (a burst
        // the rate limit gathered is bounded by the lanes).
        let keep = window.div_ceil(2).max(own.len());
        if recent.len() > window && recent.len() > keep {
            let fold: Vec<Message> = recent.drain(..recent.len() - keep).collect();
            let transcript: Vec<String> = fold
                .iter()
                .filter(|m| !matches!(m.content, Content::Deleted))
                .map(|m| {
                    format!(
                        "{}: {}",
                        m.author.speaker(),
                        self.mask(redactor, &m.content.describe())
                    )
                })
                .collect();
            match self
                .runtime
                .summarize(
                    conversation,
                    summary_text.as_deref(),
                    &transcript.join("\n"),
                )
                .await
            {
                Ok((text, input, output)) => {
                    usage.add(TurnUsage {
                        input_tokens: input,
                        output_tokens: output,
                        llm_calls: 1,
                    });
                    // What the summary covers, by `seq`: never past this turn's own last
                    // message. Replies written after it (a backlog's earlier turns) are in
                    // the fold, but customers' messages waiting behind this turn are not:
                    // a summary said to cover them would hide them from their own turns.
                    let own_last = last_own.as_ref().map(|m| m.seq);
                    let upto = fold
                        .iter()
                        .map(|m| m.seq)
                        .filter(|seq| own_last.is_none_or(|own| *seq < own))
                        .max();
                    if let Some(upto_seq) = upto {
                        turn.store
                            .set_summary(
                                conversation,
                                Summary {
                                    text: text.clone(),
                                    upto_seq,
                                },
                            )
                            .await?;
                    }
                    summary_text = Some(text);
                }
                Err(e) => {
                    // Not fatal: the agents answer from the window alone.
                    tracing::warn!(error = %e, "cannot update the conversation summary");
                }
            }
        }
        // The turn's own messages as the lane has them: their media fetched for this turn
        // (or still downloading), which the stored copy may not say yet.
        for m in recent.iter_mut() {
            if let Some(content) = turn.burst.iter().find_map(|e| match &e.event.kind {
                concierge_domain::EventKind::Message(own) if e.message == Some(m.id) => {
                    Some(&own.content)
                }
                _ => None,
            }) {
                m.content = content.clone();
            }
        }
        let mut pictures = self.pictures(&recent).await;
        let mut messages: Vec<LlmMessage> = Vec::new();
        // What the customer deleted is not read back to the model.
        for m in recent
            .iter()
            .filter(|m| !matches!(m.content, Content::Deleted))
        {
            let text = describe(m, forms, turn.now);
            // A merchant's event is told in the customer's turn: it is what the agents answer.
            let customer_side =
                m.author == Author::Customer || matches!(m.content, Content::Event { .. });
            match &m.author {
                _ if customer_side => {
                    let text = self.mask(redactor, &text);
                    let picture = pictures.remove(&m.id);
                    let apart = match messages.last_mut() {
                        Some(last) => last.join_customer(text, picture),
                        None => Some(LlmMessage::customer(text, picture)),
                    };
                    messages.extend(apart);
                }
                author => {
                    let text = match author {
                        Author::Concierge(name) => format!("({name}, from our team) {text}"),
                        _ => text,
                    };
                    let text = self.mask(redactor, &text);
                    match messages.last_mut() {
                        Some(LlmMessage::Assistant {
                            text: Some(previous),
                            tool_calls,
                        }) if tool_calls.is_empty() => {
                            previous.push('\n');
                            previous.push_str(&text);
                        }
                        _ => messages.push(LlmMessage::Assistant {
                            text: Some(text),
                            tool_calls: Vec::new(),
                        }),
                    }
                }
            }
        }
        // A conversation opens with the customer for every provider: what we wrote first (a
        // notification the merchant's systems sent) is told to the agents beside it.
        let mut opening = Vec::new();
        while let Some(LlmMessage::Assistant { text, .. }) = messages.first() {
            opening.extend(text.clone());
            messages.remove(0);
        }
        if !opening.is_empty() {
            let told = format!(
                "Before the customer wrote, we wrote to them first:\n{}",
                opening.join("\n")
            );
            summary_text = Some(match summary_text {
                Some(summary) => format!("{summary}\n\n{told}"),
                None => told,
            });
        }
        if messages.is_empty()
            && let Some(text) = turn.text()
        {
            messages.push(LlmMessage::User(self.mask(redactor, &text)));
        }
        Ok((messages, summary_text))
    }

    /// What the model sees of the customer's media, by message: the newest kept images in
    /// the window (at most [`IMAGES_PER_TURN`]), fitted for the LLM, and where the provider
    /// reads files, the newest PDFs (at most [`FILES_PER_TURN`], each within
    /// [`MAX_FILE_BYTES`]). Older ones, and any that cannot be read now, reach it as their
    /// description only.
    async fn pictures(&self, recent: &[Message]) -> HashMap<MessageId, LlmMedia> {
        let mut pictures = HashMap::new();
        let Some(store) = &self.media else {
            return pictures;
        };
        let customers = || {
            recent
                .iter()
                .rev()
                .filter(|m| m.author == Author::Customer)
                .filter_map(|m| match &m.content {
                    Content::Media {
                        kind,
                        caption,
                        kept: Some(KeptMedia::Stored(stored)),
                        ..
                    } => Some((m.id, *kind, caption.as_deref(), stored)),
                    _ => None,
                })
        };
        let images = customers()
            .filter(|(_, kind, _, stored)| {
                matches!(kind, MediaKind::Image | MediaKind::Sticker) && stored.width.is_some()
            })
            .take(IMAGES_PER_TURN)
            .map(|(id, _, _, stored)| (id, stored, Variant::ForLlm, None));
        let files = customers()
            .filter(|(_, _, _, stored)| {
                self.files && stored.mime == "application/pdf" && stored.bytes <= MAX_FILE_BYTES
            })
            .take(FILES_PER_TURN)
            .map(|(id, _, caption, stored)| {
                let name = caption
                    .filter(|c| c.to_ascii_lowercase().ends_with(".pdf"))
                    .unwrap_or("document.pdf");
                (id, stored, Variant::Original, Some(name.to_string()))
            });
        let wanted: Vec<_> = images.chain(files).collect();
        for (id, stored, variant, name) in wanted {
            match store.read(&stored.id, variant).await {
                Ok(Some((bytes, mime))) => {
                    pictures.insert(id, LlmMedia { mime, bytes, name });
                }
                Ok(None) => tracing::warn!(media = %stored.id, "kept media is missing"),
                Err(e) => tracing::warn!(error = %e, "cannot read kept media for the model"),
            }
        }
        pictures
    }

    /// Masks personal data when the deployment asks for it.
    fn mask(&self, redactor: &mut Redactor, text: &str) -> String {
        if self.settings.redact_pii {
            redactor.mask(text)
        } else {
            text.to_string()
        }
    }

    fn holding_text(&self, turn: &Turn<'_>) -> String {
        self.holding.message_for(turn.text().as_deref())
    }

    /// The decision for a conversation that has spent its token budget over the last day:
    /// a person takes it, and the LLM is not called. `None` while there is budget left.
    async fn over_budget(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let budget = self.settings.conversation_token_budget;
        if budget == 0 {
            return Ok(None);
        }
        let spent = turn
            .store
            .usage_since(&turn.entry.conversation, turn.now - BUDGET_WINDOW_MS)
            .await?
            .total_tokens();
        if spent < budget {
            return Ok(None);
        }
        self.runtime.metrics.llm_budget_exhausted();
        tracing::info!(
            spent,
            budget,
            "the conversation spent its token budget for the day; handing it to a person"
        );
        let handoff = NewHandoff {
            id: handoff_id(),
            reason: TOKEN_BUDGET.to_string(),
            priority: Some("normal".to_string()),
            team: None,
            requested_by: "gateway".to_string(),
            ..NewHandoff::default()
        };
        let mut decision = Decision::new(
            DecidedBy::TokenBudget,
            vec![(Author::System, Content::text(self.holding_text(turn)))],
        );
        decision.thread = Some(ThreadState::Queued {
            handoff: handoff.id.clone(),
        });
        decision.handoff = Some(handoff);
        Ok(Some(decision))
    }
}

impl AgentResponder {
    /// The decision for a turn past a budget: the holding reply, no LLM call, the thread
    /// left with the bot (a later message within budget is answered). `None` when the turn
    /// may go to the agents; it then holds one LLM call of the budget.
    async fn past_a_budget(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let channel = &turn.entry.event.channel;
        let admitted = if turn.message.over_budget.is_some() {
            Err(NEW_CONVERSATIONS_PER_IP)
        } else {
            let new = self.budgets.counts_new_conversations(channel)
                && turn.store.usage(&turn.entry.conversation).await?.llm_calls == 0;
            self.budgets.admit(channel, new, Instant::now())
        };
        let Err(budget) = admitted else {
            return Ok(None);
        };
        self.runtime
            .metrics
            .budget_exceeded(budget, channel.as_str());
        tracing::info!(
            budget,
            "a budget a minute is spent: the holding reply, no LLM call"
        );
        Ok(Some(Decision::new(
            DecidedBy::Budget,
            vec![(Author::System, Content::text(self.holding_text(turn)))],
        )))
    }
}

/// How long a form's token is good for.
const FORM_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// A message as the agents read it; a form's answers say which form they answer, or that
/// they could not be matched to one we sent (an unknown or expired token).
fn describe(m: &Message, forms: &CommerceState, now: i64) -> String {
    let Content::FormReply { flow_token, .. } = &m.content else {
        return m.content.describe();
    };
    let answers = m.content.describe();
    let sent = flow_token
        .as_deref()
        .and_then(|token| forms.flows.iter().find(|f| f.token == token));
    match sent {
        Some(flow) if now - flow.sent_at <= FORM_TTL_MS => {
            format!("{answers}\n[the answers to our form `{}`]", flow.flow)
        }
        _ => format!(
            "{answers}\n[these answers could not be matched to a form we sent in this conversation (an unknown or expired form): do not rely on them for anything that matters; ask again if needed]"
        ),
    }
}

fn handoff_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[async_trait]
impl Responder for AgentResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        if let Some(decision) = self.over_budget(turn).await? {
            return Ok(Some(decision));
        }
        if let Some(decision) = self.past_a_budget(turn).await? {
            return Ok(Some(decision));
        }
        let event = &turn.entry.event;
        let mut usage = TurnUsage::default();
        let mut redactor = Redactor::new();
        let redact = self.settings.redact_pii;
        // The cart and the forms sent, read once for the turn.
        let commerce = turn.store.commerce(&turn.entry.conversation).await?;
        let (history, summary) = self
            .history(turn, &commerce, &mut redactor, &mut usage)
            .await?;
        let profile = self.hints.profile(&event.channel);
        let phone = self.hints.phone(event);
        let context = PromptContext {
            merchant: self.settings.merchant.clone(),
            agent: String::new(),
            now: self.now(),
            business_hours: self.settings.business_hours.clone(),
            customer: CustomerContext::new(turn.message.display_name.as_deref(), phone.is_some()),
            channel: ChannelContext {
                kind: profile.kind.clone(),
                buttons: profile.buttons,
                list_rows: profile.list_rows,
                media: profile.media,
                max_text_chars: profile.max_text_chars,
            },
        };
        // A concierge who handed the thread back left a note for the agents.
        let team_note = turn
            .store
            .handoffs(&turn.entry.conversation)
            .await?
            .into_iter()
            .next_back()
            .filter(|h| h.outcome.as_deref() == Some("released"))
            .filter(|h| {
                h.closed_at
                    .is_some_and(|at| turn.now - at < RELEASE_NOTE_TTL_MS)
            })
            .and_then(|h| h.release_note);
        let team_note = team_note.map(|n| self.mask(&mut redactor, &n));
        let input = TurnInput {
            team_note,
            identity: Identity {
                channel: event.channel.clone(),
                contact: event.contact.clone(),
                conversation: turn.entry.conversation.clone(),
                phone,
            },
            context,
            history,
            summary,
            redactor,
            redact_pii: redact,
            cart: commerce.cart.clone(),
        };
        let result = self.runtime.run_turn(&input).await;
        usage.add(TurnUsage {
            input_tokens: result.input_tokens,
            output_tokens: result.output_tokens,
            llm_calls: result.llm_calls,
        });
        self.budgets.spent(usage.llm_calls, Instant::now());
        if result.cart.is_some() || !result.flows.is_empty() {
            // Saved before the turn completes: the cart set, not added to, so a turn worked
            // again after a crash sets the same quantities; a form's token kept before the
            // form can reach the customer.
            let mut state = commerce;
            if let Some(cart) = &result.cart {
                state.cart = cart.clone();
            }
            for (token, flow) in &result.flows {
                state.open_flow(OpenFlow {
                    token: token.clone(),
                    flow: flow.clone(),
                    sent_at: turn.now,
                });
            }
            turn.store
                .set_commerce(&turn.entry.conversation, &state)
                .await?;
        }
        let notes: Vec<NewNote> = result
            .notes
            .iter()
            .map(|(author, body)| NewNote {
                author: author.clone(),
                body: body.clone(),
            })
            .collect();
        let author = Author::Agent(if result.agent.is_empty() {
            "agent".to_string()
        } else {
            result.agent.clone()
        });
        let mut decision = Decision::new(DecidedBy::Agent, Vec::new());
        decision.notes = notes;
        decision.usage = Some(usage);
        let handoff = match (&result.failure, &result.handoff) {
            (Some(failure), _) => {
                tracing::warn!(error = %failure, "the agents could not answer; handing the conversation to a human");
                decision.by = DecidedBy::AgentFailed;
                let reason = match failure {
                    AgentFailure::ToolCalls { .. } => TOOL_CALL_LIMIT,
                    _ => AGENT_UNAVAILABLE,
                };
                Some(NewHandoff {
                    id: handoff_id(),
                    reason: reason.to_string(),
                    priority: Some("high".to_string()),
                    team: None,
                    requested_by: "gateway".to_string(),
                    ..NewHandoff::default()
                })
            }
            (None, Some(request)) => {
                decision.by = DecidedBy::AgentHandoff;
                Some(NewHandoff {
                    id: handoff_id(),
                    reason: request.reason.clone(),
                    priority: request.priority.clone(),
                    team: request.team.clone(),
                    requested_by: request.requested_by.clone(),
                    ..NewHandoff::default()
                })
            }
            (None, None) => None,
        };
        if result.failure.is_none() {
            for reply in &result.replies {
                let content = match reply {
                    AgentReply::Media { url, caption } => {
                        match self.sent_media(turn, url, caption.clone()).await {
                            Ok(content) => content,
                            Err(why) => {
                                tracing::warn!(%why, "an agent's picture cannot be sent");
                                decision.notes.push(NewNote {
                                    author: "gateway".to_string(),
                                    body: format!(
                                        "the picture at {} was not sent: {why}",
                                        clip_text(url, 200)
                                    ),
                                });
                                match caption {
                                    Some(caption) => Content::text(caption.clone()),
                                    None => continue,
                                }
                            }
                        }
                    }
                    AgentReply::Text(text) => Content::text(text.clone()),
                    AgentReply::Products { text, products } => {
                        self.runtime.metrics.commerce("products_shown");
                        Content::Products {
                            body: text.clone(),
                            products: products.clone(),
                        }
                    }
                    AgentReply::Flow {
                        text,
                        flow,
                        token,
                        data,
                    } => Content::Flow {
                        body: text.clone(),
                        flow: flow.name.clone(),
                        flow_id: flow.flow_id.clone(),
                        token: token.clone(),
                        cta: flow.cta.clone(),
                        screen: flow.screen.clone(),
                        data: data.clone(),
                    },
                    AgentReply::Payment(button) => {
                        self.runtime.metrics.commerce("payment_link");
                        Content::PaymentLink {
                            body: button.text.clone(),
                            url: button.url.clone(),
                            label: button.label.clone(),
                        }
                    }
                    AgentReply::Choices { text, options } => Content::Choices {
                        body: text.clone(),
                        choices: options
                            .iter()
                            .enumerate()
                            .map(|(i, title)| Choice {
                                id: format!("option-{}", i + 1),
                                title: title.clone(),
                                description: None,
                                section: None,
                            })
                            .collect(),
                        header: None,
                        footer: None,
                        button: None,
                    },
                };
                decision.replies.push((author.clone(), content));
            }
        }
        if let Some(handoff) = handoff {
            if decision.replies.is_empty() {
                // Never silence: the customer hears that a person is coming.
                decision
                    .replies
                    .push((Author::System, Content::text(self.holding_text(turn))));
            }
            decision.thread = Some(ThreadState::Queued {
                handoff: handoff.id.clone(),
            });
            decision.handoff = Some(handoff);
        }
        Ok(Some(decision))
    }
}

impl AgentResponder {
    /// What an agent's `send_media` sends: the file fetched and kept, or why not.
    async fn sent_media(
        &self,
        turn: &Turn<'_>,
        url: &str,
        caption: Option<String>,
    ) -> Result<Content, String> {
        let Some(sender) = &self.sender else {
            return Err("this gateway sends no media".to_string());
        };
        sender.content(&turn.entry.conversation, url, caption).await
    }
}
