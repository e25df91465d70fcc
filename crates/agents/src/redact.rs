//! Masks personal data (e-mail addresses, card numbers, phone numbers) in customer text
//! before it reaches an LLM, and puts the real values back where the gateway acts on them.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:[0-9][ -]?){12,18}[0-9]\b")
        .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});
/// Dates look like phone numbers to the pattern above; they are not personal data.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{2,4})$",
    )
    .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+|\b)[0-9](?:[0-9 .()\-]{6,18})[0-9]\b")
        .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Card,
    Phone,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Card => "card",
            Kind::Phone => "phone",
        }
    }
}

/// The values masked during one turn, so the same value always gets the same mask.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    found: Vec<(Kind, String, String)>,
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn digits(text: &str) -> Vec<u32> {
    text.chars().filter_map(|c| c.to_digit(10)).collect()
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    fn mask_for(&mut self, kind: Kind, value: &str) -> String {
        if let Some((_, _, mask)) = self.found.iter().find(|(_, v, _)| v == value) {
            return mask.clone();
        }
        let n = self.found.iter().filter(|(k, _, _)| *k == kind).count() + 1;
        let mask = format!("[{}-{n}]", kind.label());
        self.found.push((kind, value.to_string(), mask.clone()));
        mask
    }

    fn replace(&mut self, text: &str, pattern: &Regex, kind: Kind) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in pattern.find_iter(text) {
            let value = m.as_str();
            let count = digits(value).len();
            let keep = match kind {
                Kind::Email => false,
                Kind::Card => !(13..=19).contains(&count) || !luhn(&digits(value)),
                Kind::Phone => !(8..=15).contains(&count) || DATE.is_match(value.trim()),
            };
            if keep {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.push_str(&self.mask_for(kind, value.trim()));
            last = m.end();
        }
        out.push_str(&text[last..]);
        out
    }

    /// The text with its personal data masked.
    pub fn mask(&mut self, text: &str) -> String {
        let text = self.replace(text, &EMAIL, Kind::Email);
        let text = self.replace(&text, &CARD, Kind::Card);
        self.replace(&text, &PHONE, Kind::Phone)
    }

    /// Puts the real values back in a string, for a tool call the gateway makes.
    pub fn restore(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, value, mask) in &self.found {
            out = out.replace(mask, value);
        }
        out
    }

    /// Puts real values back in text for the customer: their own e-mail and phone as they
    /// wrote them, a card number only as its last four digits.
    pub fn restore_for_customer(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (kind, value, mask) in &self.found {
            let shown = match kind {
                Kind::Card => {
                    let d = digits(value);
                    let last: String = d[d.len().saturating_sub(4)..]
                        .iter()
                        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
                        .collect();
                    format!("•••• {last}")
                }
                _ => value.clone(),
            };
            out = out.replace(mask, &shown);
        }
        out
    }

    /// Puts real values back in every string of tool arguments.
    pub fn restore_json(&self, value: &Value) -> Value {
        if self.found.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.restore(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.restore_json(v)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.restore_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails_phones_and_cards_and_restores_them() {
        let mut r = Redactor::new();
        let masked = r.mask(
            "I'm claire.martin@example.fr, call me on +33 6 12 34 56 78, card 4111 1111 1111 1111. Order ML-10421.",
        );
        assert_eq!(
            masked,
            "I'm [email-1], call me on [phone-1], card [card-1]. Order ML-10421."
        );
        assert_eq!(
            r.restore_json(&serde_json::json!({"email": "[email-1]"})),
            serde_json::json!({"email": "claire.martin@example.fr"})
        );
        assert_eq!(
            r.restore_for_customer("Your card [card-1] and [phone-1]"),
            "Your card •••• 1111 and +33 6 12 34 56 78"
        );
    }

    #[test]
    fn leaves_order_numbers_tracking_codes_and_prices_alone() {
        let mut r = Redactor::new();
        let text = "Order 10421, tracking 6A12345678901, 42.90 €, on 2026-11-18";
        assert_eq!(r.mask(text), text);
    }

    #[test]
    fn the_same_value_gets_the_same_mask() {
        let mut r = Redactor::new();
        assert_eq!(r.mask("a@b.fr then a@b.fr"), "[email-1] then [email-1]");
    }
}
