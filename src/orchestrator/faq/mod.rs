//! FAQ tier: parses a merchant's `faq.md` and finds the entry a customer's chat message asks about, with a confidence score, so common questions are answered without an LLM.
//!
//! # File format
//!
//! ```markdown
//! # Anything before the first `## ` heading is an intro and is ignored.
//!
//! ## What are your opening hours?
//! q: When are you open?
//! q: are you open on sundays
//!
//! We are open Tuesday to Saturday, 10:30 to 19:00.
//! ```
//!
//! Each entry starts at a line beginning with `## ` (the question). The `q:`
//! lines right below it (case-insensitive, blank lines allowed between them)
//! are other ways customers ask the same thing. Everything else up to the next
//! `## ` is the answer, trimmed, markdown kept as is. Write one entry per
//! language (an English entry and a French entry for the same topic): the
//! customer's words pick the entry in their language.
//!
//! # Matching
//!
//! Text is normalised (case, accents, ligatures, punctuation, elisions),
//! stopwords of both languages are dropped and the remaining words are lightly
//! stemmed. Each remaining word of the message is looked up in the vocabulary
//! of the file; an unknown word of 4+ letters may match a known one within one
//! typo (two from 8 letters on), at a discount. Words are weighted by rarity
//! across entries (BM25's IDF), so "order" counts less than "refund".
//!
//! Each entry is scored on its question and `q:` alternates; its answer only
//! contributes at half weight (it helps with specifics such as "PayPal" or
//! "Belgium", but cannot make an entry confident on its own). See
//! [`FaqMatch::confidence`] for what the score means.

mod text;

use std::collections::HashMap;

use thiserror::Error;

use self::text::{
    MAX_FUZZY_CHARS, bounded_distance, has_digit, is_near_stopword, is_stopword, language_votes,
    max_edits, normalize, stem, tokens,
};

/// Confidence threshold recommended for answering from the FAQ without an LLM.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Share of the confidence given to "how much of the message the entry explains";
/// the rest goes to "how much of the entry's best phrasing the message uses".
const MESSAGE_COVERAGE_SHARE: f64 = 0.65;

/// A message word found only in an entry's answer counts this much of a word
/// found in its questions.
const ANSWER_FIELD_WEIGHT: f64 = 0.5;

/// A word matched with `d` typos gets `1 - TYPO_PENALTY × d / length` of the
/// credit: 0.63 for one typo in a 4-letter word, 0.81 in an 8-letter one,
/// 0.67 for two typos in a 9-letter one.
const TYPO_PENALTY: f64 = 1.5;

/// Weight of a message word unknown to the FAQ, relative to the weight of the
/// rarest known word (one that only one entry uses).
const UNKNOWN_WORD_WEIGHT: f64 = 1.0;

/// Ranking bonus (not reported in the confidence) for entries in the language
/// detected in the message, so a tie between the English and the French entry
/// goes to the customer's language.
const SAME_LANGUAGE_BONUS: f64 = 0.1;

/// At most this many vocabulary terms stand for one misspelt word.
const MAX_FUZZY_CANDIDATES: usize = 4;

/// An error in `faq.md`, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaqError {
    /// A `## ` heading with nothing after it.
    #[error("faq.md line {line}: the `## ` heading has no question")]
    EmptyQuestion {
        /// Line of the heading.
        line: usize,
    },
    /// An entry whose answer is empty.
    #[error("faq.md line {line}: the entry \"{question}\" has no answer")]
    MissingAnswer {
        /// Line of the entry's heading.
        line: usize,
        /// The entry's question, to find it in the file.
        question: String,
    },
    /// A `q:` line with nothing after it.
    #[error("faq.md line {line}: the `q:` line has no question after it")]
    EmptyAlternate {
        /// Line of the `q:` line.
        line: usize,
    },
}

impl FaqError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            Self::EmptyQuestion { line }
            | Self::MissingAnswer { line, .. }
            | Self::EmptyAlternate { line } => *line,
        }
    }
}

/// A language the FAQ matcher knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English.
    En,
    /// French.
    Fr,
}

/// A cheap guess of the message's language from function words (for picking the
/// holding message); `None` when unsure (no function words, or as many of each).
pub fn detect_language(text: &str) -> Option<Lang> {
    let (en, fr) = language_votes(text);
    match en.cmp(&fr) {
        std::cmp::Ordering::Greater => Some(Lang::En),
        std::cmp::Ordering::Less => Some(Lang::Fr),
        std::cmp::Ordering::Equal => None,
    }
}

/// One question/answer pair of `faq.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaqEntry {
    /// The `## ` heading, trimmed.
    pub question: String,
    /// The `q:` phrasings, trimmed, in file order.
    pub alternates: Vec<String>,
    /// The answer, trimmed, markdown as written.
    pub answer: String,
    /// 1-based line of the `## ` heading.
    pub line: usize,
}

/// The best entry for a message.
#[derive(Debug, Clone, Copy)]
pub struct FaqMatch<'a> {
    /// The matching entry.
    pub entry: &'a FaqEntry,
    /// Its position in [`FaqIndex::entries`].
    pub index: usize,
    /// How sure the match is, in `[0, 1]`.
    ///
    /// It is `0.65 × M + 0.35 × Q`, where
    /// - `M` is the share of the message's meaningful words (stopwords and
    ///   greetings removed, each word weighted by how rare it is in the FAQ)
    ///   that the entry's question or `q:` lines contain; a word fixed by typo
    ///   tolerance counts 0.8 (0.65 for two typos), a word found only in the
    ///   answer counts half, an unknown word counts zero;
    /// - `Q` is the share of the entry's best-matching phrasing (question or
    ///   `q:` line, weighted the same way) that the message uses.
    ///
    /// Rough reading: 1.0 is the message saying exactly one phrasing;
    /// 0.7–0.9 a paraphrase or a phrasing plus a few extra words; around 0.5
    /// half the message is unexplained or only a minor word matched; under
    /// 0.35 a stray word in common. The recommended threshold is
    /// [`DEFAULT_THRESHOLD`] (0.5): raise it (0.6) to answer less often but
    /// more surely, lower it (0.4) to answer more, and add `q:` lines to the
    /// entries customers reach with words the file does not use.
    pub confidence: f64,
}

/// The parsed FAQ with its search index, built once and then read-only.
#[derive(Debug, Clone, Default)]
pub struct FaqIndex {
    entries: Vec<FaqEntry>,
    docs: Vec<Doc>,
    /// Stem → term id.
    vocab: HashMap<String, u32>,
    /// Term id → weight (IDF).
    weights: Vec<f64>,
    /// Spellings to fuzzy-match against (surface words and stems), bucketed by
    /// length in characters.
    fuzzy_forms: Vec<Vec<FuzzyForm>>,
    /// Weight of a word only one entry uses: the weight of a message word the
    /// FAQ does not know, and the evidence a match needs to be fully trusted.
    specific_weight: f64,
}

/// Search data of one entry.
#[derive(Debug, Clone)]
struct Doc {
    /// Sorted, unique terms of the question and all `q:` lines.
    question_terms: Vec<u32>,
    /// Sorted, unique terms of the answer.
    answer_terms: Vec<u32>,
    /// The question and each `q:` line, as sorted unique terms.
    phrasings: Vec<Phrasing>,
    lang: Option<Lang>,
}

#[derive(Debug, Clone)]
struct Phrasing {
    terms: Vec<u32>,
    /// Sum of the terms' weights.
    weight: f64,
}

#[derive(Debug, Clone)]
struct FuzzyForm {
    chars: Box<[char]>,
    term: u32,
}

/// A meaningful word of the customer's message, resolved against the vocabulary.
#[derive(Debug)]
struct QueryTerm {
    /// Terms it stands for (one when spelt right; those at the smallest edit
    /// distance when misspelt).
    candidates: Vec<u32>,
    /// 1 for an exact match, less for a typo.
    quality: f64,
    /// The word's weight in the message.
    weight: f64,
}

struct RawEntry {
    entry: FaqEntry,
    answer_lines: Vec<String>,
    in_alternates: bool,
}

impl FaqIndex {
    /// Parses `faq.md` and builds the index. An empty file, or one without any
    /// `## ` entry, gives an empty index that matches nothing.
    pub fn parse(markdown: &str) -> Result<FaqIndex, FaqError> {
        let entries = parse_entries(markdown)?;
        Ok(Self::build(entries))
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[FaqEntry] {
        &self.entries
    }

    /// Whether the FAQ has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The best entry for a customer message with its confidence in [0, 1]; None when nothing shares any meaningful term.
    ///
    /// Compare [`FaqMatch::confidence`] with a threshold ([`DEFAULT_THRESHOLD`]
    /// is 0.5) before sending the answer.
    pub fn best_match(&self, message: &str) -> Option<FaqMatch<'_>> {
        let (terms, total_weight) = self.query_terms(message);
        if terms.is_empty() || total_weight <= 0.0 {
            return None;
        }
        let lang = detect_language(message);
        let mut best: Option<(f64, usize, f64)> = None;
        for (index, doc) in self.docs.iter().enumerate() {
            let Some(confidence) = self.confidence(doc, &terms, total_weight) else {
                continue;
            };
            let bonus = if lang.is_some() && doc.lang == lang {
                SAME_LANGUAGE_BONUS
            } else {
                0.0
            };
            let rank = confidence + bonus;
            if best.is_none_or(|(best_rank, _, _)| rank > best_rank) {
                best = Some((rank, index, confidence));
            }
        }
        let (_, index, confidence) = best?;
        let entry = self.entries.get(index)?;
        Some(FaqMatch {
            entry,
            index,
            confidence,
        })
    }

    fn build(entries: Vec<FaqEntry>) -> FaqIndex {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut surfaces: HashMap<String, u32> = HashMap::new();
        let mut doc_freq: Vec<u32> = Vec::new();
        let mut docs = Vec::with_capacity(entries.len());

        for entry in &entries {
            let mut phrasings = Vec::with_capacity(1 + entry.alternates.len());
            for phrase in std::iter::once(&entry.question).chain(&entry.alternates) {
                let terms = index_terms(phrase, true, &mut vocab, &mut surfaces);
                phrasings.push(Phrasing { terms, weight: 0.0 });
            }
            let answer_terms = index_terms(&entry.answer, false, &mut vocab, &mut surfaces);
            let mut question_terms: Vec<u32> = phrasings
                .iter()
                .flat_map(|p| p.terms.iter().copied())
                .collect();
            question_terms.sort_unstable();
            question_terms.dedup();

            doc_freq.resize(vocab.len(), 0);
            let mut all: Vec<u32> = question_terms
                .iter()
                .chain(&answer_terms)
                .copied()
                .collect();
            all.sort_unstable();
            all.dedup();
            for term in all {
                if let Some(df) = doc_freq.get_mut(term as usize) {
                    *df += 1;
                }
            }

            let lang_text = format!(
                "{} {} {}",
                entry.question,
                entry.alternates.join(" "),
                entry.answer
            );
            docs.push(Doc {
                question_terms,
                answer_terms,
                phrasings,
                lang: detect_language(&lang_text),
            });
        }

        let n = docs.len() as f64;
        let idf = |df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let weights: Vec<f64> = doc_freq.iter().map(|&df| idf(f64::from(df))).collect();
        for doc in &mut docs {
            for phrasing in &mut doc.phrasings {
                phrasing.weight = phrasing
                    .terms
                    .iter()
                    .filter_map(|&t| weights.get(t as usize))
                    .sum();
            }
        }

        let mut fuzzy_forms: Vec<Vec<FuzzyForm>> = vec![Vec::new(); MAX_FUZZY_CHARS + 1];
        let forms = surfaces
            .into_iter()
            .chain(vocab.iter().map(|(stem, &term)| (stem.clone(), term)));
        for (form, term) in forms {
            let chars: Box<[char]> = form.chars().collect();
            if chars.len() >= 4 && !has_digit(&form) {
                if let Some(bucket) = fuzzy_forms.get_mut(chars.len()) {
                    if !bucket.iter().any(|f| f.term == term && f.chars == chars) {
                        bucket.push(FuzzyForm { chars, term });
                    }
                }
            }
        }

        FaqIndex {
            entries,
            docs,
            vocab,
            specific_weight: idf(1.0),
            weights,
            fuzzy_forms,
        }
    }

    /// Resolves the message's meaningful words; returns them with the message's
    /// total weight (which includes unknown words).
    fn query_terms(&self, message: &str) -> (Vec<QueryTerm>, f64) {
        let normalized = normalize(message);
        let mut terms: Vec<QueryTerm> = Vec::new();
        let mut seen_unknown: Vec<&str> = Vec::new();
        let mut total = 0.0;
        let mut word: Vec<char> = Vec::with_capacity(MAX_FUZZY_CHARS);
        for token in tokens(&normalized) {
            if is_stopword(token) {
                continue;
            }
            let stemmed = stem(token);
            if let Some(&term) = self.vocab.get(&stemmed) {
                if !terms
                    .iter()
                    .any(|t| t.quality >= 1.0 && t.candidates == [term])
                {
                    let weight = self.weight(term);
                    total += weight;
                    terms.push(QueryTerm {
                        candidates: vec![term],
                        quality: 1.0,
                        weight,
                    });
                }
                continue;
            }
            if has_digit(token) || seen_unknown.contains(&token) {
                continue;
            }
            seen_unknown.push(token);
            word.clear();
            word.extend(token.chars().take(MAX_FUZZY_CHARS + 1));
            if let Some(fuzzy) = self.fuzzy_lookup(&word, &stemmed) {
                total += fuzzy.weight;
                terms.push(fuzzy);
            } else if !is_near_stopword(&word) {
                total += UNKNOWN_WORD_WEIGHT * self.specific_weight;
            }
        }
        (terms, total)
    }

    /// The closest vocabulary terms to a misspelt word (compared both as
    /// written and stemmed), if any is within the allowed number of edits.
    fn fuzzy_lookup(&self, word: &[char], stemmed: &str) -> Option<QueryTerm> {
        let stem_chars: Vec<char> = stemmed.chars().collect();
        let mut best_distance = usize::MAX;
        let mut best_len = 0;
        let mut candidates: Vec<u32> = Vec::new();
        for probe in [word, &stem_chars[..]] {
            let len = probe.len();
            let max = max_edits(len).min(best_distance);
            if max == 0 || len > MAX_FUZZY_CHARS {
                continue;
            }
            let lo = len.saturating_sub(max);
            let hi = (len + max).min(MAX_FUZZY_CHARS);
            for bucket in self.fuzzy_forms.get(lo..=hi).into_iter().flatten() {
                for form in bucket {
                    // Short words must keep their first letter ("sick" is not "pick").
                    if len.min(form.chars.len()) <= 5 && form.chars.first() != probe.first() {
                        continue;
                    }
                    let allowed = max_edits(len.min(form.chars.len())).min(best_distance);
                    let Some(d) = bounded_distance(probe, &form.chars, allowed) else {
                        continue;
                    };
                    if d < best_distance {
                        best_distance = d;
                        best_len = form.chars.len();
                        candidates.clear();
                    }
                    if !candidates.contains(&form.term) && candidates.len() < MAX_FUZZY_CANDIDATES {
                        candidates.push(form.term);
                    }
                }
            }
        }
        if candidates.is_empty() || best_len == 0 {
            return None;
        }
        let quality = 1.0 - TYPO_PENALTY * best_distance as f64 / best_len as f64;
        if quality <= 0.0 {
            return None;
        }
        let weight = candidates
            .iter()
            .map(|&t| self.weight(t))
            .fold(0.0, f64::max);
        Some(QueryTerm {
            candidates,
            quality,
            weight,
        })
    }

    fn weight(&self, term: u32) -> f64 {
        self.weights.get(term as usize).copied().unwrap_or(0.0)
    }

    /// The confidence of one entry for the message, or `None` when they share
    /// no term at all.
    fn confidence(&self, doc: &Doc, terms: &[QueryTerm], total_weight: f64) -> Option<f64> {
        let mut matched = 0.0;
        for term in terms {
            let mut credit: f64 = 0.0;
            for candidate in &term.candidates {
                if doc.question_terms.binary_search(candidate).is_ok() {
                    credit = credit.max(term.quality);
                } else if doc.answer_terms.binary_search(candidate).is_ok() {
                    credit = credit.max(term.quality * ANSWER_FIELD_WEIGHT);
                }
            }
            matched += term.weight * credit;
        }
        if matched <= 0.0 {
            return None;
        }
        let message_coverage = (matched / total_weight).min(1.0);
        let evidence = (matched / self.specific_weight).min(1.0);

        let mut phrasing_coverage: f64 = 0.0;
        for phrasing in &doc.phrasings {
            if phrasing.weight <= 0.0 {
                continue;
            }
            let covered: f64 = phrasing
                .terms
                .iter()
                .map(|&t| {
                    let quality = terms
                        .iter()
                        .filter(|q| q.candidates.contains(&t))
                        .map(|q| q.quality)
                        .fold(0.0, f64::max);
                    self.weight(t) * quality
                })
                .sum();
            phrasing_coverage = phrasing_coverage.max(covered / phrasing.weight);
        }
        let confidence = evidence
            * (MESSAGE_COVERAGE_SHARE * message_coverage
                + (1.0 - MESSAGE_COVERAGE_SHARE) * phrasing_coverage.min(1.0));
        Some(confidence.clamp(0.0, 1.0))
    }
}

/// Terms of one piece of FAQ text, sorted and unique, adding new ones to the
/// vocabulary. Numbers are kept in questions only.
fn index_terms(
    text: &str,
    keep_numbers: bool,
    vocab: &mut HashMap<String, u32>,
    surfaces: &mut HashMap<String, u32>,
) -> Vec<u32> {
    let normalized = normalize(text);
    let mut terms = Vec::new();
    for token in tokens(&normalized) {
        if is_stopword(token) || (!keep_numbers && has_digit(token)) {
            continue;
        }
        let stemmed = stem(token);
        let next = u32::try_from(vocab.len()).unwrap_or(u32::MAX);
        let term = *vocab.entry(stemmed).or_insert(next);
        if !surfaces.contains_key(token) {
            surfaces.insert(token.to_owned(), term);
        }
        terms.push(term);
    }
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// Splits `faq.md` into entries (see the module docs for the format).
fn parse_entries(markdown: &str) -> Result<Vec<FaqEntry>, FaqError> {
    let markdown = markdown.strip_prefix('\u{feff}').unwrap_or(markdown);
    let mut entries = Vec::new();
    let mut current: Option<RawEntry> = None;
    for (i, line) in markdown.lines().enumerate() {
        let number = i + 1;
        if let Some(question) = heading(line) {
            if let Some(done) = current.take() {
                entries.push(finish(done)?);
            }
            if question.is_empty() {
                return Err(FaqError::EmptyQuestion { line: number });
            }
            current = Some(RawEntry {
                entry: FaqEntry {
                    question: question.to_owned(),
                    alternates: Vec::new(),
                    answer: String::new(),
                    line: number,
                },
                answer_lines: Vec::new(),
                in_alternates: true,
            });
            continue;
        }
        let Some(raw) = current.as_mut() else {
            continue; // intro
        };
        if raw.in_alternates {
            if let Some(alternate) = alternate(line) {
                if alternate.is_empty() {
                    return Err(FaqError::EmptyAlternate { line: number });
                }
                raw.entry.alternates.push(alternate.to_owned());
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            raw.in_alternates = false;
        }
        raw.answer_lines.push(line.to_owned());
    }
    if let Some(done) = current {
        entries.push(finish(done)?);
    }
    Ok(entries)
}

fn finish(raw: RawEntry) -> Result<FaqEntry, FaqError> {
    let RawEntry {
        mut entry,
        answer_lines,
        ..
    } = raw;
    entry.answer = answer_lines.join("\n").trim().to_owned();
    if entry.answer.is_empty() {
        return Err(FaqError::MissingAnswer {
            line: entry.line,
            question: entry.question,
        });
    }
    Ok(entry)
}

/// The question of a `## ` heading line (trimmed, closing `#`s removed), or
/// `None` if the line is not an entry heading (`###` sub-headings are not).
fn heading(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("##")?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim_end())
}

/// The text of a `q:` line (`q:`, `Q :`, leading spaces allowed), or `None`.
fn alternate(line: &str) -> Option<&str> {
    let rest = line.trim_start();
    let rest = rest.strip_prefix(['q', 'Q'])?;
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
    Some(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP_FAQ: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/faq.md"));

    #[test]
    fn explore() {
        let index = FaqIndex::parse(SHOP_FAQ).unwrap();
        let queries = std::fs::read_to_string("/tmp/queries.txt").unwrap();
        for q in queries.lines().filter(|l| !l.trim().is_empty()) {
            let (expect, q) = q.split_once('|').unwrap();
            match index.best_match(q) {
                Some(m) => {
                    let ok = if expect.trim() == "-" {
                        m.confidence < 0.5
                    } else {
                        m.entry.question.starts_with(expect.trim()) && m.confidence >= 0.5
                    };
                    println!(
                        "{} {:.2} {:<45} -> {}",
                        if ok { "  " } else { "XX" },
                        m.confidence,
                        q,
                        m.entry.question
                    )
                }
                None => println!(
                    "{} None {:<45}",
                    if expect.trim() == "-" { "  " } else { "XX" },
                    q
                ),
            }
        }
    }
}
