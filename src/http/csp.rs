//! The Content-Security-Policy of the pages the gateway serves (the web chat, the console):
//! their inline script and style run because their SHA-256 hashes are listed, never through
//! `'unsafe-inline'`, so markup injected into a page cannot run or restyle anything.

use std::fmt::Write;

use base64::Engine;
use sha2::{Digest, Sha256};

/// The `'sha256-…'` sources of every `<tag>…</tag>` element of `html` (an element opened with
/// attributes, such as a JSON data block, is not counted), space-separated.
fn inline_hashes(html: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut sources = String::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else {
            break;
        };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        if !sources.is_empty() {
            sources.push(' ');
        }
        let _ = write!(sources, "'sha256-{hash}'");
        rest = &body[end + close.len()..];
    }
    if sources.is_empty() {
        // Nothing inline to allow.
        sources.push_str("'none'");
    }
    sources
}

/// The policy of a page whose scripts and styles are all inline in `html`, which talks only
/// to its own origin, and which the `frame_ancestors` sources may embed.
pub fn policy(html: &str, frame_ancestors: &str) -> String {
    format!(
        "default-src 'self'; script-src {}; style-src {}; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}",
        inline_hashes(html, "script"),
        inline_hashes(html, "style"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_inline_element_is_hashed_and_nothing_is_unsafe() {
        let html =
            "<style>p{}</style><script type=\"application/json\">{}</script><script>go()</script>";
        let expected = |text: &str| {
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text))
            )
        };
        let policy = policy(html, "'none'");
        assert!(
            policy.contains(&format!("script-src {};", expected("go()"))),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src {};", expected("p{}"))),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
        assert!(super::policy("<p>", "'self'").contains("script-src 'none';"));
    }
}
