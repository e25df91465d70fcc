//! "Did you mean …?": the known name closest to a misspelt one (edit distance, a swap of two letters counting as one, via
//! `strsim`), and the known names serde lists when it refuses an unknown key or variant.

/// The candidate closest to `word`, when it is close enough to be the one meant: at most a
/// third of the word's letters off (and at least one letter right), case ignored.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| !c.is_empty() && *c != word)
        .map(|c| (strsim::osa_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit && *d < word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` for the closest candidate, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"): the
/// known name closest to `x`.
pub fn from_serde(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (word, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(word, known).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_name_is_suggested_a_far_one_is_not() {
        let tools = ["search_catalogue", "order_status", "list_my_orders"];
        assert_eq!(closest("search_catalog", tools), Some("search_catalogue"));
        assert_eq!(closest("Order_Status", tools), Some("order_status"));
        assert_eq!(closest("refund_everything", tools), None);
        assert_eq!(closest("ab", ["xy"]), None);
        assert_eq!(
            did_you_mean("servr", ["server", "store"]),
            "; did you mean `server`?"
        );
    }

    #[test]
    fn serde_messages_give_the_known_names() {
        let m = "unknown field `servr`, expected one of `server`, `store`, `faq`";
        assert_eq!(from_serde(m).as_deref(), Some("server"));
        let m = "unknown variant `opanai`, expected one of `openai`, `anthropic`";
        assert_eq!(from_serde(m).as_deref(), Some("openai"));
        let m = "unknown field `titel`, expected `title` or `greeting`";
        assert_eq!(from_serde(m).as_deref(), Some("title"));
        assert_eq!(from_serde("invalid type: string"), None);
    }
}
