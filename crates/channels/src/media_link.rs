//! Links that let a platform (Twilio fetches a reply's `MediaUrl` itself) fetch one outbound
//! media file without a token: the media id and an expiry, signed with a key the channel
//! derives from its own secret, so every instance holding the channel's file mints and checks
//! the same links, and a link is refused once it expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use concierge_domain::{ChannelId, MediaId};

/// The path under which the gateway serves signed media: `/media/out/{channel}/{id}`.
pub const PATH: &str = "/media/out";

/// Mints and checks one channel's media links.
#[derive(Clone)]
pub struct MediaLinks {
    key: [u8; 32],
    /// The gateway's public origin, as the platform reaches it (`https://shop.example`).
    origin: String,
}

impl std::fmt::Debug for MediaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLinks")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl MediaLinks {
    /// Links under `origin`, signed with a key drawn from `secret` for this use alone.
    pub fn new(secret: &[u8], origin: &str) -> MediaLinks {
        let mut mac = mac(secret);
        mac.update(b"concierge media links v1");
        MediaLinks {
            key: mac.finalize().into_bytes().into(),
            origin: origin.trim_end_matches('/').to_string(),
        }
    }

    /// The origin (`scheme://host[:port]`) of a URL, when it has one.
    pub fn origin_of(url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        url.host_str()?;
        Some(url.origin().ascii_serialization())
    }

    /// The link to media `id` of `channel`, good until `expires` (seconds since the epoch).
    pub fn url(&self, channel: &ChannelId, id: &MediaId, expires: i64) -> String {
        format!(
            "{}{PATH}/{channel}/{id}?expires={expires}&signature={}",
            self.origin,
            self.signature(channel, id, expires)
        )
    }

    /// Whether `signature` signs media `id` of `channel` until `expires`, and `now` (seconds)
    /// is not past it. Compared in constant time.
    pub fn valid(
        &self,
        channel: &ChannelId,
        id: &MediaId,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let mut mac = mac(&self.key);
        mac.update(message(channel, id, expires).as_bytes());
        now <= expires && mac.verify_slice(&given).is_ok()
    }

    fn signature(&self, channel: &ChannelId, id: &MediaId, expires: i64) -> String {
        let mut mac = mac(&self.key);
        mac.update(message(channel, id, expires).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn message(channel: &ChannelId, id: &MediaId, expires: i64) -> String {
    format!("{channel}\n{id}\n{expires}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (ChannelId, MediaId) {
        (
            ChannelId::parse("twilio").unwrap(),
            MediaId::parse(&"ab".repeat(32)).unwrap(),
        )
    }

    #[test]
    fn a_link_holds_until_it_expires_and_only_for_what_it_names() {
        let links = MediaLinks::new(b"auth-token", "https://shop.example/");
        let (channel, id) = ids();
        let url = links.url(&channel, &id, 1_000);
        assert!(url.starts_with(&format!(
            "https://shop.example/media/out/twilio/{id}?expires=1000&signature="
        )));
        let signature = url.rsplit('=').next().unwrap();
        assert!(links.valid(&channel, &id, 1_000, signature, 999));
        assert!(links.valid(&channel, &id, 1_000, signature, 1_000));
        assert!(
            !links.valid(&channel, &id, 1_000, signature, 1_001),
            "expired"
        );
        assert!(
            !links.valid(&channel, &id, 2_000, signature, 999),
            "another expiry"
        );
        let other = MediaId::parse(&"cd".repeat(32)).unwrap();
        assert!(!links.valid(&channel, &other, 1_000, signature, 999));
        let elsewhere = ChannelId::parse("twilio-2").unwrap();
        assert!(!links.valid(&elsewhere, &id, 1_000, signature, 999));
        let rekeyed = MediaLinks::new(b"another token", "https://shop.example");
        assert!(!rekeyed.valid(&channel, &id, 1_000, signature, 999));
        assert!(!links.valid(&channel, &id, 1_000, "zz", 999));
    }

    #[test]
    fn the_origin_of_a_webhook_url() {
        assert_eq!(
            MediaLinks::origin_of("https://shop.example:8443/webhooks/twilio?x=1").as_deref(),
            Some("https://shop.example:8443")
        );
        assert_eq!(MediaLinks::origin_of("not a url"), None);
    }
}
