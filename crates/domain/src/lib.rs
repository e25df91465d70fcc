//! The conversation model shared by every layer: ids, contacts, messages, content, inbound
//! events and thread state, and what every layer's configuration shares (a `Secret`, a located
//! `Problem`, "did you mean"). Pure data and rules; it knows nothing of I/O, HTTP or platforms.

pub mod commerce;
mod content;
mod event;
mod ids;
mod message;
mod priority;
mod problem;
mod secret;
pub mod suggest;
mod thread;

pub use commerce::{CartLine, Product};
pub use content::{
    Choice, ContactCard, Content, KeptMedia, MAX_DISPLAY_NAME, MAX_FORM_BYTES, MediaId, MediaKind,
    MediaRef, OrderItem, StoredMedia, bounded_answers, clip_text, display_name, place_label,
    split_text, text_units,
};
pub use event::{ChannelFault, EventKind, InboundEvent, InboundMessage};
pub use ids::{
    ChannelId, ContactId, ConversationId, ConversationKey, EventId, IdError, MessageId,
    PlatformMessageId,
};
pub use message::{Author, DeliveryStatus, Direction, Message};
pub use priority::Priority;
pub use problem::{Problem, Problems};
pub use secret::Secret;
pub use thread::ThreadState;

/// Milliseconds since the Unix epoch: the one timestamp type stored and exchanged.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
