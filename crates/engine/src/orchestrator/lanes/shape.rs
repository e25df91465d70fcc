//! The pure core of a turn: the replies a decision asks for, shaped to what the channel can
//! carry, and the outcome the turn stores. No store, no I/O, so every rule is tested here.

use super::ChannelHints;
use crate::orchestrator::responder::Decision;
use concierge_domain::{
    ChannelId, Content, EventId, PlatformMessageId, ThreadState, split_text, text_units,
};
use concierge_store::{NewReply, ThreadChange, TurnOutcome};

/// What one message may carry on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// The longest text one message may carry; `None`: no limit.
    pub(super) max_text_chars: Option<usize>,
    /// Whether a media message can carry its caption.
    pub(super) media_captions: bool,
}

impl Limits {
    pub(super) fn of(hints: &dyn ChannelHints, channel: &ChannelId) -> Self {
        Self {
            max_text_chars: hints.max_text_chars(channel),
            media_captions: hints.media_captions(channel),
        }
    }
}

/// The customer message a turn answers: the replies' idempotency keys derive from its event,
/// and a reply that quotes points at it.
pub(super) struct Answering<'a> {
    pub(super) channel: &'a ChannelId,
    pub(super) event: &'a EventId,
    pub(super) message: &'a PlatformMessageId,
}

/// The replies to store for `decision`, in order. Each becomes one or more messages the channel
/// can carry, each its own outbox entry, so a retry never repeats a part already sent: a text
/// longer than the channel takes is split, and a caption the channel cannot attach follows its
/// media as a text. Only the first part of the first reply quotes the customer.
pub(super) fn shape(decision: &Decision, to: &Answering<'_>, limits: &Limits) -> Vec<NewReply> {
    let mut replies = Vec::new();
    for (i, (author, content)) in decision.replies.iter().enumerate() {
        for (part, content) in parts(content, limits).into_iter().enumerate() {
            replies.push(NewReply {
                idempotency_key: key(to, i, part),
                author: author.clone(),
                content,
                reply_to: (decision.quote && i == 0 && part == 0).then(|| to.message.clone()),
                reengage: false,
            });
        }
    }
    replies
}

/// One reply as the messages the channel can carry.
fn parts(content: &Content, limits: &Limits) -> Vec<Content> {
    // A limit of 0 would leave `split_text` nothing to cut: it means no limit.
    let limit = limits.max_text_chars.filter(|limit| *limit > 0);
    match (content, limit) {
        (Content::Text { body }, Some(limit)) if text_units(body) > limit => {
            split_text(body, limit)
                .into_iter()
                .map(Content::text)
                .collect()
        }
        (
            Content::Choices {
                body,
                choices,
                header,
                footer,
                button,
            },
            Some(limit),
        ) if text_units(body) > choices_room(choices, limit) => {
            // The question first, as text, and the choices in a last message that fits: no
            // channel cuts the question's end or drops its options.
            let mut parts = split_text(body, choices_room(choices, limit));
            let last = parts.pop().unwrap_or_default();
            let mut out: Vec<Content> = parts.into_iter().map(Content::text).collect();
            out.push(Content::Choices {
                body: last,
                choices: choices.clone(),
                header: header.clone(),
                footer: footer.clone(),
                button: button.clone(),
            });
            out
        }
        (
            Content::Media {
                kind,
                mime,
                caption: Some(caption),
                media,
                kept,
            },
            _,
        ) if !limits.media_captions => vec![
            Content::Media {
                kind: *kind,
                mime: mime.clone(),
                caption: None,
                media: media.clone(),
                kept: kept.clone(),
            },
            Content::text(caption.clone()),
        ],
        _ => vec![content.clone()],
    }
}

/// How long a question with choices may be in one message: the channel's text limit, less
/// what the choices take where a channel writes them as numbered lines (Twilio, iMessage),
/// and at least a quarter of the limit.
fn choices_room(choices: &[concierge_domain::Choice], limit: usize) -> usize {
    let numbered: usize = choices
        .iter()
        .map(|c| text_units(&c.title) + 6)
        .sum::<usize>()
        + 2;
    limit.saturating_sub(numbered).max(limit / 4).max(1)
}

/// Part 0 keeps the key a whole reply would have: stable across versions, so an event
/// replayed after an upgrade cannot queue the same reply twice.
fn key(to: &Answering<'_>, reply: usize, part: usize) -> String {
    match part {
        0 => format!("{}:{}:{reply}", to.channel, to.event),
        n => format!("{}:{}:{reply}.{n}", to.channel, to.event),
    }
}

/// What an answered turn stores: its replies, the thread the decision moves it to (else where
/// the customer's message moved it, `moved`), and the notes, handoff and usage it brought.
/// Returns the label of the responder that decided, for the metrics.
pub(super) fn outcome(
    decision: Decision,
    replies: Vec<NewReply>,
    current: ThreadState,
    moved: Option<ThreadChange>,
) -> (TurnOutcome, &'static str) {
    let by = decision.by.name();
    let outcome = TurnOutcome {
        replies,
        thread: decision
            .thread
            .map(|to| ThreadChange { from: current, to })
            .or(moved),
        absorbed: Vec::new(),
        notes: decision.notes,
        handoff: decision.handoff,
        usage: decision.usage,
    };
    (outcome, by)
}

/// The change from `from` to `to`, when they differ.
pub(super) fn change(from: &ThreadState, to: &ThreadState) -> Option<ThreadChange> {
    (from != to).then(|| ThreadChange {
        from: from.clone(),
        to: to.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::responder::DecidedBy;
    use concierge_domain::{Author, Choice, MediaKind, MediaRef};
    use concierge_store::NewHandoff;

    struct Ids {
        channel: ChannelId,
        event: EventId,
        message: PlatformMessageId,
    }

    impl Ids {
        fn new() -> Self {
            Self {
                channel: ChannelId::parse("web").expect("a valid channel id"),
                event: EventId::parse("evt-1").expect("a valid event id"),
                message: PlatformMessageId::parse("msg-1").expect("a valid message id"),
            }
        }

        fn answering(&self) -> Answering<'_> {
            Answering {
                channel: &self.channel,
                event: &self.event,
                message: &self.message,
            }
        }
    }

    const WIDE: Limits = Limits {
        max_text_chars: None,
        media_captions: true,
    };

    fn agent() -> Author {
        Author::Agent("sales".to_string())
    }

    fn bot() -> ThreadState {
        ThreadState::Bot {
            agent: "sales".to_string(),
        }
    }

    fn decision(replies: Vec<(Author, Content)>) -> Decision {
        Decision::new(DecidedBy::Agent, replies)
    }

    fn photo(caption: Option<&str>) -> Content {
        Content::Media {
            kind: MediaKind::Image,
            mime: Some("image/jpeg".to_string()),
            caption: caption.map(str::to_string),
            media: MediaRef("media-1".to_string()),
            kept: None,
        }
    }

    fn keys(replies: &[NewReply]) -> Vec<&str> {
        replies.iter().map(|r| r.idempotency_key.as_str()).collect()
    }

    fn contents(replies: &[NewReply]) -> Vec<&Content> {
        replies.iter().map(|r| &r.content).collect()
    }

    #[test]
    fn an_empty_decision_stores_no_reply() {
        let ids = Ids::new();
        let mut empty = decision(Vec::new());
        empty.quote = true;
        assert!(shape(&empty, &ids.answering(), &WIDE).is_empty());
    }

    #[test]
    fn a_reply_within_the_limit_is_one_message_keyed_by_the_event() {
        let ids = Ids::new();
        let limits = Limits {
            max_text_chars: Some(5),
            ..WIDE
        };
        let replies = shape(
            &decision(vec![(agent(), Content::text("Hello"))]),
            &ids.answering(),
            &limits,
        );
        assert_eq!(
            replies,
            vec![NewReply {
                idempotency_key: "web:evt-1:0".to_string(),
                author: agent(),
                content: Content::text("Hello"),
                reply_to: None,
                reengage: false,
            }]
        );
    }

    #[test]
    fn a_text_over_the_limit_is_split_into_parts_of_the_same_author() {
        let ids = Ids::new();
        let limits = Limits {
            max_text_chars: Some(20),
            ..WIDE
        };
        let body = "Opening hours.\n\nDelivery takes two days.";
        let replies = shape(
            &decision(vec![(agent(), Content::text(body))]),
            &ids.answering(),
            &limits,
        );
        assert_eq!(
            keys(&replies),
            ["web:evt-1:0", "web:evt-1:0.1", "web:evt-1:0.2"]
        );
        assert_eq!(
            contents(&replies),
            [
                &Content::text("Opening hours."),
                &Content::text("Delivery takes two"),
                &Content::text("days."),
            ]
        );
        assert!(replies.iter().all(|r| r.author == agent() && !r.reengage));
        assert!(replies.iter().all(|r| match &r.content {
            Content::Text { body } => body.chars().count() <= 20,
            _ => false,
        }));
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let ids = Ids::new();
        let limits = Limits {
            max_text_chars: Some(5),
            ..WIDE
        };
        let replies = shape(
            &decision(vec![(agent(), Content::text("éééé€"))]),
            &ids.answering(),
            &limits,
        );
        assert_eq!(contents(&replies), [&Content::text("éééé€")]);
    }

    #[test]
    fn without_a_limit_or_with_a_zero_one_a_long_text_stays_whole() {
        let ids = Ids::new();
        let body = "word ".repeat(2000);
        let long = decision(vec![(agent(), Content::text(body.clone()))]);
        for max_text_chars in [None, Some(0)] {
            let limits = Limits {
                max_text_chars,
                ..WIDE
            };
            let replies = shape(&long, &ids.answering(), &limits);
            assert_eq!(contents(&replies), [&Content::text(body.clone())]);
        }
    }

    #[test]
    fn a_caption_the_channel_cannot_attach_follows_its_media_as_a_text() {
        let ids = Ids::new();
        let limits = Limits {
            media_captions: false,
            ..WIDE
        };
        let replies = shape(
            &decision(vec![(agent(), photo(Some("Our new menu")))]),
            &ids.answering(),
            &limits,
        );
        assert_eq!(keys(&replies), ["web:evt-1:0", "web:evt-1:0.1"]);
        assert_eq!(
            contents(&replies),
            [&photo(None), &Content::text("Our new menu")]
        );
    }

    #[test]
    fn media_keeps_its_caption_where_the_channel_attaches_it_or_when_it_has_none() {
        let ids = Ids::new();
        let with = shape(
            &decision(vec![(agent(), photo(Some("Our new menu")))]),
            &ids.answering(),
            &WIDE,
        );
        assert_eq!(contents(&with), [&photo(Some("Our new menu"))]);
        let no_captions = Limits {
            media_captions: false,
            ..WIDE
        };
        let without = shape(
            &decision(vec![(agent(), photo(None))]),
            &ids.answering(),
            &no_captions,
        );
        assert_eq!(contents(&without), [&photo(None)]);
    }

    #[test]
    fn a_question_with_choices_that_fits_goes_whole_a_long_one_first_as_text() {
        let ids = Ids::new();
        let asking = |body: &str| Content::Choices {
            body: body.to_string(),
            choices: vec![Choice::new("s", "Small"), Choice::new("l", "Large")],
            header: None,
            footer: None,
            button: None,
        };
        // 60 characters, less the two numbered lines (11 each) and a blank line: 36 left.
        let limits = Limits {
            max_text_chars: Some(60),
            media_captions: false,
        };
        let short = asking("Which size would you like?");
        let replies = shape(
            &decision(vec![(agent(), short.clone())]),
            &ids.answering(),
            &limits,
        );
        assert_eq!(contents(&replies), [&short]);

        let long = asking("We have the candle in two sizes. Which size would you like?");
        let replies = shape(&decision(vec![(agent(), long)]), &ids.answering(), &limits);
        assert_eq!(keys(&replies), ["web:evt-1:0", "web:evt-1:0.1"]);
        assert_eq!(
            contents(&replies),
            [
                &Content::text("We have the candle in two sizes."),
                &asking("Which size would you like?"),
            ]
        );
    }

    #[test]
    fn only_the_first_part_of_the_first_reply_quotes_the_customer() {
        let ids = Ids::new();
        let limits = Limits {
            max_text_chars: Some(20),
            ..WIDE
        };
        let mut quoting = decision(vec![
            (
                agent(),
                Content::text("Opening hours.\n\nDelivery takes two days."),
            ),
            (Author::System, Content::text("Anything else?")),
        ]);
        quoting.quote = true;
        let replies = shape(&quoting, &ids.answering(), &limits);
        assert_eq!(
            keys(&replies),
            [
                "web:evt-1:0",
                "web:evt-1:0.1",
                "web:evt-1:0.2",
                "web:evt-1:1"
            ]
        );
        let quoted: Vec<Option<&PlatformMessageId>> =
            replies.iter().map(|r| r.reply_to.as_ref()).collect();
        assert_eq!(quoted, [Some(&ids.message), None, None, None]);
        assert_eq!(replies[3].author, Author::System);
    }

    #[test]
    fn a_decision_that_does_not_quote_quotes_nothing() {
        let ids = Ids::new();
        let replies = shape(
            &decision(vec![
                (agent(), Content::text("One")),
                (agent(), Content::text("Two")),
            ]),
            &ids.answering(),
            &WIDE,
        );
        assert_eq!(keys(&replies), ["web:evt-1:0", "web:evt-1:1"]);
        assert!(replies.iter().all(|r| r.reply_to.is_none()));
    }

    #[test]
    fn the_decisions_thread_wins_over_where_the_customers_message_moved_it() {
        let queued = ThreadState::Queued {
            handoff: "h1".to_string(),
        };
        let moved = change(&ThreadState::Closed, &bot());
        let mut handing_off = decision(Vec::new());
        handing_off.by = DecidedBy::Holding;
        handing_off.thread = Some(queued.clone());
        handing_off.handoff = Some(NewHandoff {
            id: "h1".to_string(),
            ..NewHandoff::default()
        });
        let (outcome, by) = outcome(handing_off, Vec::new(), ThreadState::Closed, moved);
        assert_eq!(by, "holding");
        assert_eq!(
            outcome.thread,
            Some(ThreadChange {
                from: ThreadState::Closed,
                to: queued,
            })
        );
        assert_eq!(outcome.handoff.map(|h| h.id), Some("h1".to_string()));
        assert!(outcome.absorbed.is_empty());
    }

    #[test]
    fn without_a_thread_of_its_own_the_decision_keeps_the_customers_move() {
        let ids = Ids::new();
        let answer = decision(vec![(agent(), Content::text("Hello"))]);
        let replies = shape(&answer, &ids.answering(), &WIDE);
        let moved = change(&ThreadState::Closed, &bot());
        let (outcome, by) = outcome(answer, replies.clone(), ThreadState::Closed, moved.clone());
        assert_eq!(by, "agent");
        assert_eq!(outcome.thread, moved);
        assert_eq!(outcome.replies, replies);
        assert_eq!(change(&bot(), &bot()), None);
    }
}
