//! Text plumbing for the FAQ matcher: normalisation, tokens, stopwords, a light English/French stemmer, bounded edit distance and language votes.
//!
//! Everything here works on *normalised* text: NFKD-decomposed, combining marks
//! removed (é → e, ç → c), ligatures expanded (œ → oe, æ → ae, ß → ss) and
//! lowercased. Tokens are maximal runs of alphanumeric characters, so
//! punctuation, apostrophes and hyphens all split words: French elisions
//! (`l'ouverture`, `qu'est-ce`) leave a one- or two-letter prefix that is then
//! dropped as too short or as a stopword.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Tokens shorter than this (in characters) are ignored: single letters are
/// elided articles/pronouns (`l'`, `d'`, `j'`) or noise.
const MIN_TOKEN_CHARS: usize = 2;

/// Stems are never cut below this many characters.
const MIN_STEM_CHARS: usize = 3;

/// Longest token considered for fuzzy matching; longer ones only match exactly.
pub(super) const MAX_FUZZY_CHARS: usize = 32;

/// Lowercases, decomposes and strips accents, and expands ligatures.
pub(super) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase).nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            'ß' => out.push_str("ss"),
            _ => out.push(c),
        }
    }
    out
}

/// Every run of alphanumeric characters of normalised text, including single letters.
fn raw_tokens(normalized: &str) -> impl Iterator<Item = &str> {
    normalized
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// The words of normalised text worth looking at (two characters or more).
pub(super) fn tokens(normalized: &str) -> impl Iterator<Item = &str> {
    raw_tokens(normalized).filter(|t| t.chars().nth(MIN_TOKEN_CHARS - 1).is_some())
}

/// Whether a token contains a digit (prices, times, order numbers).
pub(super) fn has_digit(token: &str) -> bool {
    token.chars().any(|c| c.is_numeric())
}

/// Function words, greetings and politeness of English and French, normalised
/// (no accents) and sorted for binary search. They carry no topic, so they are
/// dropped from both the FAQ and the customer's message.
const STOPWORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "afternoon",
    "again",
    "ai",
    "aide",
    "aider",
    "aie",
    "aient",
    "aimerais",
    "ait",
    "all",
    "alors",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anyone",
    "anything",
    "apres",
    "are",
    "aren",
    "as",
    "at",
    "au",
    "aucun",
    "aujourd",
    "aussi",
    "autre",
    "aux",
    "avant",
    "avec",
    "avez",
    "avoir",
    "avons",
    "bah",
    "be",
    "been",
    "before",
    "being",
    "besoin",
    "bien",
    "bon",
    "bonjour",
    "bonne",
    "bonsoir",
    "but",
    "by",
    "ca",
    "can",
    "cannot",
    "car",
    "ce",
    "ceci",
    "cela",
    "celle",
    "celui",
    "ces",
    "cet",
    "cette",
    "cheers",
    "chez",
    "chose",
    "ci",
    "combien",
    "comme",
    "comment",
    "cordialement",
    "coucou",
    "could",
    "couldn",
    "dans",
    "de",
    "dear",
    "deja",
    "demain",
    "depuis",
    "des",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "donc",
    "done",
    "dont",
    "du",
    "each",
    "elle",
    "elles",
    "else",
    "en",
    "encore",
    "entre",
    "es",
    "est",
    "et",
    "etaient",
    "etais",
    "etait",
    "etes",
    "etre",
    "even",
    "evening",
    "ever",
    "every",
    "faire",
    "fais",
    "fait",
    "faites",
    "faut",
    "for",
    "from",
    "get",
    "gets",
    "getting",
    "go",
    "good",
    "got",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "hello",
    "help",
    "her",
    "here",
    "hey",
    "hi",
    "him",
    "his",
    "hiya",
    "how",
    "however",
    "hui",
    "if",
    "il",
    "ils",
    "im",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "ive",
    "je",
    "just",
    "know",
    "la",
    "le",
    "les",
    "let",
    "leur",
    "leurs",
    "like",
    "ll",
    "lui",
    "ma",
    "madame",
    "maintenant",
    "mais",
    "me",
    "merci",
    "mes",
    "mine",
    "moi",
    "mon",
    "monsieur",
    "more",
    "morning",
    "much",
    "must",
    "my",
    "need",
    "needs",
    "ni",
    "no",
    "non",
    "nos",
    "not",
    "notre",
    "nous",
    "now",
    "of",
    "off",
    "ok",
    "okay",
    "on",
    "one",
    "only",
    "ont",
    "or",
    "other",
    "ou",
    "oui",
    "our",
    "ours",
    "out",
    "par",
    "pas",
    "pendant",
    "peu",
    "peut",
    "peux",
    "plait",
    "please",
    "pls",
    "plus",
    "plz",
    "possible",
    "pour",
    "pourquoi",
    "pourrais",
    "pourriez",
    "pouvez",
    "pouvons",
    "puis",
    "puisque",
    "qu",
    "quand",
    "que",
    "quel",
    "quelle",
    "quelles",
    "quelqu",
    "quelque",
    "quels",
    "qui",
    "quoi",
    "re",
    "really",
    "regards",
    "sa",
    "salut",
    "same",
    "sans",
    "savoir",
    "say",
    "se",
    "ses",
    "she",
    "should",
    "shouldn",
    "si",
    "sil",
    "so",
    "some",
    "someone",
    "something",
    "sommes",
    "son",
    "sont",
    "souhaite",
    "souhaiterais",
    "still",
    "stp",
    "such",
    "suis",
    "sur",
    "sure",
    "svp",
    "ta",
    "te",
    "tell",
    "tes",
    "than",
    "thank",
    "thanks",
    "thankyou",
    "that",
    "thats",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "this",
    "thnx",
    "those",
    "thx",
    "to",
    "today",
    "toi",
    "tomorrow",
    "ton",
    "tonight",
    "too",
    "toujours",
    "tous",
    "tout",
    "toute",
    "toutes",
    "tres",
    "tu",
    "ty",
    "un",
    "une",
    "up",
    "ur",
    "us",
    "ve",
    "very",
    "veux",
    "vos",
    "votre",
    "voudrais",
    "voulez",
    "vous",
    "want",
    "wanted",
    "wants",
    "was",
    "wasn",
    "way",
    "we",
    "well",
    "were",
    "weren",
    "what",
    "whats",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "won",
    "would",
    "wouldn",
    "ya",
    "yes",
    "yet",
    "you",
    "your",
    "yours",
];

/// Whether a normalised token is a stopword.
pub(super) fn is_stopword(token: &str) -> bool {
    STOPWORDS.binary_search(&token).is_ok()
}

/// The stopwords of normalised text, as sorted unique ids (positions in the
/// stopword list): they tell "where is my order" from a bare "order".
pub(super) fn stopword_ids(normalized: &str) -> Vec<u16> {
    let mut ids: Vec<u16> = tokens(normalized)
        .filter_map(|t| STOPWORDS.binary_search(&t).ok())
        .filter_map(|i| u16::try_from(i).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether an unknown token looks like a misspelt stopword ("yuor", "pleaes",
/// "bonjours"), so that it can be ignored rather than counted as unmatched.
pub(super) fn is_near_stopword(token: &[char]) -> bool {
    let max = max_edits(token.len());
    if max == 0 {
        return false;
    }
    let mut buf = [' '; MAX_FUZZY_CHARS];
    STOPWORDS.iter().any(|stop| {
        let n = stop.chars().count();
        if !(4..=MAX_FUZZY_CHARS).contains(&n) || n.abs_diff(token.len()) > max {
            return false;
        }
        for (slot, c) in buf.iter_mut().zip(stop.chars()) {
            *slot = c;
        }
        bounded_distance(token, &buf[..n], max).is_some()
    })
}

/// Bit set of the kinds of question a normalised text asks: where (`where`,
/// `où`), when (`when`, `quand`), why (`why`, `pourquoi`) and how much/many
/// (`much`, `many`, `combien`). These words are stopwords for matching, but
/// sharing one with a phrasing is extra evidence for it.
pub(super) fn question_kinds(normalized: &str) -> u8 {
    tokens(normalized).fold(0, |kinds, token| {
        kinds
            | match token {
                "where" | "ou" => 1,
                "when" | "quand" => 2,
                "why" | "pourquoi" => 4,
                "much" | "many" | "combien" => 8,
                _ => 0,
            }
    })
}

/// Suffix rules of the light stemmer, tried in order; the first one that
/// matches is applied (if the stem keeps at least [`MIN_STEM_CHARS`]) and the
/// word is stemmed again, until no rule applies. The rules mix English and
/// French inflection; they are not linguistically exact, only *consistent*:
/// `delivery`, `deliveries`, `delivered`, `delivering` all end up as `deliv`;
/// `livraison`, `livrer`, `livrée`, `livrez` as `livr`; `remboursement`,
/// `rembourser`, `remboursé` as `rembour`.
const SUFFIX_RULES: &[(&str, &str)] = &[
    ("ies", ""),
    ("ie", ""),
    ("ement", ""),
    ("ment", ""),
    ("ation", ""),
    ("aison", ""),
    ("ure", ""),
    ("ert", "r"),
    ("ing", ""),
    ("ly", ""),
    ("age", ""),
    ("ed", ""),
    ("ee", ""),
    ("er", ""),
    ("ez", ""),
    ("ir", ""),
    ("e", ""),
    ("y", ""),
];

/// Light, language-agnostic stemming of a normalised token (see [`SUFFIX_RULES`]).
pub(super) fn stem(token: &str) -> String {
    let mut word = token.to_owned();
    if has_digit(&word) {
        return word;
    }
    // Bounded: every step shortens the word.
    for _ in 0..8 {
        match stem_step(&word) {
            Some(shorter) => word = shorter,
            None => break,
        }
    }
    word
}

/// One stemming step, or `None` when the word is final.
fn stem_step(word: &str) -> Option<String> {
    let len = word.chars().count();
    if len <= MIN_STEM_CHARS {
        return None;
    }
    // Plurals: drop a final `s` (not `ss`, `us`, nor `is` in short words such
    // as `colis`, `frais`, `mois`) and the `x` of `-aux`/`-eux`/`-eaux`.
    if let Some(base) = word.strip_suffix('s') {
        let keep = base.ends_with('s') || base.ends_with('u') || (base.ends_with('i') && len <= 5);
        return (!keep).then(|| base.to_owned());
    }
    if let Some(base) = word.strip_suffix('x') {
        return (base.ends_with('u') && len > 4).then(|| base.to_owned());
    }
    for (suffix, replacement) in SUFFIX_RULES {
        if let Some(base) = word.strip_suffix(suffix) {
            if base.chars().count() + replacement.chars().count() < MIN_STEM_CHARS {
                return None;
            }
            let mut stemmed = format!("{base}{replacement}");
            if matches!(*suffix, "ing" | "ed") {
                undouble(&mut stemmed);
            }
            return Some(stemmed);
        }
    }
    None
}

/// `shipp` → `ship`, `wrapp` → `wrap`; keeps `ll`, `ss`, `zz` (`roll`, `pass`).
fn undouble(word: &mut String) {
    let mut rev = word.chars().rev();
    if let (Some(last), Some(before)) = (rev.next(), rev.next())
        && last == before
        && last.is_alphabetic()
        && !matches!(last, 'a' | 'e' | 'i' | 'o' | 'u' | 'l' | 's' | 'z')
        && word.chars().count() > MIN_STEM_CHARS
    {
        word.pop();
    }
}

/// Edits allowed when fuzzy-matching a word of `len` characters: none under 4,
/// one for 4–7, two from 8 on.
pub(super) fn max_edits(len: usize) -> usize {
    match len {
        0..4 => 0,
        4..8 => 1,
        _ => 2,
    }
}

/// Optimal-string-alignment distance (insertions, deletions, substitutions and
/// swaps of two adjacent letters) between `a` and `b`, or `None` if it exceeds
/// `max`. Allocation-free; both words must be at most [`MAX_FUZZY_CHARS`] long
/// (longer ones return `None`).
pub(super) fn bounded_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    const W: usize = MAX_FUZZY_CHARS + 1;
    if a.len() > MAX_FUZZY_CHARS || b.len() > MAX_FUZZY_CHARS || a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev2 = [0usize; W];
    let mut prev: [usize; W] = std::array::from_fn(|j| j);
    let mut cur = [0usize; W];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return None;
        }
        prev2 = prev;
        prev = cur;
    }
    let d = prev[b.len()];
    (d <= max).then_some(d)
}

/// Unambiguous English function words (normalised), used to guess a language.
const EN_MARKERS: &[&str] = &[
    "about", "and", "are", "at", "be", "can", "cant", "could", "did", "do", "does", "don", "dont",
    "for", "from", "have", "hello", "hey", "hi", "how", "hows", "i", "im", "in", "is", "it", "my",
    "of", "please", "thank", "thanks", "that", "the", "there", "this", "to", "u", "ur", "want",
    "was", "we", "what", "whats", "when", "where", "wheres", "which", "why", "will", "with",
    "would", "you", "your",
];

/// Unambiguous French function words (normalised), used to guess a language.
const FR_MARKERS: &[&str] = &[
    "au", "aux", "avec", "avez", "bonjour", "bonsoir", "c", "ce", "comment", "d", "dans", "de",
    "des", "du", "elle", "en", "est", "et", "etes", "il", "j", "je", "l", "la", "le", "les", "ma",
    "merci", "mes", "mon", "n", "ne", "nous", "ou", "pas", "peux", "pour", "pouvez", "puis", "qu",
    "quand", "que", "quel", "quelle", "quelles", "quels", "qui", "salut", "sont", "stp", "sur",
    "svp", "un", "une", "vos", "votre", "vous",
];

/// Counts English and French function words in `text` (any form, normalised
/// here); a French accented letter counts as one more French vote.
pub(super) fn language_votes(text: &str) -> (usize, usize) {
    let normalized = normalize(text);
    let mut en = 0;
    let mut fr = 0;
    for token in raw_tokens(&normalized) {
        if EN_MARKERS.binary_search(&token).is_ok() {
            en += 1;
        } else if FR_MARKERS.binary_search(&token).is_ok() {
            fr += 1;
        }
    }
    if text.chars().any(|c| "éèêàùçâîôûëïœÉÈÊÀÇ".contains(c)) {
        fr += 1;
    }
    (en, fr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn word_lists_are_sorted_and_normalised() {
        for list in [STOPWORDS, EN_MARKERS, FR_MARKERS] {
            for pair in list.windows(2) {
                assert!(pair[0] < pair[1], "{:?} not sorted/unique", pair);
            }
            for word in list {
                assert_eq!(normalize(word), *word);
            }
        }
    }

    #[test]
    fn normalisation_strips_accents_case_and_ligatures() {
        assert_eq!(normalize("Œuvre Élégante ÇA"), "oeuvre elegante ca");
        assert_eq!(normalize("Straße ﬁne"), "strasse fine");
        assert_eq!(normalize("l’ouverture"), "l’ouverture");
    }

    #[test]
    fn tokens_split_elisions_and_punctuation() {
        let n = normalize("Qu'est-ce que l'ouverture, d’après vous ?!");
        let toks: Vec<&str> = tokens(&n).collect();
        assert_eq!(
            toks,
            ["qu", "est", "ce", "que", "ouverture", "apres", "vous"]
        );
        let kept: Vec<&str> = toks.into_iter().filter(|t| !is_stopword(t)).collect();
        assert_eq!(kept, ["ouverture"]);
    }

    #[test]
    fn stemmer_conflates_inflections_consistently() {
        let families: &[&[&str]] = &[
            &[
                "delivery",
                "deliveries",
                "delivered",
                "deliver",
                "delivering",
                "delivers",
            ],
            &[
                "livraison",
                "livraisons",
                "livrer",
                "livree",
                "livrez",
                "livre",
            ],
            &[
                "remboursement",
                "remboursements",
                "rembourser",
                "rembourse",
                "rembourses",
            ],
            &["ship", "ships", "shipping", "shipped", "shipment"],
            &["open", "opens", "opened", "opening", "openings"],
            &["horaire", "horaires"],
            &["candle", "candles"],
            &["bougie", "bougies"],
            &["cadeau", "cadeaux"],
            &["delai", "delais"],
            &["package", "packages"],
            &["pay", "paying", "payment", "payments", "payer", "payez"],
            &["address", "addresses"],
            &["wrap", "wrapping", "wrapped"],
        ];
        for family in families {
            let first = stem(family[0]);
            for word in *family {
                assert_eq!(stem(word), first, "{word} vs {}", family[0]);
            }
        }
        assert_eq!(stem("colis"), "colis");
        assert_eq!(stem("frais"), "frais");
        assert_eq!(stem("free"), "free");
        assert_eq!(stem("roll"), "roll");
        assert_eq!(stem("10h30"), "10h30");
    }

    #[test]
    fn stemmer_never_panics_on_odd_input() {
        for word in [
            "",
            "s",
            "ss",
            "x",
            "ieies",
            "ééééés",
            "日本語です",
            "ing",
            "eded",
            "ﬁﬁs",
        ] {
            let n = normalize(word);
            let _ = stem(&n);
        }
    }

    #[test]
    fn distance_counts_typos() {
        let d = |a: &str, b: &str, max| bounded_distance(&chars(a), &chars(b), max);
        assert_eq!(d("horiares", "horaires", 2), Some(1));
        assert_eq!(d("livrasion", "livraison", 2), Some(1));
        assert_eq!(d("delivry", "delivery", 1), Some(1));
        assert_eq!(d("rembourssement", "remboursement", 2), Some(1));
        assert_eq!(d("same", "same", 0), Some(0));
        assert_eq!(d("kitten", "sitting", 2), None);
        assert_eq!(d("kitten", "sitting", 3), Some(3));
        assert_eq!(d("", "ab", 2), Some(2));
        let long = "a".repeat(MAX_FUZZY_CHARS + 1);
        assert_eq!(d(&long, &long, 2), None);
    }

    #[test]
    fn near_stopwords() {
        assert!(is_near_stopword(&chars("yuor")));
        assert!(is_near_stopword(&chars("bonjours")));
        assert!(!is_near_stopword(&chars("candle")));
        assert!(!is_near_stopword(&chars("cat")));
    }

    #[test]
    fn allowed_edits_grow_with_length() {
        assert_eq!(max_edits(3), 0);
        assert_eq!(max_edits(4), 1);
        assert_eq!(max_edits(7), 1);
        assert_eq!(max_edits(8), 2);
    }
}
