//! The consent ledger's records: a customer's yes or no to a purpose of messages (utility:
//! about their orders; marketing: offers) on one channel, when, from what source, with its
//! proof. The ledger only grows; a contact's consent is its latest record per purpose.

use concierge_domain::{ChannelId, ContactId, Millis};

use crate::StoreError;

/// What a customer agrees to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Messages about what they bought or asked for (shipping, pickup, appointments).
    Utility,
    /// Offers, news, campaigns.
    Marketing,
}

impl Purpose {
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Utility => "utility",
            Purpose::Marketing => "marketing",
        }
    }

    pub fn parse(name: &str) -> Option<Purpose> {
        match name {
            "utility" => Some(Purpose::Utility),
            "marketing" => Some(Purpose::Marketing),
            _ => None,
        }
    }
}

/// One decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub channel: ChannelId,
    pub contact: ContactId,
    pub purpose: Purpose,
    pub granted: bool,
    /// Where it came from: `chat_keyword`, `api`, `checkout`, `web_form`, `concierge`…
    pub source: String,
    /// What the customer wrote or ticked, as said.
    pub proof: Option<String>,
    pub at: Millis,
    /// Recorded once per key (the inbox event of a STOP, a caller's idempotency key): a
    /// redelivery or a retry does not add a second record.
    pub key: Option<String>,
}

/// A recorded decision, in the ledger's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub seq: i64,
    pub consent: NewConsent,
}

/// The latest decision on `purpose` in `records` (oldest first): `None` when there is none.
pub fn latest(records: &[ConsentRecord], purpose: Purpose) -> Option<&ConsentRecord> {
    records.iter().rev().find(|r| r.consent.purpose == purpose)
}

/// The consent ledger, per channel and contact.
#[async_trait::async_trait]
pub trait Consents: Send + Sync {
    /// Appends a decision; `false` when its key was recorded already (nothing added).
    async fn record_consent(&self, consent: &NewConsent) -> Result<bool, StoreError>;

    /// Every decision of a contact on a channel, oldest first.
    async fn consents(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<Vec<ConsentRecord>, StoreError>;
}
