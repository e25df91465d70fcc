//! What of a webhook request may be kept: everything but its credentials. A kept request is
//! replayed later, re-signed for the target's own secrets, so nothing is lost by dropping
//! the signature, and nothing secret reaches the store, an export or a laptop.

use std::borrow::Cow;

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// Headers that carry a platform's signature or a secret (names in lower case).
const CREDENTIAL_HEADERS: &[&str] = &[
    "x-hub-signature",
    "x-hub-signature-256",
    "x-twilio-signature",
    "x-telegram-bot-api-secret-token",
    "authorization",
    "proxy-authorization",
    "cookie",
    // The web chat's visitor key: whoever holds it reads that visitor's history and posts as
    // them. It is kept as a pseudonym instead (see `VISITOR_HEADER`).
    WEBCHAT_KEY_HEADER,
];

/// The web chat's visitor key header (the web chat adapter reads it; it is never kept).
pub const WEBCHAT_KEY_HEADER: &str = "x-webchat-key";

/// Stands for the web chat's visitor key in a kept request: a one-way digest of it, so a
/// replay can tell one visitor's messages from another's without the key itself.
pub const VISITOR_HEADER: &str = "x-webchat-visitor";

/// Query parameters that are the secret itself (BlueBubbles authenticates by the URL).
const CREDENTIAL_PARAMS: &[&str] = &["secret", "password", "guid"];

/// The request's query string and headers without credentials, as kept with the raw
/// webhook: the query string keeps every other parameter byte for byte (`None` when nothing
/// is left), the headers keep their order.
pub fn kept_request(
    raw_query: Option<&str>,
    headers: &HeaderMap,
) -> (Option<String>, Vec<(String, String)>) {
    (
        raw_query
            .map(without_credential_params)
            .filter(|q| !q.is_empty()),
        headers_without_credentials(headers),
    )
}

fn headers_without_credentials(headers: &HeaderMap) -> Vec<(String, String)> {
    // Only the gateway writes the pseudonym: one a client sent is dropped.
    let pairs = headers
        .iter()
        .filter(|(name, _)| name.as_str() != VISITOR_HEADER)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        });
    kept_headers(pairs)
}

/// Headers as they may be kept: credentials dropped, the visitor key replaced by its
/// pseudonym, the others untouched and in order. Also applied to requests kept before a
/// header was known to be a credential (the SQLite migration, an export from Redis); on a
/// request kept already it changes nothing.
pub fn kept_headers(headers: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == WEBCHAT_KEY_HEADER {
            kept.push((VISITOR_HEADER.to_string(), visitor_pseudonym(&value)));
        } else if !CREDENTIAL_HEADERS.contains(&lower.as_str()) {
            kept.push((name, value));
        }
    }
    kept
}

/// A visitor key's pseudonym: a one-way digest, the same for the same key.
pub fn visitor_pseudonym(key: &str) -> String {
    let digest = Sha256::new_with_prefix(b"concierge-visitor\0")
        .chain_update(key.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// Whether a kept request still holds a credential that `kept_headers` would drop.
pub fn holds_credential(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(name, _)| CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
}

/// A query string without its credential parameters, the others untouched and in order.
pub fn without_credential_params(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_credential_param(pair))
        .collect::<Vec<_>>()
        .join("&")
}

fn is_credential_param(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    let name = name.replace('+', " ");
    let name: Cow<'_, str> = percent_encoding::percent_decode_str(&name).decode_utf8_lossy();
    CREDENTIAL_PARAMS
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: Option<&str>, headers: &[(&str, &str)]) -> (Option<String>, HeaderMap) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        (query.map(str::to_string), map)
    }

    fn kept(request: (Option<String>, HeaderMap)) -> (Option<String>, Vec<(String, String)>) {
        kept_request(request.0.as_deref(), &request.1)
    }

    #[test]
    fn signatures_and_secrets_are_dropped_the_rest_kept_in_order() {
        let (query, headers) = kept(request(
            Some("a=1&secret=s3&b=x%20y&Password=p&gu%69d=g&c"),
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", "sha256=00"),
                ("X-Hub-Signature", "sha1=00"),
                ("x-twilio-signature", "abc="),
                ("x-telegram-bot-api-secret-token", "tok"),
                ("authorization", "Bearer t"),
                ("cookie", "s=1"),
                ("user-agent", "facebookexternalua"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-webchat-visitor", "forged"),
                ("x-webchat-key", "visitor-key-0123456789"),
            ],
        ));
        assert_eq!(query.as_deref(), Some("a=1&b=x%20y&c"));
        assert_eq!(
            headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("user-agent".to_string(), "facebookexternalua".to_string()),
                ("x-forwarded-for".to_string(), "10.0.0.1".to_string()),
                (
                    VISITOR_HEADER.to_string(),
                    visitor_pseudonym("visitor-key-0123456789")
                ),
            ]
        );
        assert!(!holds_credential(&headers));
        assert_eq!(
            kept_headers(headers.clone()),
            headers,
            "kept once, kept as is"
        );
    }

    #[test]
    fn a_query_of_nothing_but_the_secret_is_no_query() {
        let (query, _) = kept(request(Some("secret=s3"), &[]));
        assert_eq!(query, None);
        let (query, _) = kept(request(None, &[]));
        assert_eq!(query, None);
    }
}
