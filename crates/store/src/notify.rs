//! Notifications: a message the merchant's systems send first (a template, or text where the
//! channel allows it), queued in the outbox like any reply, once per idempotency key, and only
//! if the customer's consent allows it, checked in the same write that queues it.

use concierge_domain::{ChannelId, ContactId, Content, ConversationId, MessageId, Millis};

use crate::StoreError;
use crate::consent::{ConsentRecord, Purpose, latest};

/// A notification to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub id: String,
    /// The caller's idempotency key, already scoped to the calling service: a second request
    /// with it queues nothing and answers the first one's notification.
    pub key: String,
    /// The service that sent it.
    pub service: String,
    pub channel: ChannelId,
    pub contact: ContactId,
    /// The contact's conversation on the channel (created when new).
    pub conversation: ConversationId,
    pub purpose: Purpose,
    /// The template's name (`order_shipped.fr`), or `None` for text.
    pub template: Option<String>,
    pub content: Content,
    /// The batch and the recipient's place in it, for a batch's notification.
    pub batch: Option<(String, u32)>,
    pub at: Millis,
}

impl NewNotification {
    /// The outbox idempotency key of its message.
    pub fn outbox_key(&self) -> String {
        format!("notification:{}", self.key)
    }
}

/// A queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub service: String,
    pub channel: ChannelId,
    pub contact: ContactId,
    pub conversation: ConversationId,
    pub message: MessageId,
    pub purpose: Purpose,
    pub template: Option<String>,
    pub created_at: Millis,
}

/// Why the consent ledger refuses a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The customer said no: to marketing, for a marketing message, or to everything.
    OptedOut,
    /// A marketing message to a customer who never said yes to marketing.
    NoConsent,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OptedOut => "opted_out",
            Refusal::NoConsent => "no_consent",
        }
    }
}

/// What `notify` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// Queued now, or (`replayed`) by an earlier request with the same key.
    Queued {
        notification: Notification,
        replayed: bool,
    },
    Refused(Refusal),
}

/// Whether a contact's ledger (oldest first) allows a message of `purpose`: a withdrawn
/// utility consent is a full opt-out; marketing needs a consent given and not withdrawn.
pub fn allows(records: &[ConsentRecord], purpose: Purpose) -> Result<(), Refusal> {
    let granted = |p| latest(records, p).map(|r| r.consent.granted);
    if granted(Purpose::Utility) == Some(false) {
        return Err(Refusal::OptedOut);
    }
    match (purpose, granted(Purpose::Marketing)) {
        (Purpose::Utility, _) | (Purpose::Marketing, Some(true)) => Ok(()),
        (Purpose::Marketing, Some(false)) => Err(Refusal::OptedOut),
        (Purpose::Marketing, None) => Err(Refusal::NoConsent),
    }
}

/// Messages the merchant sends first.
#[async_trait::async_trait]
pub trait Notifications: Send + Sync {
    /// In one write: answers the notification of `key` if there is one; else checks the
    /// contact's consent ledger ([`allows`]), creates the contact and conversation when new,
    /// and queues the message in the outbox with the notification's record.
    async fn notify(&self, notification: &NewNotification) -> Result<Notified, StoreError>;

    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewConsent;

    fn record(seq: i64, purpose: Purpose, granted: bool) -> ConsentRecord {
        ConsentRecord {
            seq,
            consent: NewConsent {
                channel: ChannelId::parse("wa").unwrap(),
                contact: ContactId::parse("33612345678").unwrap(),
                purpose,
                granted,
                source: "api".into(),
                proof: None,
                at: seq,
                key: None,
            },
        }
    }

    #[test]
    fn marketing_needs_a_yes_and_a_full_opt_out_stops_everything() {
        use Purpose::*;
        assert_eq!(allows(&[], Utility), Ok(()));
        assert_eq!(allows(&[], Marketing), Err(Refusal::NoConsent));
        let yes = [record(1, Marketing, true)];
        assert_eq!(allows(&yes, Marketing), Ok(()));
        let stop = [record(1, Marketing, true), record(2, Marketing, false)];
        assert_eq!(allows(&stop, Marketing), Err(Refusal::OptedOut));
        assert_eq!(allows(&stop, Utility), Ok(()));
        let all = [record(1, Marketing, true), record(2, Utility, false)];
        assert_eq!(allows(&all, Utility), Err(Refusal::OptedOut));
        assert_eq!(allows(&all, Marketing), Err(Refusal::OptedOut));
        let back = [record(1, Utility, false), record(2, Utility, true)];
        assert_eq!(allows(&back, Utility), Ok(()));
    }
}
