//! What of a webhook request may be kept: everything but its credentials. A kept request is
//! replayed later, re-signed for the target's own secrets, so nothing is lost by dropping
//! the signature, and nothing secret reaches the store, an export or a laptop.

use std::borrow::Cow;

use http::HeaderMap;

use super::WebhookRequest;

/// Headers that carry a platform's signature or a secret (names in lower case).
const CREDENTIAL_HEADERS: &[&str] = &[
    "x-hub-signature",
    "x-hub-signature-256",
    "x-twilio-signature",
    "x-telegram-bot-api-secret-token",
    "authorization",
    "proxy-authorization",
    "cookie",
];

/// Query parameters that are the secret itself (BlueBubbles authenticates by the URL).
const CREDENTIAL_PARAMS: &[&str] = &["secret", "password", "guid"];

/// The request's query string and headers without credentials, as kept with the raw
/// webhook: the query string keeps every other parameter byte for byte (`None` when nothing
/// is left), the headers keep their order.
pub fn kept_request(request: &WebhookRequest) -> (Option<String>, Vec<(String, String)>) {
    (
        request
            .raw_query
            .as_deref()
            .map(without_credential_params)
            .filter(|q| !q.is_empty()),
        headers_without_credentials(&request.headers),
    )
}

fn headers_without_credentials(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !CREDENTIAL_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A query string without its credential parameters, the others untouched and in order.
pub(crate) fn without_credential_params(query: &str) -> String {
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
    use bytes::Bytes;

    fn request(query: Option<&str>, headers: &[(&str, &str)]) -> WebhookRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        WebhookRequest {
            headers: map,
            query: Default::default(),
            raw_query: query.map(str::to_string),
            body: Bytes::new(),
        }
    }

    #[test]
    fn signatures_and_secrets_are_dropped_the_rest_kept_in_order() {
        let (query, headers) = kept_request(&request(
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
            ],
        ));
        assert_eq!(query.as_deref(), Some("a=1&b=x%20y&c"));
        assert_eq!(
            headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("user-agent".to_string(), "facebookexternalua".to_string()),
                ("x-forwarded-for".to_string(), "10.0.0.1".to_string()),
            ]
        );
    }

    #[test]
    fn a_query_of_nothing_but_the_secret_is_no_query() {
        let (query, _) = kept_request(&request(Some("secret=s3"), &[]));
        assert_eq!(query, None);
        let (query, _) = kept_request(&request(None, &[]));
        assert_eq!(query, None);
    }
}
