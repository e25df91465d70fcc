//! Identifier newtypes, parsed once at the edge so that an invalid id cannot travel inward.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a string was refused as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} bytes")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadChar { kind: &'static str, found: char },
}

/// Checks the rules every opaque id shares: non-empty, bounded, no control characters.
fn check_opaque(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if let Some(found) = value.chars().find(|c| c.is_control()) {
        return Err(IdError::BadChar { kind, found });
    }
    Ok(())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses an id, refusing empty, oversized or control-character values.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_opaque($kind, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// The customer on one channel: a WhatsApp wa_id or business-scoped user id, a Telegram
    /// user id, an iMessage handle, a web chat visitor id.
    ContactId, "contact id", 256
);
opaque_id!(
    /// The platform's id of one inbound event, the dedupe key together with the channel.
    EventId, "event id", 512
);
opaque_id!(
    /// The platform's id of a message (inbound, or outbound once the platform accepted it).
    PlatformMessageId, "platform message id", 512
);

/// A channel instance: the file stem of `channels/<id>.toml`. Lowercase letters, digits, `-`
/// and `_`, so it is safe in a URL path, a file name and a store key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId(String);

impl ChannelId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_opaque("channel id", &value, 64)?;
        if let Some(found) = value
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(IdError::BadChar {
                kind: "channel id",
                found,
            });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChannelId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<ChannelId> for String {
    fn from(id: ChannelId) -> String {
        id.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thread of one contact on one channel. Derived from the pair, so every instance and
/// every restart computes the same id without a lookup: 32 hex digits of SHA-256.
///
/// ```
/// use concierge::domain::{ChannelId, ContactId, ConversationId};
///
/// let whatsapp = ChannelId::parse("whatsapp").unwrap();
/// let ana = ContactId::parse("15550100001").unwrap();
/// let id = ConversationId::derive(&whatsapp, &ana);
/// assert_eq!(id, ConversationId::derive(&whatsapp, &ana));
/// assert_eq!(id.as_str().len(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

impl ConversationId {
    pub fn derive(channel: &ChannelId, contact: &ContactId) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(channel.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(contact.as_str().as_bytes());
        let digest = hasher.finalize();
        Self(hex::encode(&digest[..16]))
    }

    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_opaque("conversation id", &value, 32)?;
        if let Some(found) = value.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(IdError::BadChar {
                kind: "conversation id",
                found,
            });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ConversationId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> String {
        id.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Our own id of a message: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(uuid::Uuid);

impl MessageId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        uuid::Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| IdError::BadChar {
                kind: "message id",
                found: value
                    .chars()
                    .find(|c| !c.is_ascii_hexdigit() && *c != '-')
                    .unwrap_or('?'),
            })
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_id_is_stable_and_separates_pairs() {
        let web = ChannelId::parse("web").unwrap();
        let a = ContactId::parse("a").unwrap();
        let b = ContactId::parse("b").unwrap();
        assert_eq!(
            ConversationId::derive(&web, &a),
            ConversationId::derive(&web, &a)
        );
        assert_ne!(
            ConversationId::derive(&web, &a),
            ConversationId::derive(&web, &b)
        );
        let id = ConversationId::derive(&web, &a);
        assert_eq!(ConversationId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn channel_ids_are_url_and_key_safe() {
        assert!(ChannelId::parse("whatsapp-main_2").is_ok());
        assert!(ChannelId::parse("Whats App").is_err());
        assert!(ChannelId::parse("../etc").is_err());
        assert!(ChannelId::parse("").is_err());
    }

    #[test]
    fn opaque_ids_refuse_control_characters_and_oversize() {
        assert!(ContactId::parse("+33 6 12").is_ok());
        assert!(ContactId::parse("a\nb").is_err());
        assert!(ContactId::parse("x".repeat(257)).is_err());
    }
}
