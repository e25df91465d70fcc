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
    /// Whole messages that withdraw every message, utility ones (about orders) too.
    pub stop_all_words: BTreeMap<String, Vec<String>>,
    /// Whole messages that grant it again (and utility messages too, after a full opt-out),
    /// per language.
    pub start_words: BTreeMap<String, Vec<String>>,
    /// The confirmation of a withdrawal, per language (the keyword's).
    pub stop_reply: BTreeMap<String, String>,
    /// The confirmation of a full opt-out, per language.
    pub stop_all_reply: BTreeMap<String, String>,
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
                ("en", &["stop", "unsubscribe", "opt out"]),
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
            stop_all_words: list(&[
                ("en", &["stop all", "stop everything", "unsubscribe all"]),
                (
                    "fr",
                    &["stop tout", "arrêt total", "arret total", "tout arrêter"],
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
            stop_all_reply: text(&[
                (
                    "en",
                    "You will not receive any message from us any more, not even about your orders, unless you write to us. Write START to receive them again.",
                ),
                (
                    "fr",
                    "Vous ne recevrez plus aucun message de notre part, même sur vos commandes, sauf si vous nous écrivez. Écrivez START pour les recevoir à nouveau.",
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
            .stop_all_words
            .iter()
            .filter(|(l, _)| !self.stop_all_reply.contains_key(*l))
        {
            problems.push((
                "stop_all_reply",
                format!("has no text for `{lang}`, which stop_all_words has"),
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

/// What a keyword says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    /// No more offers.
    Stop,
    /// No more messages at all (utility ones too).
    StopAll,
    /// Offers again (and utility messages, after a full opt-out).
    Start,
}

/// The keyword a whole message is, and its language.
struct Found<'a> {
    keyword: Keyword,
    lang: &'a str,
}

pub struct ConsentResponder {
    /// (words of the phrase, what it says, language).
    phrases: Vec<(Vec<String>, Keyword, String)>,
    config: ConsentConfig,
    /// Tells `[[webhooks]]` of each decision (`consent.changed`).
    webhooks: Webhooks,
}

impl ConsentResponder {
    pub fn new(config: ConsentConfig) -> ConsentResponder {
        let mut phrases = Vec::new();
        for (keyword, table) in [
            (Keyword::StopAll, &config.stop_all_words),
            (Keyword::Stop, &config.stop_words),
            (Keyword::Start, &config.start_words),
        ] {
            for (lang, list) in table {
                for phrase in list {
                    let w = words(phrase);
                    if !w.is_empty() {
                        phrases.push((w, keyword, lang.clone()));
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
            .map(|(_, keyword, lang)| Found {
                keyword: *keyword,
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
        let granted = found.keyword == Keyword::Start;
        let key = format!("event:{}:{}", event.channel, event.event_id);
        let mut purposes = vec![Purpose::Marketing];
        match found.keyword {
            Keyword::StopAll => purposes.push(Purpose::Utility),
            // After a full opt-out, START brings the order messages back too.
            Keyword::Start => {
                let ledger = turn.store.consents(&event.channel, &event.contact).await?;
                if concierge_store::consent::latest(&ledger, Purpose::Utility)
                    .is_some_and(|r| !r.consent.granted)
                {
                    purposes.push(Purpose::Utility);
                }
            }
            Keyword::Stop => {}
        }
        for purpose in &purposes {
            let consent = NewConsent {
                channel: event.channel.clone(),
                contact: event.contact.clone(),
                purpose: *purpose,
                granted,
                source: "chat_keyword".to_string(),
                proof: Some(concierge_domain::clip_text(text, 200)),
                at: event.at,
                key: Some(match purpose {
                    Purpose::Marketing => key.clone(),
                    Purpose::Utility => format!("{key}:utility"),
                }),
            };
            turn.store.record_consent(&consent).await?;
            // Told whether or not this replay recorded it: the decision's key is its id.
            self.webhooks.tell(OutEvent::consent(&consent)).await;
        }
        let replies = match found.keyword {
            Keyword::Start => &self.config.start_reply,
            Keyword::Stop => &self.config.stop_reply,
            Keyword::StopAll => &self.config.stop_all_reply,
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
        let what = match (found.keyword, purposes.len()) {
            (Keyword::Start, 1) => "agreed again to marketing messages",
            (Keyword::Start, _) => "agreed again to every message (offers and order updates)",
            (Keyword::Stop, _) => "opted out of marketing messages",
            (Keyword::StopAll, _) => "opted out of every message, order updates too",
        };
        decision.notes.push(concierge_store::NewNote {
            author: "gateway".to_string(),
            body: format!(
                "the customer {what} on this channel (\"{}\")",
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
        for (text, keyword, lang) in [
            ("STOP", Keyword::Stop, "en"),
            ("  stop! ", Keyword::Stop, "en"),
            ("Arrêt", Keyword::Stop, "fr"),
            ("ARRET", Keyword::Stop, "fr"),
            ("Se désabonner", Keyword::Stop, "fr"),
            ("STOP ALL", Keyword::StopAll, "en"),
            ("Arrêt total", Keyword::StopAll, "fr"),
            ("START", Keyword::Start, "en"),
            ("s’abonner", Keyword::Start, "fr"),
        ] {
            let found = consent.find(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((found.keyword, found.lang), (keyword, lang), "{text}");
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
