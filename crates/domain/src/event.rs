//! What an adapter hands inward after parsing a webhook: one `InboundEvent` per thing the
//! platform told us, already normalised.

use serde::{Deserialize, Serialize};

use super::{
    ChannelId, ContactId, Content, DeliveryStatus, EventId, MessageId, Millis, PlatformMessageId,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub channel: ChannelId,
    /// The platform's id of this event; `(channel, event_id)` is the dedupe key.
    pub event_id: EventId,
    pub contact: ContactId,
    /// Other ids the platform gave for the same person in this event (a WhatsApp phone number
    /// beside the business-scoped user id): the store keeps them, so the person stays one
    /// contact whichever id a later event carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<ContactId>,
    /// The platform's timestamp when it gave one, else the time we received it.
    pub at: Millis,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A new message from the customer.
    Message(InboundMessage),
    /// The customer edited an earlier message.
    Edit {
        target: PlatformMessageId,
        content: Content,
    },
    /// The platform reports how far one of our messages got.
    Status {
        target: PlatformMessageId,
        status: DeliveryStatus,
        /// Our id of the reply this status is about, when the platform echoes what we gave
        /// it with the send (WhatsApp's `biz_opaque_callback_data`, a Twilio status callback
        /// URL), and the status covers the reply's last part: proof that the reply was
        /// accepted even when the answer to our send was lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ours: Option<MessageId>,
    },
    /// The customer is typing.
    Typing,
    /// The customer opened the conversation (Telegram's /start), perhaps from a link that
    /// says where they came from (the start parameter, kept as the conversation's source).
    Started { source: Option<String> },
    /// The platform refused one of our messages because the customer service window is closed
    /// (WhatsApp 131047, Twilio 63016): the message is sent again as the channel's
    /// re-engagement template, once.
    WindowClosed { target: PlatformMessageId },
    /// The customer's number changed (WhatsApp's `user_changed_number`). The event comes
    /// from the customer's id with both numbers among its ids, so the store links them to
    /// one contact and the conversation goes on; a conversation that was addressed to
    /// `previous` is addressed to `address` from now on, and the change is noted for
    /// concierges. Applied as it is stored: never a turn.
    ContactChanged {
        previous: ContactId,
        address: ContactId,
    },
    /// The platform warns that the person behind the contact may not be who they were (
    /// WhatsApp's `customer_identity_changed`: a new phone, a reinstalled app, or someone
    /// else): noted for concierges, who should check before sharing anything private.
    /// Applied as it is stored: never a turn.
    IdentityChanged,
    /// The platform reports a fault of the channel itself rather than of one message
    /// (WhatsApp's `value.errors`: a rate limit hit, an account problem). The event's contact
    /// is the channel's own number; no conversation is touched: the store keeps it on the
    /// channel's health record, the gateway counts it and a rate limit slows the channel.
    ChannelError(ChannelFault),
}

/// A fault the platform reported about a channel, bounded in size (the platform's text is
/// data, shown to concierges as it came).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFault {
    /// The platform's error code, when it gave one (`130429`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ChannelFault {
    /// The longest title or detail kept, in characters.
    pub const MAX_TEXT: usize = 500;

    pub fn new(code: Option<String>, title: &str, detail: Option<&str>) -> Self {
        let clip = |text: &str| text.trim().chars().take(Self::MAX_TEXT).collect::<String>();
        Self {
            code: code.map(|c| c.chars().take(40).collect()),
            title: clip(title),
            detail: detail.map(clip).filter(|d| !d.is_empty()),
        }
    }
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Message(_) => "message",
            EventKind::Edit { .. } => "edit",
            EventKind::Status { .. } => "status",
            EventKind::Typing => "typing",
            EventKind::Started { .. } => "started",
            EventKind::WindowClosed { .. } => "window_closed",
            EventKind::ContactChanged { .. } => "contact_changed",
            EventKind::IdentityChanged => "identity_changed",
            EventKind::ChannelError(_) => "channel_error",
        }
    }

    /// What the store notes for concierges when it applies the event, if anything.
    pub fn note(&self) -> Option<String> {
        match self {
            EventKind::ContactChanged { address, .. } => Some(format!(
                "The customer's number changed to {address}: replies go there from now on; \
                 the old number stays linked to this conversation."
            )),
            EventKind::IdentityChanged => Some(
                "The platform reports that the customer's identity changed (a new phone, a \
                 reinstalled app, or someone else): check who you are talking to before \
                 sharing anything private."
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Applied as it is stored, without a turn: a delivery status, a contact's change.
    pub fn applied_at_ingest(&self) -> bool {
        matches!(
            self,
            EventKind::Status { .. }
                | EventKind::ContactChanged { .. }
                | EventKind::IdentityChanged
        )
    }

    /// About no conversation: kept by the store apart from every thread (typing is not
    /// stored at all).
    pub fn outside_conversations(&self) -> bool {
        matches!(self, EventKind::Typing | EventKind::ChannelError(_))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub platform_id: PlatformMessageId,
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<PlatformMessageId>,
    /// The name the platform shows for the customer, when it sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The budget this message came past where it was received (the web chat's new
    /// conversations per client address): it is stored as usual, but the agents do not
    /// answer it; the customer gets the holding reply. Set by the gateway, never a platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_budget: Option<String>,
}
