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
        }
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
