//! Phrases with which a customer asks for a person, per language, matched on whole words
//! with accents, case and punctuation ignored: the handoff trigger that needs no LLM.

use std::collections::BTreeMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lowercase words without accents; apostrophes and punctuation separate words.
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct Keywords {
    phrases: Vec<(String, Vec<String>)>,
}

impl Keywords {
    pub fn new(by_language: &BTreeMap<String, Vec<String>>) -> Self {
        let phrases = by_language
            .values()
            .flatten()
            .map(|p| (p.clone(), words(p)))
            .filter(|(_, w)| !w.is_empty())
            .collect();
        Self { phrases }
    }

    /// The configured phrase the text contains, if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = words(text);
        self.phrases
            .iter()
            .find(|(_, phrase)| text.windows(phrase.len()).any(|w| w == phrase.as_slice()))
            .map(|(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::QueueConfig;

    #[test]
    fn defaults_catch_requests_for_a_person_in_english_and_french() {
        let k = Keywords::new(&QueueConfig::default().keywords);
        assert!(k.find("Can I talk to a HUMAN please?").is_some());
        assert!(k.find("je veux parler à quelqu’un").is_some());
        assert!(k.find("Je voudrais un conseiller").is_some());
        assert!(k.find("Passez-moi le service client !").is_some());
        assert!(k.find("Where is my order ML-10421?").is_none());
        // Whole words only: "humane" is not "human".
        assert!(k.find("a humane candle factory?").is_none());
    }
}
