//! The customer service window of WhatsApp-like channels: what to do with a reply the window
//! may no longer allow. Shared by every adapter that has one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::OutboundMessage;
use concierge_domain::{Content, ConversationId};

const ALREADY: &str = "the 24-hour customer service window is closed and the re-engagement template was already sent; this reply waits for the customer to answer it";

/// What to do with one reply.
#[derive(Debug, PartialEq, Eq)]
pub enum WindowDecision {
    /// Inside the window (or a template): send it as it is.
    Send,
    /// Outside: send the channel's re-engagement template instead.
    Reengage,
    /// Outside, and re-engaging is not possible or already done: fail with this reason.
    Refuse(String),
}

pub struct ReplyWindow {
    length: Duration,
    /// When each conversation was last sent the re-engagement template. In memory: after a
    /// restart a second template may go out for the same closed window.
    reengaged: Mutex<HashMap<ConversationId, i64>>,
}

impl ReplyWindow {
    pub fn new(length: Duration) -> Self {
        Self {
            length,
            reengaged: Mutex::new(HashMap::new()),
        }
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    pub fn decide(&self, message: &OutboundMessage, now: i64) -> WindowDecision {
        if message.reengage {
            // The platform said the window was closed (its clock is the one that counts),
            // unless the customer has written since this reply was queued again.
            let wrote_since = message
                .customer_last_message_at
                .is_some_and(|at| at > message.created_at);
            return if wrote_since {
                WindowDecision::Send
            } else if self.already_reengaged(message) {
                WindowDecision::Refuse(ALREADY.to_string())
            } else {
                WindowDecision::Reengage
            };
        }
        if message.content.is_template() || message.within_window(self.length, now) {
            return WindowDecision::Send;
        }
        if matches!(message.content, Content::Reaction { .. }) {
            return WindowDecision::Refuse(
                "a reaction cannot be sent once the 24-hour customer service window is closed"
                    .to_string(),
            );
        }
        if self.already_reengaged(message) {
            return WindowDecision::Refuse(ALREADY.to_string());
        }
        WindowDecision::Reengage
    }

    /// The re-engagement template went out for this conversation.
    pub fn reengaged(&self, conversation: &ConversationId, now: i64) {
        self.reengaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conversation.clone(), now);
    }

    /// Whether a template was already sent since the customer last wrote.
    pub fn already_reengaged(&self, message: &OutboundMessage) -> bool {
        let since_customer = message.customer_last_message_at.unwrap_or(i64::MIN);
        self.reengaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&message.conversation)
            .is_some_and(|at| *at > since_customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_domain::{Author, ChannelId, ContactId, MessageId};

    const HOUR: i64 = 3600 * 1000;

    fn message(content: Content, last_customer: Option<i64>, created_at: i64) -> OutboundMessage {
        let channel = ChannelId::parse("whatsapp").unwrap();
        let contact = ContactId::parse("1555").unwrap();
        OutboundMessage {
            message_id: MessageId::new(),
            seq: 1,
            idempotency_key: "k".into(),
            conversation: ConversationId::legacy(&channel, &contact),
            contact,
            author: Author::Agent("a".into()),
            content,
            reply_to: None,
            created_at,
            maybe_sent: false,
            customer_last_message_at: last_customer,
            reengage: false,
            attachment: None,
        }
    }

    #[test]
    fn inside_sends_outside_reengages_once_then_refuses() {
        let window = ReplyWindow::new(Duration::from_secs(24 * 3600));
        let now = 100 * HOUR;
        let fresh = message(Content::text("hi"), Some(now - HOUR), now);
        assert_eq!(window.decide(&fresh, now), WindowDecision::Send);
        let edge = message(Content::text("hi"), Some(now - 24 * HOUR + 1), now);
        assert_eq!(window.decide(&edge, now), WindowDecision::Send);
        let just_closed = message(Content::text("hi"), Some(now - 24 * HOUR), now);
        assert_eq!(window.decide(&just_closed, now), WindowDecision::Reengage);
        let late = message(Content::text("hi"), Some(now - 25 * HOUR), now);
        assert_eq!(window.decide(&late, now), WindowDecision::Reengage);
        window.reengaged(&late.conversation, now);
        assert!(matches!(
            window.decide(&late, now + 1),
            WindowDecision::Refuse(_)
        ));
        // Templates always go; the customer writing again reopens everything.
        let template = message(
            Content::template("t", "en", vec![]),
            Some(now - 25 * HOUR),
            now,
        );
        assert_eq!(window.decide(&template, now + 1), WindowDecision::Send);
        let answered = message(Content::text("hi"), Some(now + 2), now + 3);
        assert_eq!(window.decide(&answered, now + 3), WindowDecision::Send);
    }

    #[test]
    fn a_reaction_outside_is_refused_and_never_templated() {
        let window = ReplyWindow::new(Duration::from_secs(24 * 3600));
        let now = 100 * HOUR;
        let reaction = message(
            Content::Reaction {
                target: "w".into(),
                emoji: "👍".into(),
            },
            Some(now - 25 * HOUR),
            now,
        );
        assert!(matches!(
            window.decide(&reaction, now),
            WindowDecision::Refuse(_)
        ));
    }

    #[test]
    fn a_platform_refusal_reengages_unless_the_customer_wrote_since() {
        let window = ReplyWindow::new(Duration::from_secs(24 * 3600));
        let now = 100 * HOUR;
        let mut refused = message(Content::text("hi"), Some(now - HOUR), now);
        refused.reengage = true;
        assert_eq!(window.decide(&refused, now), WindowDecision::Reengage);
        refused.customer_last_message_at = Some(now + 5);
        assert_eq!(window.decide(&refused, now + 6), WindowDecision::Send);
    }
}
