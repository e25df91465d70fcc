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

/// One thread of one contact on one channel: 32 hex digits. A new conversation's id is
/// keyed with the deployment's [`ConversationKey`], so nobody who knows a customer's phone
/// number can compute it; a conversation stored before ids were keyed keeps its
/// [`legacy`](ConversationId::legacy) id, which the store finds by that conversation's row.
///
/// ```
/// use concierge_domain::{ChannelId, ContactId, ConversationId, ConversationKey};
///
/// let whatsapp = ChannelId::parse("whatsapp").unwrap();
/// let ana = ContactId::parse("15550100001").unwrap();
/// let key = ConversationKey::generate();
/// let id = key.conversation(&whatsapp, &ana);
/// assert_eq!(id, key.conversation(&whatsapp, &ana));
/// assert_ne!(id, ConversationKey::generate().conversation(&whatsapp, &ana));
/// assert_ne!(id, ConversationId::legacy(&whatsapp, &ana));
/// assert_eq!(id.as_str().len(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

impl ConversationId {
    /// The id conversations were given before ids were keyed: SHA-256 of the pair, which
    /// anyone can compute. Only looked up, for data stored then; never given to a new one.
    pub fn legacy(channel: &ChannelId, contact: &ContactId) -> Self {
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

/// The per-deployment secret new conversation ids are keyed with: 32 random bytes made at
/// the first start and kept in the store, so every instance and every restart computes the
/// same id for a pair without a lookup, and nobody without the store can.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationKey([u8; 32]);

impl ConversationKey {
    pub const LEN: usize = 32;

    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The key as the store keeps it; `None` unless exactly [`Self::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id a new conversation of this pair gets: HMAC-SHA-256 under the key.
    pub fn conversation(&self, channel: &ChannelId, contact: &ContactId) -> ConversationId {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(channel.as_str().as_bytes());
        mac.update(&[0u8]);
        mac.update(contact.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        ConversationId(hex::encode(&digest[..16]))
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConversationKey(..)")
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
        let key = ConversationKey::generate();
        assert_eq!(key.conversation(&web, &a), key.conversation(&web, &a));
        assert_ne!(key.conversation(&web, &a), key.conversation(&web, &b));
        let id = key.conversation(&web, &a);
        assert_eq!(ConversationId::parse(id.as_str()).unwrap(), id);
        let same = ConversationKey::from_bytes(key.as_bytes()).unwrap();
        assert_eq!(same.conversation(&web, &a), id);
        assert!(ConversationKey::from_bytes(&[0; 31]).is_none());
        assert_eq!(format!("{key:?}"), "ConversationKey(..)");
    }

    #[test]
    fn legacy_ids_are_the_unkeyed_hash_stored_data_has() {
        let web = ChannelId::parse("web").unwrap();
        let a = ContactId::parse("a").unwrap();
        // sha256("web\0a")[..16]: what every conversation stored before keyed ids carries.
        let mut hasher = Sha256::new();
        hasher.update(b"web\0a");
        let expected = hex::encode(&hasher.finalize()[..16]);
        assert_eq!(ConversationId::legacy(&web, &a).as_str(), expected);
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
