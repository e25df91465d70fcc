//! Choice ids made to fit a platform's limit (Telegram's 64 bytes of callback data, WhatsApp's
//! 200-character row ids) and still tell the choices apart: an id too long keeps its start and
//! ends with a digest of the whole, so two long ids that share a start stay two.

use sha2::{Digest, Sha256};

/// `id` when it is within `max` bytes; else its start, `~` and 16 hex digits of its SHA-256.
pub(crate) fn fitted(id: &str, max: usize) -> String {
    if id.len() <= max && !id.is_empty() {
        return id.to_string();
    }
    let digest = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
    let mut end = max.saturating_sub(digest.len() + 1).min(id.len());
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{digest}", &id[..end])
}

/// Whether `received` is the choice id `sent` came back as from a platform that fitted it to
/// its limit (Telegram's 64 bytes, WhatsApp's 200 and 256).
pub fn same_choice(sent: &str, received: &str) -> bool {
    sent == received
        || (received.contains('~')
            && [64, 200, 256]
                .iter()
                .any(|max| fitted(sent, *max) == received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_stay_and_long_ones_fit_apart() {
        assert_eq!(fitted("yes", 64), "yes");
        let a = format!("{}-a", "x".repeat(100));
        let b = format!("{}-b", "x".repeat(100));
        let (fa, fb) = (fitted(&a, 64), fitted(&b, 64));
        assert!(fa.len() <= 64 && fb.len() <= 64, "{fa} {fb}");
        assert_ne!(fa, fb);
        assert_eq!(fa, fitted(&a, 64), "the same id always fits the same way");
        // Cut at a character, never inside one.
        let accents = "é".repeat(60);
        assert!(fitted(&accents, 64).len() <= 64);
        assert_eq!(fitted("", 64).len(), 17);
    }

    #[test]
    fn a_fitted_id_is_known_for_the_one_it_was_made_from() {
        let long = format!("cart:add:{}", "SKU-".repeat(30));
        assert!(same_choice(&long, &fitted(&long, 64)));
        assert!(same_choice("cart:add:A", "cart:add:A"));
        assert!(!same_choice("cart:add:B", &fitted(&long, 64)));
    }
}
