//! What a concierge does to a thread: claim, release, resolve, transfer, reply, note. Each
//! checks who may, then makes one atomic move in the store (so two concierges claiming at
//! once cannot both win), records it in the audit log and tells the consoles.

use sha2::{Digest, Sha256};

use concierge_domain::{
    Author, Choice, Content, ConversationId, KeptMedia, MediaKind, MediaRef, MessageId,
    StoredMedia, ThreadState, split_text,
};
use concierge_store::{
    Conversation, Handoff, HandoffChange, NewAudit, NewHandoff, NewNote, NewReply, StoreError,
    ThreadMove,
};

use super::{Caller, ConsoleEvent, Desk, EventKind};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no such conversation")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A thread as an action sees it.
pub struct Thread {
    pub conversation: Conversation,
    /// The open handoff, if any.
    pub handoff: Option<Handoff>,
    pub handoffs: Vec<Handoff>,
}

impl Thread {
    /// The team the thread belongs to: its open handoff's, else its latest handoff's (a
    /// resolved thread stays with the team that handled it).
    pub fn team(&self) -> Option<&str> {
        self.handoff
            .as_ref()
            .or(self.handoffs.last())
            .and_then(|h| h.team.as_deref())
    }
}

fn owner(thread: &ThreadState) -> Option<&str> {
    match thread {
        ThreadState::Human { concierge } => Some(concierge),
        _ => None,
    }
}

/// What a concierge's reply says: words, choices for the customer to pick from, or a file
/// (already kept, with the words as its caption).
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub text: &'a str,
    pub choices: &'a [String],
    pub media: Option<&'a StoredMedia>,
}

/// What the conversation's channel can take in one message.
#[derive(Debug, Clone, Copy)]
pub struct ReplyShape {
    /// A longer text is split at this many characters.
    pub max_text_chars: Option<usize>,
    /// Whether a file carries a caption; without, the words follow as a message of their own.
    pub media_captions: bool,
}

impl Desk {
    /// The thread, when the caller may see it.
    pub async fn thread(
        &self,
        caller: &Caller,
        id: &ConversationId,
    ) -> Result<Thread, ActionError> {
        let conversation = self
            .conversations
            .conversation(id)
            .await?
            .ok_or(ActionError::NotFound)?;
        let handoffs = self.journal.handoffs(id).await?;
        let handoff = handoffs.iter().rev().find(|h| h.is_open()).cloned();
        let thread = Thread {
            conversation,
            handoff,
            handoffs,
        };
        // Not found, as for a thread that does not exist: a concierge learns nothing of
        // another team's threads, not even that one exists.
        if !caller.may_see(self.team_of(&thread)) {
            return Err(ActionError::NotFound);
        }
        Ok(thread)
    }

    /// The team a thread belongs to: its latest handoff's, else its channel's.
    pub fn team_of<'a>(&'a self, thread: &'a Thread) -> &'a str {
        self.thread_team(thread.team(), &thread.conversation.channel)
    }

    fn audit(caller: &Caller, action: &str, id: &ConversationId, detail: String) -> NewAudit {
        NewAudit {
            actor: caller.name.clone(),
            action: action.to_string(),
            conversation: Some(id.clone()),
            detail,
        }
    }

    async fn apply(&self, change: ThreadMove) -> Result<(), ActionError> {
        if self.queue.move_thread(change).await? {
            Ok(())
        } else {
            Err(ActionError::Conflict(
                "the thread changed meanwhile; reload and try again".to_string(),
            ))
        }
    }

    fn publish(&self, kind: EventKind, id: &ConversationId, team: Option<&str>, who: &str) {
        self.events
            .publish(ConsoleEvent::new(kind, id.clone(), team.map(str::to_string)).by(who));
    }

    /// Takes the thread: from the queue, or (proactively) from the bot.
    pub async fn claim(&self, caller: &Caller, id: &ConversationId) -> Result<(), ActionError> {
        let thread = self.thread(caller, id).await?;
        let from = thread.conversation.thread.clone();
        let me = ThreadState::Human {
            concierge: caller.name.clone(),
        };
        let (handoff, team) = match &from {
            ThreadState::Human { concierge } if *concierge == caller.name => return Ok(()),
            ThreadState::Human { concierge } => {
                return Err(ActionError::Conflict(format!(
                    "already claimed by {concierge}"
                )));
            }
            ThreadState::Queued { .. } => {
                (HandoffChange::None, Some(self.team_of(&thread).to_string()))
            }
            ThreadState::Bot { .. } | ThreadState::Closed => {
                // The thread's own team, which the caller is in (they could see it).
                let team = self.team_of(&thread).to_string();
                (
                    HandoffChange::Open(NewHandoff {
                        id: uuid::Uuid::now_v7().simple().to_string(),
                        reason: format!("taken over by {}", caller.name),
                        priority: Some("normal".to_string()),
                        team: Some(team.clone()),
                        requested_by: caller.name.clone(),
                        ..NewHandoff::default()
                    }),
                    Some(team),
                )
            }
        };
        self.apply(ThreadMove {
            conversation: id.clone(),
            from: from.clone(),
            to: me,
            handoff,
            note: None,
            audit: Self::audit(caller, "claim", id, format!("from {}", from.name())),
        })
        .await
        .map_err(|e| match e {
            ActionError::Conflict(_) => {
                ActionError::Conflict("someone else claimed it first".to_string())
            }
            other => other,
        })?;
        self.first_claim(&thread);
        self.publish(EventKind::Claimed, id, team.as_deref(), &caller.name);
        Ok(())
    }

    /// A concierge took a queued thread: the first time its handoff is claimed, how long it
    /// waited is measured (a thread transferred back to the queue was already counted).
    fn first_claim(&self, thread: &Thread) {
        if !matches!(thread.conversation.thread, ThreadState::Queued { .. }) {
            return;
        }
        if let Some(handoff) = thread.handoff.as_ref().filter(|h| h.claimed_at.is_none()) {
            let waited_ms = concierge_domain::now_millis() - handoff.created_at;
            self.metrics.handoff_claimed(waited_ms as f64 / 1000.0);
        }
    }

    /// Hands the thread back to the bot, with a note the entry agent reads.
    pub async fn release(
        &self,
        caller: &Caller,
        id: &ConversationId,
        note: Option<String>,
    ) -> Result<(), ActionError> {
        let thread = self.thread(caller, id).await?;
        let from = thread.conversation.thread.clone();
        self.may_act(caller, &from)?;
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        self.apply(ThreadMove {
            conversation: id.clone(),
            from,
            to: ThreadState::Bot {
                agent: self.entry_agent.clone(),
            },
            handoff: HandoffChange::Close {
                outcome: "released".to_string(),
                note: note.clone(),
            },
            note: Some(NewNote {
                author: caller.name.clone(),
                body: match &note {
                    Some(n) => format!("released to the bot: {n}"),
                    None => "released to the bot".to_string(),
                },
            }),
            audit: Self::audit(caller, "release", id, note.unwrap_or_default()),
        })
        .await?;
        self.publish(EventKind::Released, id, thread.team(), &caller.name);
        Ok(())
    }

    /// Closes the thread; the customer's next message opens it again with the bot.
    pub async fn resolve(&self, caller: &Caller, id: &ConversationId) -> Result<(), ActionError> {
        let thread = self.thread(caller, id).await?;
        let from = thread.conversation.thread.clone();
        if !matches!(from, ThreadState::Queued { .. }) {
            self.may_act(caller, &from)?;
        }
        self.apply(ThreadMove {
            conversation: id.clone(),
            from,
            to: ThreadState::Closed,
            handoff: HandoffChange::Close {
                outcome: "resolved".to_string(),
                note: None,
            },
            note: None,
            audit: Self::audit(caller, "resolve", id, String::new()),
        })
        .await?;
        self.publish(EventKind::Resolved, id, thread.team(), &caller.name);
        Ok(())
    }

    /// Moves the thread to another team's queue, or straight to another concierge.
    pub async fn transfer(
        &self,
        caller: &Caller,
        id: &ConversationId,
        team: Option<String>,
        concierge: Option<String>,
    ) -> Result<(), ActionError> {
        let thread = self.thread(caller, id).await?;
        let from = thread.conversation.thread.clone();
        if !matches!(from, ThreadState::Queued { .. }) {
            self.may_act(caller, &from)?;
        }
        let (to, change, new_team, who) = match (team, concierge) {
            (_, Some(target)) => {
                let Some(target_caller) = self.caller(&target) else {
                    return Err(ActionError::Invalid(format!(
                        "no concierge named `{target}`"
                    )));
                };
                let thread_team = self.team_of(&thread).to_string();
                if !target_caller.may_see(&thread_team) {
                    return Err(ActionError::Invalid(format!(
                        "{target} is not in team `{thread_team}`"
                    )));
                }
                (
                    ThreadState::Human {
                        concierge: target.clone(),
                    },
                    HandoffChange::None,
                    Some(thread_team),
                    target,
                )
            }
            (Some(team), None) => {
                let Some(target) = self.teams.iter().find(|t| t.name == team) else {
                    return Err(ActionError::Invalid(format!("no team named `{team}`")));
                };
                // The new team's first-response clock starts now (or at its opening).
                let now = concierge_domain::now_millis();
                let sla_due_at = self.opens_at(target, now).saturating_add(target.sla_ms);
                let (queued, change) = match &thread.handoff {
                    Some(h) => (
                        h.id.clone(),
                        HandoffChange::Requeue {
                            team: Some(team.clone()),
                            sla_due_at: Some(sla_due_at),
                        },
                    ),
                    None => {
                        let id = uuid::Uuid::now_v7().simple().to_string();
                        let handoff = NewHandoff {
                            id: id.clone(),
                            reason: format!("transferred by {}", caller.name),
                            priority: Some("normal".to_string()),
                            team: Some(team.clone()),
                            requested_by: caller.name.clone(),
                            sla_due_at: Some(sla_due_at),
                            ..NewHandoff::default()
                        };
                        (id, HandoffChange::Open(handoff))
                    }
                };
                (
                    ThreadState::Queued { handoff: queued },
                    change,
                    Some(team),
                    caller.name.clone(),
                )
            }
            (None, None) => {
                return Err(ActionError::Invalid(
                    "give a team or a concierge".to_string(),
                ));
            }
        };
        self.apply(ThreadMove {
            conversation: id.clone(),
            from,
            to: to.clone(),
            handoff: change,
            note: None,
            audit: Self::audit(
                caller,
                "transfer",
                id,
                match &to {
                    ThreadState::Human { concierge } => format!("to concierge {concierge}"),
                    _ => format!("to team {}", new_team.clone().unwrap_or_default()),
                },
            ),
        })
        .await?;
        if matches!(to, ThreadState::Human { .. }) {
            // Straight from the queue to a concierge: their first claim too.
            self.first_claim(&thread);
        }
        let mut event =
            ConsoleEvent::new(EventKind::Transferred, id.clone(), new_team.clone()).by(who);
        if matches!(to, ThreadState::Queued { .. }) {
            event.concierge = None;
        }
        // The team it left hears of it too, so their consoles drop it.
        if let Some(old) = thread
            .team()
            .filter(|old| Some(*old) != new_team.as_deref())
        {
            let mut left = event.clone();
            left.team = Some(old.to_string());
            self.events.publish(left);
        }
        self.events.publish(event);
        Ok(())
    }

    /// A reply to the customer, through the conversation's channel and outbox. Replying to a
    /// thread still waiting in the queue claims it first.
    pub async fn reply(
        &self,
        caller: &Caller,
        id: &ConversationId,
        reply: Reply<'_>,
        request_key: &str,
        shape: ReplyShape,
    ) -> Result<Vec<MessageId>, ActionError> {
        let Reply {
            text,
            choices,
            media,
        } = reply;
        let text = text.trim();
        if text.is_empty() && media.is_none() {
            return Err(ActionError::Invalid("the reply is empty".to_string()));
        }
        if choices.len() > 10 || choices.iter().any(|c| c.trim().is_empty()) {
            return Err(ActionError::Invalid(
                "at most 10 choices, none empty".to_string(),
            ));
        }
        if media.is_some() && !choices.is_empty() {
            return Err(ActionError::Invalid(
                "a file and choices go in separate replies".to_string(),
            ));
        }
        let max_text_chars = shape.max_text_chars;
        let thread = self.thread(caller, id).await?;
        match &thread.conversation.thread {
            ThreadState::Human { concierge } if *concierge == caller.name => {}
            ThreadState::Queued { .. } => self.claim(caller, id).await?,
            ThreadState::Human { concierge } => {
                return Err(ActionError::Conflict(format!(
                    "{concierge} owns this thread"
                )));
            }
            _ => {
                return Err(ActionError::Conflict(
                    "the bot holds this thread: claim it first".to_string(),
                ));
            }
        }
        let author = Author::Concierge(caller.name.clone());
        let contents: Vec<Content> = if let Some(stored) = media {
            let caption = (!text.is_empty()).then(|| text.to_string());
            let file = |caption: Option<String>| Content::Media {
                kind: MediaKind::for_mime(&stored.mime),
                mime: Some(stored.mime.clone()),
                caption,
                media: MediaRef(stored.id.to_string()),
                kept: Some(KeptMedia::Stored(stored.clone())),
            };
            match caption {
                // A platform without captions gets the words as a message of their own.
                Some(caption) if !shape.media_captions => {
                    vec![file(None), Content::text(caption)]
                }
                caption => vec![file(caption)],
            }
        } else if choices.is_empty() {
            match max_text_chars {
                Some(limit) if text.chars().count() > limit => split_text(text, limit)
                    .into_iter()
                    .map(Content::text)
                    .collect(),
                _ => vec![Content::text(text)],
            }
        } else {
            vec![Content::Choices {
                body: text.to_string(),
                choices: choices
                    .iter()
                    .enumerate()
                    .map(|(i, title)| Choice::new(format!("option-{}", i + 1), title.trim()))
                    .collect(),
                header: None,
                footer: None,
                button: None,
            }]
        };
        // Scoped to the concierge and the thread, compared exactly (as a digest: any bytes,
        // fixed length, nothing truncated).
        let digest = hex::encode(Sha256::digest(request_key.as_bytes()));
        let wanted = contents.clone();
        let replies = contents
            .into_iter()
            .enumerate()
            .map(|(part, content)| NewReply {
                idempotency_key: format!("concierge:{id}:{}:{digest}:{part}", caller.name),
                author: author.clone(),
                content,
                reply_to: None,
                reengage: false,
            })
            .collect();
        let queued = self
            .queue
            .concierge_reply(
                id,
                &caller.name,
                replies,
                Self::audit(
                    caller,
                    "reply",
                    id,
                    match media {
                        Some(stored) => format!(
                            "{} characters, a file ({})",
                            text.chars().count(),
                            stored.describe()
                        ),
                        None => format!("{} characters", text.chars().count()),
                    },
                ),
            )
            .await?
            .ok_or_else(|| {
                ActionError::Conflict("the thread changed owner meanwhile".to_string())
            })?;
        if queued.replayed {
            // A retry gets what the first request queued; another reply under the same key
            // is a client's mistake, and nothing of it is sent.
            let mut sent = Vec::new();
            for message in &queued.ids {
                if let Some(message) = self.conversations.message(*message).await? {
                    sent.push(message.content);
                }
            }
            if sent != wanted {
                return Err(ActionError::Invalid(
                    "this Idempotency-Key was used for another reply".to_string(),
                ));
            }
        }
        Ok(queued.ids)
    }

    /// An internal note; the customer never sees it.
    pub async fn note(
        &self,
        caller: &Caller,
        id: &ConversationId,
        text: &str,
    ) -> Result<(), ActionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ActionError::Invalid("the note is empty".to_string()));
        }
        self.thread(caller, id).await?;
        self.queue
            .add_note(
                id,
                NewNote {
                    author: caller.name.clone(),
                    body: text.to_string(),
                },
                Self::audit(caller, "note", id, String::new()),
            )
            .await?;
        Ok(())
    }

    /// Only the owner (or an admin) releases, resolves or transfers an owned thread.
    fn may_act(&self, caller: &Caller, from: &ThreadState) -> Result<(), ActionError> {
        match owner(from) {
            Some(owner) if owner == caller.name || caller.admin => Ok(()),
            Some(owner) => Err(ActionError::Conflict(format!("{owner} owns this thread"))),
            None if matches!(from, ThreadState::Queued { .. }) && caller.admin => Ok(()),
            None => Err(ActionError::Conflict(format!(
                "the thread is {}, not owned by a concierge",
                from.name()
            ))),
        }
    }
}
