//! The Content-Security-Policy of the pages the gateway serves (the web chat, the console):
//! their script and style are files of the gateway's own origin (`/assets/…`), nothing inline
//! runs or applies, so markup injected into a page cannot run or restyle anything.

/// The policy of a page that loads its script and style from its own origin, talks only to
/// that origin, and which the `frame_ancestors` sources may embed; `images` are the sources
/// it may show pictures from besides its own (the web chat's product cards: `https:`).
pub fn policy(frame_ancestors: &str, images: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{images}; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_inline_is_allowed() {
        let policy = policy("'none'", "");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(!policy.contains("sha256-"), "{policy}");
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("style-src 'self';"), "{policy}");
        assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
    }

    #[test]
    fn the_pages_have_no_inline_script_style_or_handler() {
        for page in [
            include_str!("assets/console.html"),
            include_str!("assets/chat.html"),
        ] {
            assert!(!page.contains("<style"), "an inline style element");
            assert!(!page.contains(" style="), "an inline style attribute");
            assert!(!page.contains("<script>"), "an inline script");
            // Every script element is a file of the gateway's or a JSON data block.
            for tag in page.split("<script").skip(1) {
                assert!(
                    tag.starts_with(" src=\"/assets/")
                        || tag.starts_with(" type=\"application/json\""),
                    "{tag}"
                );
            }
            // No `on…=` handler attribute: ` on` then letters then `=`.
            for (at, _) in page.match_indices(" on") {
                let name: String = page[at + 3..]
                    .chars()
                    .take_while(char::is_ascii_lowercase)
                    .collect();
                let after = page[at + 3 + name.len()..].chars().next();
                assert!(
                    name.is_empty() || after != Some('='),
                    "an inline handler: on{name}"
                );
            }
        }
    }
}
