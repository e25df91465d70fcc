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
//! Text is normalised (case, accents, ligatures such as œ, punctuation,
//! apostrophes and French elisions), stopwords and greetings of both languages
//! are dropped and the remaining words are lightly stemmed. Each word of the
//! message is looked up in the file's vocabulary; a word the file does not use
//! may match one it does within one typo for 4–7 letters, two from 8 letters
//! on, at a discount. Words are weighted by how few entries use them (the IDF
//! of BM25), so "order" counts less than "refund".
//!
//! Entries are scored on their question and `q:` lines, which is where the
//! merchant says how the question is asked. The answer contributes at half
//! weight: it catches specifics the questions do not name ("PayPal",
//! "Belgium"), but cannot make an entry confident on its own, since answers
//! are long and mention many things. Rather than a raw BM25 score, which has
//! no fixed scale, the score is a weighted overlap between the message and the
//! entry's questions; see [`FaqMatch::confidence`] for what the number means.
//!
//! The entry in the customer's language wins naturally because its words
//! match; when both languages share the words ("click and collect", "PayPal"),
//! the language guessed from the message's function words breaks the tie.
//!
//! The index is built once by [`FaqIndex::parse`]; a match scans every entry
//! with precomputed term lists and takes a few microseconds for a 30-entry
//! file.

mod text;

use std::collections::HashMap;

use thiserror::Error;

use self::text::{
    MAX_FUZZY_CHARS, bounded_distance, has_digit, is_near_stopword, is_stopword, language_votes,
    max_edits, normalize, question_kinds, stem, stopword_ids, tokens,
};

/// Confidence threshold recommended for answering from the FAQ without an LLM
/// (see [`FaqMatch::confidence`] for what the number means and how to tune it).
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

/// Evidence, in weights of a word only one entry uses, that a match needs to be
/// fully trusted: one such word is not quite enough, two topic words are.
const EVIDENCE_NEEDED: f64 = 1.1;

/// Evidence (in weights of a word only one entry uses) added when the message
/// and one of the entry's phrasings ask the same kind of question (where,
/// when, why, how much): "where is my order" says more than "order".
const QUESTION_KIND_EVIDENCE: f64 = 0.75;

/// Share of a phrasing's stopwords a message must have, besides all its
/// meaningful words, to count as saying that phrasing.
const FUNCTION_WORDS_SAID: f64 = 0.75;

/// Ranking bonus (not reported in the confidence) for entries in the language
/// detected in the message, so a tie between the English and the French entry
/// goes to the customer's language.
const SAME_LANGUAGE_BONUS: f64 = 0.1;

/// Only the start of a message is looked at: FAQ questions are short, and this
/// bounds the work (typo lookups) an arbitrarily long message can cause.
const MAX_MESSAGE_CHARS: usize = 1000;

/// At most this many meaningful words of a message are looked at.
const MAX_MESSAGE_TERMS: usize = 40;

/// At most this many vocabulary terms stand for one misspelt word.
const MAX_FUZZY_CANDIDATES: usize = 4;

/// An error in `faq.md`, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaqError {
    /// A `## ` heading with nothing after it.
    #[error("a `## ` heading has no question after it")]
    EmptyQuestion {
        /// Line of the heading.
        line: usize,
    },
    /// An entry whose answer is empty.
    #[error("the entry \"{question}\" has no answer")]
    MissingAnswer {
        /// Line of the entry's heading.
        line: usize,
        /// The entry's question, to find it in the file.
        question: String,
    },
    /// A `q:` line with nothing after it.
    #[error("a `q:` line has no question after it")]
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

/// Bit of a language in [`FaqIndex::term_langs`].
fn lang_bit(lang: Lang) -> u8 {
    match lang {
        Lang::En => 1,
        Lang::Fr => 2,
    }
}

/// Bit of entries whose language could not be guessed.
const OTHER_LANG_BIT: u8 = 4;

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
    /// How sure the match is, in `[0, 1]`: compare it with a threshold
    /// ([`DEFAULT_THRESHOLD`], 0.5) before sending the answer.
    ///
    /// It is `E × (0.65 × M + 0.35 × Q)`, where
    /// - `M` (message coverage) is the share of the message's meaningful words
    ///   (stopwords and greetings removed, each word weighted by how few
    ///   entries use it, a word no entry uses weighing the most) that the
    ///   entry's question or `q:` lines contain. A word caught by typo
    ///   tolerance counts 0.6–0.9 depending on its length, a word found only
    ///   in the answer counts half, an unknown word counts zero;
    /// - `Q` (question coverage) is the share of the entry's best-matching
    ///   phrasing (its question or one `q:` line, weighted the same way) that
    ///   the message uses;
    /// - `E` (evidence) is 1 when the message says one of the entry's
    ///   phrasings nearly word for word (all its meaningful words and most of
    ///   its little ones), or when the matched words weigh a bit more than one word
    ///   used by a single entry (in practice two topic words, or one with
    ///   the same kind of question as a phrasing); it is less when the
    ///   message is one common word ("order", "shop") that cannot pick an
    ///   entry by itself.
    ///
    /// How to read it: 1.0 is the message saying one of the entry's phrasings
    /// (give or take stopwords, case, accents and word order); 0.7–0.9 a
    /// paraphrase, a typo, or a phrasing plus a few other words; 0.5–0.7 a
    /// looser paraphrase where part of the message is not explained; under
    /// 0.5 typically one shared or generic word in an otherwise unrelated
    /// message. The default threshold 0.5 sits in that gap: raise it to
    /// 0.6–0.7 to answer less often but more surely, lower it to 0.4 to
    /// answer more often. When customers ask something in words the file
    /// does not use, adding a `q:` line with their wording works better than
    /// lowering the threshold.
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
    /// Term id → bit set ([`lang_bit`]) of the languages of the entries using it.
    term_langs: Vec<u8>,
    /// Spellings to fuzzy-match against (surface words and stems), bucketed by
    /// length in characters.
    fuzzy_forms: Vec<Vec<FuzzyForm>>,
    /// Weight of a word only one entry uses: the evidence a match needs to be
    /// fully trusted.
    specific_weight: f64,
    /// Weight of a message word the FAQ does not use at all (the IDF of a word
    /// in no entry).
    unknown_weight: f64,
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
    /// Kinds of question ([`question_kinds`]) its question and `q:` lines ask.
    kinds: u8,
    lang: Option<Lang>,
}

#[derive(Debug, Clone)]
struct Phrasing {
    terms: Vec<u32>,
    /// Sum of the terms' weights.
    weight: f64,
    /// Its stopwords ([`stopword_ids`]).
    function_words: Vec<u16>,
}

#[derive(Debug, Clone)]
struct FuzzyForm {
    chars: Box<[char]>,
    term: u32,
}

/// A meaningful word of the customer's message, resolved against the vocabulary.
#[derive(Debug)]
struct QueryTerm {
    /// Terms it stands for, with the credit each gets (1 when spelt right;
    /// the closest terms, discounted, when misspelt).
    candidates: Vec<(u32, f64)>,
    /// The word's weight in the message.
    weight: f64,
}

/// A customer message, resolved against the vocabulary.
#[derive(Debug)]
struct Query {
    terms: Vec<QueryTerm>,
    /// Weight of all meaningful words, including those the FAQ does not know.
    total_weight: f64,
    /// Kinds of question asked ([`question_kinds`]).
    kinds: u8,
    /// Its stopwords ([`stopword_ids`]).
    function_words: Vec<u16>,
    lang: Option<Lang>,
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
        if self.docs.is_empty() {
            return None;
        }
        let message = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((end, _)) => message.get(..end).unwrap_or(message),
            None => message,
        };
        let query = self.query(message);
        if query.terms.is_empty() || query.total_weight <= 0.0 {
            return None;
        }
        let lang = query.lang;
        let mut best: Option<(f64, usize, f64)> = None;
        for (index, doc) in self.docs.iter().enumerate() {
            let Some(confidence) = self.confidence(doc, &query) else {
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
            let mut kinds = 0;
            for phrase in std::iter::once(&entry.question).chain(&entry.alternates) {
                let terms = index_terms(phrase, true, &mut vocab, &mut surfaces);
                let normalized = normalize(phrase);
                kinds |= question_kinds(&normalized);
                phrasings.push(Phrasing {
                    terms,
                    weight: 0.0,
                    function_words: stopword_ids(&normalized),
                });
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
                kinds,
                lang: detect_language(&lang_text),
            });
        }

        let mut term_langs = vec![0u8; vocab.len()];
        for doc in &docs {
            let bit = doc.lang.map_or(OTHER_LANG_BIT, lang_bit);
            for &term in doc.question_terms.iter().chain(&doc.answer_terms) {
                if let Some(bits) = term_langs.get_mut(term as usize) {
                    *bits |= bit;
                }
            }
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
            if chars.len() >= 4
                && !has_digit(&form)
                && let Some(bucket) = fuzzy_forms.get_mut(chars.len())
                && !bucket.iter().any(|f| f.term == term && f.chars == chars)
            {
                bucket.push(FuzzyForm { chars, term });
            }
        }

        FaqIndex {
            entries,
            docs,
            vocab,
            specific_weight: idf(1.0),
            unknown_weight: idf(0.0),
            weights,
            term_langs,
            fuzzy_forms,
        }
    }

    /// Resolves the message's meaningful words.
    fn query(&self, message: &str) -> Query {
        let normalized = normalize(message);
        let lang = detect_language(message);
        let lang_bit = lang.map_or(0, lang_bit);
        let mut terms: Vec<QueryTerm> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut total = 0.0;
        let mut word: Vec<char> = Vec::with_capacity(MAX_FUZZY_CHARS + 1);
        for token in tokens(&normalized) {
            if is_stopword(token) {
                continue;
            }
            let stemmed = stem(token);
            if seen.contains(&stemmed) {
                continue;
            }
            if seen.len() >= MAX_MESSAGE_TERMS {
                break;
            }
            word.clear();
            word.extend(token.chars().take(MAX_FUZZY_CHARS + 1));
            if let Some(&term) = self.vocab.get(&stemmed) {
                let foreign = lang_bit != 0
                    && self
                        .term_langs
                        .get(term as usize)
                        .is_some_and(|b| b & lang_bit == 0);
                let mut resolved = QueryTerm {
                    candidates: vec![(term, 1.0)],
                    weight: self.weight(term),
                };
                // A word only the other language's entries use ("adress" in an
                // English message) may be a typo for a word of the message's
                // language: it then stands for both, at the typo's credit.
                if foreign && let Some(fuzzy) = self.fuzzy_lookup(&word, &stemmed, lang_bit) {
                    let quality = fuzzy.candidates.iter().map(|c| c.1).fold(0.0, f64::max);
                    resolved.candidates = vec![(term, quality)];
                    resolved.candidates.extend(fuzzy.candidates);
                    resolved.weight = resolved.weight.max(fuzzy.weight);
                }
                total += resolved.weight;
                terms.push(resolved);
            } else if has_digit(token) {
                continue;
            } else if let Some(fuzzy) = self.fuzzy_lookup(&word, &stemmed, 0) {
                total += fuzzy.weight;
                terms.push(fuzzy);
            } else if !is_near_stopword(&word) {
                total += self.unknown_weight;
            }
            seen.push(stemmed);
        }
        Query {
            terms,
            total_weight: total,
            kinds: question_kinds(&normalized),
            function_words: stopword_ids(&normalized),
            lang,
        }
    }

    /// The closest vocabulary terms to a misspelt word (compared both as
    /// written and stemmed), if any is within the allowed number of edits.
    /// With a non-zero `lang_bits`, only terms used by entries of those
    /// languages are considered.
    fn fuzzy_lookup(&self, word: &[char], stemmed: &str, lang_bits: u8) -> Option<QueryTerm> {
        let stem_chars: Vec<char> = stemmed.chars().collect();
        let mut best_distance = usize::MAX;
        let mut best_len = 0;
        let mut found: Vec<u32> = Vec::new();
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
                    if lang_bits != 0
                        && self
                            .term_langs
                            .get(form.term as usize)
                            .is_none_or(|b| b & lang_bits == 0)
                    {
                        continue;
                    }
                    let allowed = max_edits(len.min(form.chars.len())).min(best_distance);
                    let Some(d) = bounded_distance(probe, &form.chars, allowed) else {
                        continue;
                    };
                    if d < best_distance {
                        best_distance = d;
                        best_len = form.chars.len();
                        found.clear();
                    }
                    if !found.contains(&form.term) && found.len() < MAX_FUZZY_CANDIDATES {
                        found.push(form.term);
                    }
                }
            }
        }
        if found.is_empty() || best_len == 0 {
            return None;
        }
        let quality = 1.0 - TYPO_PENALTY * best_distance as f64 / best_len as f64;
        if quality <= 0.0 {
            return None;
        }
        let weight = found.iter().map(|&t| self.weight(t)).fold(0.0, f64::max);
        Some(QueryTerm {
            candidates: found.into_iter().map(|t| (t, quality)).collect(),
            weight,
        })
    }

    fn weight(&self, term: u32) -> f64 {
        self.weights.get(term as usize).copied().unwrap_or(0.0)
    }

    /// The confidence of one entry for the message, or `None` when they share
    /// no term at all.
    fn confidence(&self, doc: &Doc, query: &Query) -> Option<f64> {
        let terms = &query.terms;
        let mut matched = 0.0;
        let mut evidence_weight = 0.0;
        for term in terms {
            let mut credit: f64 = 0.0;
            let mut field: f64 = 0.0;
            for &(candidate, quality) in &term.candidates {
                if doc.question_terms.binary_search(&candidate).is_ok() {
                    credit = credit.max(quality);
                    field = 1.0;
                } else if doc.answer_terms.binary_search(&candidate).is_ok() {
                    credit = credit.max(quality * ANSWER_FIELD_WEIGHT);
                    field = field.max(ANSWER_FIELD_WEIGHT);
                }
            }
            matched += term.weight * credit;
            evidence_weight += term.weight * field;
        }
        if matched <= 0.0 {
            return None;
        }
        let message_coverage = (matched / query.total_weight).min(1.0);
        let same_kind = if doc.kinds & query.kinds != 0 {
            QUESTION_KIND_EVIDENCE * self.specific_weight
        } else {
            0.0
        };
        let mut evidence =
            ((evidence_weight + same_kind) / (EVIDENCE_NEEDED * self.specific_weight)).min(1.0);

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
                        .flat_map(|q| &q.candidates)
                        .filter(|c| c.0 == t)
                        .map(|c| c.1)
                        .fold(0.0, f64::max);
                    self.weight(t) * quality
                })
                .sum();
            let coverage = covered / phrasing.weight;
            // The message says a phrasing the merchant wrote, nearly word for
            // word: that is all the evidence needed.
            if coverage > 0.999 && says_function_words(&query.function_words, phrasing) {
                evidence = 1.0;
            }
            phrasing_coverage = phrasing_coverage.max(coverage);
        }
        let confidence = evidence
            * (MESSAGE_COVERAGE_SHARE * message_coverage
                + (1.0 - MESSAGE_COVERAGE_SHARE) * phrasing_coverage.min(1.0));
        Some(confidence.clamp(0.0, 1.0))
    }
}

/// Whether a message has at least [`FUNCTION_WORDS_SAID`] of a phrasing's
/// stopwords ("where is my order" has those of "Where is my order?", a bare
/// "order" has none).
fn says_function_words(message: &[u16], phrasing: &Phrasing) -> bool {
    let wanted = phrasing.function_words.len();
    let said = phrasing
        .function_words
        .iter()
        .filter(|w| message.binary_search(w).is_ok())
        .count();
    said as f64 >= FUNCTION_WORDS_SAID * wanted as f64
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

    /// The shop's real FAQ, `prompts/faq.md` at the crate root.
    const SHOP_FAQ: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts/faq.md"));

    fn shop() -> FaqIndex {
        FaqIndex::parse(SHOP_FAQ).expect("prompts/faq.md parses")
    }

    /// Asserts that `message` matches, above the default threshold, the entry
    /// whose question starts with `question`; returns the confidence.
    #[track_caller]
    fn assert_hits(index: &FaqIndex, message: &str, question: &str) -> f64 {
        let m = index
            .best_match(message)
            .unwrap_or_else(|| panic!("{message:?}: no match, expected {question:?}"));
        assert!(
            m.entry.question.starts_with(question),
            "{message:?} matched {:?} ({:.2}), expected {question:?}",
            m.entry.question,
            m.confidence
        );
        assert!(
            m.confidence >= DEFAULT_THRESHOLD,
            "{message:?} matched {:?} with only {:.2}",
            m.entry.question,
            m.confidence
        );
        m.confidence
    }

    /// Asserts that `message` matches nothing, or nothing above the threshold.
    #[track_caller]
    fn assert_unsure(index: &FaqIndex, message: &str) {
        if let Some(m) = index.best_match(message) {
            assert!(
                m.confidence < DEFAULT_THRESHOLD,
                "{message:?} matched {:?} with {:.2}",
                m.entry.question,
                m.confidence
            );
        }
    }

    const EN_HOURS: &str = "What are your opening hours?";
    const EN_SHOP: &str = "Where is your shop?";
    const EN_CONTACT: &str = "How can I contact you?";
    const EN_DELIVERY: &str = "How long does delivery take";
    const EN_ABROAD: &str = "Do you ship internationally?";
    const EN_TRACKING: &str = "How can I track my order?";
    const EN_RETURNS: &str = "Can I return an item";
    const EN_EXCHANGE: &str = "Can I exchange an item?";
    const EN_PAYMENT: &str = "Which payment methods";
    const EN_PICKUP: &str = "Can I pick up my order";
    const EN_WRAPPING: &str = "Do you offer gift wrapping?";
    const EN_GIFT_CARDS: &str = "Do you sell gift cards?";
    const EN_CARE: &str = "How do I take care of my candle?";
    const EN_STOCK: &str = "Is this item in stock?";
    const FR_HOURS: &str = "Quels sont vos horaires";
    const FR_SHOP: &str = "Où se trouve votre boutique ?";
    const FR_CONTACT: &str = "Comment vous contacter ?";
    const FR_DELIVERY: &str = "Quels sont les délais";
    const FR_ABROAD: &str = "Livrez-vous à l'étranger ?";
    const FR_TRACKING: &str = "Comment suivre ma commande ?";
    const FR_RETURNS: &str = "Puis-je retourner un article";
    const FR_EXCHANGE: &str = "Puis-je échanger un article ?";
    const FR_PAYMENT: &str = "Quels moyens de paiement";
    const FR_PICKUP: &str = "Puis-je retirer ma commande";
    const FR_WRAPPING: &str = "Proposez-vous un emballage cadeau ?";
    const FR_GIFT_CARDS: &str = "Vendez-vous des cartes cadeaux ?";
    const FR_CARE: &str = "Comment entretenir ma bougie ?";
    const FR_STOCK: &str = "Cet article est-il en stock ?";

    // ---- parsing ----

    #[test]
    fn parses_questions_alternates_and_answers() {
        let md = "# Maison Lumière\nIntro text, ignored.\nq: not an alternate\n\n\
                  ## First question? ##\n\
                  q: one way\n\
                  Q : Another Way\n\
                  \n\
                  \x20 q:third\n\
                  \n\
                  First paragraph with **markdown**.\n\
                  \n\
                  ### A sub-heading stays in the answer\n\
                  - a list item\n\
                  Q: after the answer started this is answer text\n\
                  \n\
                  ## Second\n\
                  Just an answer.\n";
        let index = FaqIndex::parse(md).expect("parses");
        assert_eq!(index.entries().len(), 2);
        assert!(!index.is_empty());
        let first = &index.entries()[0];
        assert_eq!(first.question, "First question?");
        assert_eq!(first.alternates, ["one way", "Another Way", "third"]);
        assert_eq!(
            first.answer,
            "First paragraph with **markdown**.\n\n### A sub-heading stays in the answer\n\
             - a list item\nQ: after the answer started this is answer text"
        );
        assert_eq!(first.line, 5);
        let second = &index.entries()[1];
        assert_eq!(second.question, "Second");
        assert!(second.alternates.is_empty());
        assert_eq!(second.answer, "Just an answer.");
        assert_eq!(second.line, 17);
    }

    #[test]
    fn parses_crlf_and_byte_order_mark() {
        let md = "\u{feff}## Question\r\nq: alt\r\n\r\nAnswer line 1\r\nline 2\r\n";
        let index = FaqIndex::parse(md).expect("parses");
        let entry = &index.entries()[0];
        assert_eq!(entry.question, "Question");
        assert_eq!(entry.alternates, ["alt"]);
        assert_eq!(entry.answer, "Answer line 1\nline 2");
        assert_eq!(entry.line, 1);
    }

    #[test]
    fn heading_and_alternate_syntax() {
        assert_eq!(heading("## Q ##"), Some("Q"));
        assert_eq!(heading("##\tQ"), Some("Q"));
        assert_eq!(heading("##"), Some(""));
        assert_eq!(heading("##   "), Some(""));
        assert_eq!(heading("### Sub"), None);
        assert_eq!(heading("##Q"), None);
        assert_eq!(heading(" ## Q"), None);
        assert_eq!(alternate("q: x"), Some("x"));
        assert_eq!(alternate("  Q  :  x  "), Some("x"));
        assert_eq!(alternate("q:"), Some(""));
        assert_eq!(alternate("quand ?"), None);
        assert_eq!(alternate("Q&A: x"), None);
    }

    #[test]
    fn empty_or_entry_less_file_is_an_empty_index() {
        for md in [
            "",
            "   \n\n",
            "# Title\n\nSome intro, no entries.\nq: stray\n",
        ] {
            let index = FaqIndex::parse(md).expect("valid");
            assert!(index.is_empty());
            assert!(index.entries().is_empty());
            assert!(index.best_match("what are your opening hours?").is_none());
        }
        assert!(FaqIndex::default().best_match("hours").is_none());
    }

    #[test]
    fn empty_question_is_an_error_with_its_line() {
        let md = "intro\n\n## Fine?\nYes.\n\n##\nAnswer.\n";
        let err = FaqIndex::parse(md).expect_err("empty question");
        assert_eq!(err, FaqError::EmptyQuestion { line: 6 });
        assert_eq!(err.line(), 6);
        assert_eq!(
            FaqIndex::parse("## \t \nAnswer").expect_err("blank question"),
            FaqError::EmptyQuestion { line: 1 }
        );
    }

    #[test]
    fn missing_answer_is_an_error_with_the_entry_line() {
        let cases = [
            ("## A?\nYes.\n## B?\n## C?\nYes.\n", 3, "B?"),
            ("## A?\nYes.\n\n## B?\nq: b\n\n\n", 4, "B?"),
            ("# intro\n## Only?", 2, "Only?"),
        ];
        for (md, line, question) in cases {
            let err = FaqIndex::parse(md).expect_err("missing answer");
            assert_eq!(
                err,
                FaqError::MissingAnswer {
                    line,
                    question: question.to_owned()
                }
            );
        }
    }

    #[test]
    fn empty_alternate_is_an_error_with_its_line() {
        let md = "## A?\nq: fine\nQ :   \nAnswer.\n";
        let err = FaqIndex::parse(md).expect_err("empty q:");
        assert_eq!(err, FaqError::EmptyAlternate { line: 3 });
        assert_eq!(err.line(), 3);
    }

    // ---- the shop's FAQ ----

    #[test]
    fn shop_faq_has_every_topic_in_both_languages() {
        let index = shop();
        let entries = index.entries();
        assert_eq!(entries.len(), 28);
        let english = entries
            .iter()
            .filter(|e| detect_language(&e.answer) == Some(Lang::En))
            .count();
        let french = entries
            .iter()
            .filter(|e| detect_language(&e.answer) == Some(Lang::Fr))
            .count();
        assert_eq!((english, french), (14, 14));
        for entry in entries {
            assert!(
                (2..=4).contains(&entry.alternates.len()),
                "{}",
                entry.question
            );
            assert!(
                entry.answer.len() < 600,
                "answer too long: {}",
                entry.question
            );
            // Every phrasing of every entry finds its own entry.
            for phrase in std::iter::once(&entry.question).chain(&entry.alternates) {
                assert_hits(&index, phrase, &entry.question);
            }
        }
    }

    #[test]
    fn english_paraphrases_find_their_entry() {
        let index = shop();
        let cases = [
            ("what time do you open", EN_HOURS),
            ("When do you open on saturday?", EN_HOURS),
            ("is the boutique open on sunday", EN_HOURS),
            ("where are you located", EN_SHOP),
            ("what is the shop address", EN_SHOP),
            ("what's your phone number", EN_CONTACT),
            ("how do I contact you", EN_CONTACT),
            ("how long is delivery", EN_DELIVERY),
            ("how much is shipping", EN_DELIVERY),
            ("is delivery free?", EN_DELIVERY),
            ("how many days does delivery take", EN_DELIVERY),
            ("Do you deliver to Belgium", EN_ABROAD),
            ("international shipping", EN_ABROAD),
            ("how much does it cost to ship to the UK", EN_ABROAD),
            ("where is my order", EN_TRACKING),
            ("order tracking", EN_TRACKING),
            ("my parcel still hasn't arrived", EN_TRACKING),
            (
                "Hi! I ordered a candle last week and it still hasn't arrived, can you help?",
                EN_TRACKING,
            ),
            ("how do I return an item", EN_RETURNS),
            ("I want a refund", EN_RETURNS),
            ("refund policy", EN_RETURNS),
            ("can I swap for a different scent", EN_EXCHANGE),
            ("do you accept paypal", EN_PAYMENT),
            ("can i pay in 3 installments", EN_PAYMENT),
            ("click and collect", EN_PICKUP),
            ("can I collect my order in store", EN_PICKUP),
            ("its a present, can you wrap it?", EN_WRAPPING),
            ("do you have gift vouchers", EN_GIFT_CARDS),
            ("candle care", EN_CARE),
            ("why is my candle smoking", EN_CARE),
            (
                "the large candle is sold out, when will it be back",
                EN_STOCK,
            ),
            ("out of stock", EN_STOCK),
        ];
        for (message, question) in cases {
            assert_hits(&index, message, question);
        }
    }

    #[test]
    fn french_paraphrases_find_their_entry() {
        let index = shop();
        let cases = [
            ("ouvert dimanche ?", FR_HOURS),
            ("l'ouverture de la boutique c'est quand", FR_HOURS),
            ("à quelle heure vous ouvrez", FR_HOURS),
            ("c'est où la boutique ?", FR_SHOP),
            ("adresse du magasin", FR_SHOP),
            ("quel est votre numero de telephone", FR_CONTACT),
            ("je peux vous appeler ?", FR_CONTACT),
            ("combien coute la livraison", FR_DELIVERY),
            ("livraison combien de jours", FR_DELIVERY),
            ("la livraison c'est gratuit ?", FR_DELIVERY),
            ("vous livrez en belgique ?", FR_ABROAD),
            ("livraison en suisse", FR_ABROAD),
            ("où est ma commande ?", FR_TRACKING),
            (
                "Bonjour, j'ai commandé une bougie la semaine dernière et je n'ai toujours rien reçu",
                FR_TRACKING,
            ),
            ("comment faire un retour", FR_RETURNS),
            ("politique de remboursement", FR_RETURNS),
            ("c'est possible d'échanger un cadeau ?", FR_EXCHANGE),
            ("est-ce que je peux payer par paypal", FR_PAYMENT),
            ("je peux payer en 3 fois ?", FR_PAYMENT),
            ("vous faites le click and collect ?", FR_PICKUP),
            ("je peux retirer ma commande en boutique", FR_PICKUP),
            ("vous faites les paquets cadeaux ?", FR_WRAPPING),
            ("carte cadeau", FR_GIFT_CARDS),
            ("comment entretenir une bougie", FR_CARE),
            ("ma bougie fait un trou au milieu, c'est normal ?", FR_CARE),
            ("c'est en stock ?", FR_STOCK),
            (
                "la grande bougie est épuisée, elle revient quand ?",
                FR_STOCK,
            ),
        ];
        for (message, question) in cases {
            assert_hits(&index, message, question);
        }
    }

    #[test]
    fn misspelt_words_still_match_in_both_languages() {
        let index = shop();
        let cases = [
            ("vous etes ouvert le dimanch ?", FR_HOURS),
            ("vos horiares d'ouverture svp", FR_HOURS),
            ("quels sont les delais de livrasion", FR_DELIVERY),
            ("livriason gratuite ?", FR_DELIVERY),
            ("je veux etre rembourssé", FR_RETURNS),
            ("rembourssement", FR_RETURNS),
            ("delivry cost", EN_DELIVERY),
            ("dleivery costs", EN_DELIVERY),
            ("my candel is tunelling", EN_CARE),
            ("whats ur adress?", EN_SHOP),
        ];
        for (message, question) in cases {
            assert_hits(&index, message, question);
        }
        // A typo costs some confidence, but less than a wrong word would.
        let exact = assert_hits(&index, "delivery cost", EN_DELIVERY);
        let typo = assert_hits(&index, "delivry cost", EN_DELIVERY);
        assert!(typo < exact, "{typo} vs {exact}");
    }

    #[test]
    fn word_order_does_not_matter() {
        let index = shop();
        let pairs = [
            ("opening hours", "hours opening", EN_HOURS),
            ("frais de livraison", "livraison frais", FR_DELIVERY),
            (
                "shipping costs outside France",
                "outside France: shipping costs?",
                EN_ABROAD,
            ),
            (
                "vous êtes ouverts le dimanche ?",
                "le dimanche vous êtes ouverts ?",
                FR_HOURS,
            ),
        ];
        for (a, b, question) in pairs {
            let ca = assert_hits(&index, a, question);
            let cb = assert_hits(&index, b, question);
            assert!((ca - cb).abs() < 1e-9, "{a:?} {ca} vs {b:?} {cb}");
        }
    }

    #[test]
    fn case_accents_punctuation_and_elisions_do_not_matter() {
        let index = shop();
        let variants = [
            "Quels sont les délais de livraison ?",
            "QUELS SONT LES DELAIS DE LIVRAISON",
            "quels sont les delais de livraison",
            "Quels... sont les délais de livraison ?!!",
        ];
        let reference = assert_hits(&index, variants[0], FR_DELIVERY);
        for message in variants {
            let c = assert_hits(&index, message, FR_DELIVERY);
            assert!(
                (c - reference).abs() < 1e-9,
                "{message:?}: {c} vs {reference}"
            );
        }
        assert_hits(&index, "HORAIRES D'OUVERTURE", FR_HOURS);
        assert_hits(&index, "horaires d’ouverture", FR_HOURS); // curly apostrophe
        assert_hits(
            &index,
            "qu'est-ce que vous acceptez comme moyens de paiement",
            FR_PAYMENT,
        );
        assert_hits(&index, "je n'ai pas recu de numero de suivi", FR_TRACKING); // reçu, numéro
        assert_hits(&index, "OPENING HOURS", EN_HOURS);
        assert_hits(&index, "What's your address???", EN_SHOP);
    }

    #[test]
    fn ligatures_match_their_spelt_out_form() {
        let md = "## Avez-vous la bougie Cœur ?\nq: bougie en forme de cœur\n\nOui, 24 €.\n\n\
                  ## Livrez-vous en Belgique ?\nOui.\n";
        let index = FaqIndex::parse(md).expect("parses");
        assert_hits(
            &index,
            "la bougie coeur est dispo ?",
            "Avez-vous la bougie Cœur ?",
        );
        assert_hits(&index, "BOUGIE CŒUR", "Avez-vous la bougie Cœur ?");
    }

    #[test]
    fn unrelated_messages_stay_under_the_threshold() {
        let index = shop();
        let unrelated = [
            "hello",
            "thanks",
            "my cat is sick",
            "I want to talk to someone",
            "bonjour",
            "merci beaucoup",
            "hi there, how are you?",
            "do you sell shoes?",
            "what's the weather like",
            "can I speak to a human",
            "je veux parler à quelqu'un",
            "c'est nul",
            "order",
            "commande",
            "I love your shop",
            "ok",
            "lol",
            "je suis malade",
            "what is the meaning of life",
            "vous vendez des chaussures ?",
            "is the candle vegan?",
            "the candle arrived broken",
            "can I change my order",
            "I want to cancel my order",
            "where are you from",
            "can you recommend a candle for my mum",
            "je cherche une idée de cadeau",
            "what is your name",
            "are you a robot",
            "c'est combien ?",
            "hello, is anyone there?",
            "bonjour, il y a quelqu'un ?",
            "yes",
            "no thanks",
            "super merci",
        ];
        for message in unrelated {
            assert_unsure(&index, message);
        }
        // Greetings and small talk share no meaningful term at all.
        for message in [
            "hello",
            "thanks",
            "bonjour",
            "merci",
            "ok",
            "?",
            "🙂🙂",
            "",
            "my cat is sick",
        ] {
            assert!(index.best_match(message).is_none(), "{message:?}");
        }
    }

    #[test]
    fn answer_language_follows_the_question_language() {
        let index = shop();
        let pairs = [
            ("what are your opening hours", "quels sont vos horaires"),
            ("how much is delivery", "combien coûte la livraison"),
            ("do you accept paypal", "vous acceptez paypal ?"),
            (
                "can I do click and collect?",
                "vous faites le click and collect ?",
            ),
            ("is there a gift card", "il y a une carte cadeau ?"),
            ("can I return an item", "je peux retourner un article ?"),
            ("where is my order", "où est ma commande"),
            ("is this candle in stock", "cette bougie est en stock ?"),
        ];
        for (english, french) in pairs {
            let en = index.best_match(english).expect(english);
            let fr = index.best_match(french).expect(french);
            assert!(
                en.confidence >= DEFAULT_THRESHOLD,
                "{english:?} {:.2}",
                en.confidence
            );
            assert!(
                fr.confidence >= DEFAULT_THRESHOLD,
                "{french:?} {:.2}",
                fr.confidence
            );
            assert_eq!(
                detect_language(&en.entry.answer),
                Some(Lang::En),
                "{english:?}"
            );
            assert_eq!(
                detect_language(&fr.entry.answer),
                Some(Lang::Fr),
                "{french:?}"
            );
            assert_ne!(en.index, fr.index);
        }
    }

    #[test]
    fn a_lookalike_from_the_other_language_reads_as_a_typo() {
        // "adress" is the stem of French "adresse": in an English message it
        // is a misspelt "address", and the English entry answers.
        let index = shop();
        assert_hits(&index, "what is your adress", EN_SHOP);
        assert_hits(&index, "quelle est votre adresse", FR_SHOP);
    }

    #[test]
    fn one_common_word_is_not_enough_but_a_question_is() {
        let index = shop();
        assert_unsure(&index, "order");
        assert_unsure(&index, "commande");
        assert_hits(&index, "where is my order?", EN_TRACKING);
        assert_hits(&index, "où est ma commande", FR_TRACKING);
    }

    #[test]
    fn answer_words_help_but_cannot_decide_alone() {
        let index = shop();
        // Canada and Germany are only named in the answer.
        assert_hits(&index, "do you ship to canada", EN_ABROAD);
        assert_hits(&index, "do you ship to germany?", EN_ABROAD);
        let md = "## Do you ship abroad?\n\nYes: Belgium, Canada and Japan.\n\n\
                  ## What are your opening hours?\n\nMonday to Friday.\n";
        let index = FaqIndex::parse(md).expect("parses");
        let m = index.best_match("Japan").expect("answer word");
        assert_eq!(m.index, 0);
        assert!(m.confidence < DEFAULT_THRESHOLD, "{}", m.confidence);
    }

    #[test]
    fn confidence_is_one_for_a_phrasing_and_always_in_range() {
        let index = shop();
        for entry in index.entries() {
            for phrase in std::iter::once(&entry.question).chain(&entry.alternates) {
                let m = index.best_match(phrase).expect("own phrasing");
                assert!(m.confidence > 0.99, "{phrase:?}: {}", m.confidence);
            }
        }
        for message in [
            "order",
            "the candle arrived broken",
            "delivry",
            "x y z",
            "gift",
        ] {
            if let Some(m) = index.best_match(message) {
                assert!((0.0..=1.0).contains(&m.confidence), "{message:?}");
            }
        }
    }

    #[test]
    fn detects_the_language_from_function_words() {
        assert_eq!(detect_language("Where is my order?"), Some(Lang::En));
        assert_eq!(detect_language("hello"), Some(Lang::En));
        assert_eq!(detect_language("Où est ma commande ?"), Some(Lang::Fr));
        assert_eq!(detect_language("bonjour"), Some(Lang::Fr));
        assert_eq!(
            detect_language("Bonjour, do you ship to Belgium?"),
            Some(Lang::En)
        );
        assert_eq!(detect_language("livraison gratuite ?"), None);
        assert_eq!(detect_language("paypal"), None);
        assert_eq!(detect_language(""), None);
        assert_eq!(detect_language("ok"), None);
    }

    #[test]
    fn never_panics_on_odd_messages_or_files() {
        let index = shop();
        let long_word = "a".repeat(100_000);
        let many_words = "livraison zzqx ".repeat(20_000);
        let smileys = "🙂".repeat(1000);
        let messages = [
            "",
            " ",
            "\0",
            "'",
            "’’’",
            "-",
            "q:",
            "##",
            "\u{301}\u{301}\u{301}",
            "ﬁﬁﬁ ßßß ÆØÅ",
            "日本語のメッセージです",
            "مرحبا، أين طلبي؟",
            "12345 #A-9981 10h30",
            "aaaa bbbb cccc dddd eeee",
            long_word.as_str(),
            many_words.as_str(),
            smileys.as_str(),
        ];
        for message in messages {
            if let Some(m) = index.best_match(message) {
                assert!((0.0..=1.0).contains(&m.confidence));
            }
            let _ = detect_language(message);
        }
        // Pseudo-random files and messages built from the format's own pieces.
        let pieces = [
            "## ",
            "##",
            "q:",
            "Q :",
            "\n",
            "\r\n",
            " ",
            "é",
            "œ",
            "a",
            "livraison",
            "?",
            "'",
            "\u{feff}",
            "#",
            "\t",
        ];
        let mut seed: u64 = 0x5eed;
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..40 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            if let Ok(index) = FaqIndex::parse(&text) {
                let _ = index.best_match(&text);
            }
            let _ = shop_index_match(&index, &text);
        }
    }

    fn shop_index_match(index: &FaqIndex, text: &str) -> Option<f64> {
        index.best_match(text).map(|m| m.confidence)
    }

    #[test]
    fn matching_takes_microseconds() {
        let index = shop();
        let messages = [
            "vous etes ouvert le dimanch ?",
            "quels sont les delais de livrasion",
            "Hi! I ordered a candle last week and it still hasn't arrived, can you help?",
            "my cat is sick",
        ];
        let start = std::time::Instant::now();
        let rounds = 500;
        for _ in 0..rounds {
            for message in messages {
                std::hint::black_box(index.best_match(message));
            }
        }
        let per_match = start.elapsed() / (rounds * messages.len() as u32);
        // ~10 µs in release; generous for unoptimised builds on a busy machine.
        assert!(
            per_match < std::time::Duration::from_millis(1),
            "{per_match:?}"
        );
    }
}
