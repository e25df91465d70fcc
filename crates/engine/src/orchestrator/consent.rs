//! Opting out and back in by keyword, before any other responder and without the LLM: a
//! customer whose whole message is a stop word (STOP, ARRÊT, UNSUBSCRIBE, DÉSABONNER…)
//! withdraws their marketing consent on the channel, a start word (START, SUBSCRIBE…)
//! grants it again; the ledger records the message as its proof, once per inbox event, and
//! the customer gets one confirmation in the keyword's language. `[consent]`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;

use super::responder::{DecidedBy, Decision, Responder, ResponderError, Turn};
use crate::handoff::keywords::words;
use crate::webhooks::{OutEvent, Webhooks};
use concierge_domain::{Author, Content};
use concierge_store::{NewConsent, Purpose};

/// `[consent]` of `concierge.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentConfig {
    /// Whole messages that withdraw marketing consent, per language.
    pub stop_words: BTreeMap<String, Vec<String>>,
    /// Whole messages that grant it again, per language.
    pub start_words: BTreeMap<String, Vec<String>>,
    /// The confirmation of a withdrawal, per language (the keyword's).
    pub stop_reply: BTreeMap<String, String>,
    /// The confirmation of a grant, per language.
    pub start_reply: BTreeMap<String, String>,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        let list = |items: &[(&str, &[&str])]| {
            items
                .iter()
                .map(|(lang, words)| {
                    (
                        lang.to_string(),
                        words.iter().map(|w| w.to_string()).collect(),
                    )
                })
                .collect()
        };
        let text = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(lang, t)| (lang.to_string(), t.to_string()))
                .collect()
        };
        ConsentConfig {
            stop_words: list(&[
                ("en", &["stop", "unsubscribe", "stop all", "opt out"]),
                (
                    "fr",
                    &[
                        "arrêt",
                        "arret",
                        "désabonner",
                        "se désabonner",
                        "désinscrire",
                    ],
                ),
            ]),
            start_words: list(&[
                ("en", &["start", "subscribe", "opt in"]),
                ("fr", &["abonner", "s'abonner", "réabonner"]),
            ]),
            stop_reply: text(&[
                (
                    "en",
                    "You will not receive our offers any more. Write START to receive them again.",
                ),
                (
                    "fr",
                    "Vous ne recevrez plus nos offres. Écrivez START pour les recevoir à nouveau.",
                ),
            ]),
            start_reply: text(&[
                (
                    "en",
                    "Thank you: you will receive our offers again. Write STOP to stop them.",
                ),
                (
                    "fr",
                    "Merci : vous recevrez à nouveau nos offres. Écrivez STOP pour les arrêter.",
                ),
            ]),
        }
    }
}

impl ConsentConfig {
    /// What is wrong with the section, as (key, problem) pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (lang, _) in self
            .stop_words
            .iter()
            .filter(|(l, _)| !self.stop_reply.contains_key(*l))
        {
            problems.push((
                "stop_reply",
                format!("has no text for `{lang}`, which stop_words has"),
            ));
        }
        for (lang, _) in self
            .start_words
            .iter()
            .filter(|(l, _)| !self.start_reply.contains_key(*l))
        {
            problems.push((
                "start_reply",
                format!("has no text for `{lang}`, which start_words has"),
            ));
        }
        problems
    }
}

/// The keyword a whole message is: whether it grants, and its language.
struct Found<'a> {
    granted: bool,
    lang: &'a str,
}

pub struct ConsentResponder {
    /// (words of the phrase, granted, language).
    phrases: Vec<(Vec<String>, bool, String)>,
    config: ConsentConfig,
    /// Tells `[[webhooks]]` of each decision (`consent.changed`).
    webhooks: Webhooks,
}

impl ConsentResponder {
    pub fn new(config: ConsentConfig) -> ConsentResponder {
        let mut phrases = Vec::new();
        for (granted, table) in [(false, &config.stop_words), (true, &config.start_words)] {
            for (lang, list) in table {
                for phrase in list {
                    let w = words(phrase);
                    if !w.is_empty() {
                        phrases.push((w, granted, lang.clone()));
                    }
                }
            }
        }
        ConsentResponder {
            phrases,
            config,
            webhooks: Webhooks::none(),
        }
    }

    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    fn find(&self, text: &str) -> Option<Found<'_>> {
        let said = words(text);
        self.phrases
            .iter()
            .find(|(phrase, _, _)| *phrase == said)
            .map(|(_, granted, lang)| Found {
                granted: *granted,
                lang,
            })
    }
}

#[async_trait]
impl Responder for ConsentResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let Some(text) = turn.message.content.plain_text() else {
            return Ok(None);
        };
        let Some(found) = self.find(text) else {
            return Ok(None);
        };
        let event = &turn.entry.event;
        let consent = NewConsent {
            channel: event.channel.clone(),
            contact: event.contact.clone(),
            purpose: Purpose::Marketing,
            granted: found.granted,
            source: "chat_keyword".to_string(),
            proof: Some(concierge_domain::clip_text(text, 200)),
            at: event.at,
            key: Some(format!("event:{}:{}", event.channel, event.event_id)),
        };
        turn.store.record_consent(&consent).await?;
        // Told whether or not this replay recorded it: the event's id is the decision's key.
        self.webhooks.tell(OutEvent::consent(&consent)).await;
        let replies = if found.granted {
            &self.config.start_reply
        } else {
            &self.config.stop_reply
        };
        let reply = replies
            .get(found.lang)
            .or_else(|| replies.get("en"))
            .or_else(|| replies.values().next())
            .cloned()
            .unwrap_or_default();
        let mut decision = Decision::new(
            DecidedBy::Consent,
            vec![(Author::System, Content::text(reply))],
        );
        decision.notes.push(concierge_store::NewNote {
            author: "gateway".to_string(),
            body: format!(
                "the customer {} marketing messages on this channel (\"{}\")",
                if found.granted {
                    "agreed again to"
                } else {
                    "opted out of"
                },
                concierge_domain::clip_text(text, 60)
            ),
        });
        Ok(Some(decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_message_that_is_a_keyword_counts_and_nothing_else() {
        let consent = ConsentResponder::new(ConsentConfig::default());
        for (text, granted, lang) in [
            ("STOP", false, "en"),
            ("  stop! ", false, "en"),
            ("Arrêt", false, "fr"),
            ("ARRET", false, "fr"),
            ("Se désabonner", false, "fr"),
            ("START", true, "en"),
            ("s’abonner", true, "fr"),
        ] {
            let found = consent.find(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((found.granted, found.lang), (granted, lang), "{text}");
        }
        for text in [
            "stop sending me the wrong size",
            "Can I start a return?",
            "",
            "stopper",
        ] {
            assert!(consent.find(text).is_none(), "{text}");
        }
        assert!(ConsentConfig::default().check().is_empty());
    }
}
