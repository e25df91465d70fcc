//! Webhook signature checks, in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Checks `sha256=<hex>` against HMAC-SHA256(key, body).
pub fn verify_sha256_hex(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` of HMAC-SHA256(key, body): Meta's `X-Hub-Signature-256`.
pub fn sign_sha256_hex(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Base64 HMAC-SHA1(key, data): Twilio's `X-Twilio-Signature`.
pub fn sign_sha1_base64(key: &[u8], data: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a base64 HMAC-SHA1(key, data) (Twilio's scheme).
pub fn verify_sha1_base64(key: &[u8], data: &[u8], header: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(&expected).is_ok()
}

/// Compares two secrets in constant time (for tokens sent as they are).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use hmac::digest::CtOutput;
    // Comparing MACs of both values makes the comparison constant-time whatever the lengths.
    let mac = |v: &[u8]| -> Option<CtOutput<Hmac<Sha256>>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"concierge-compare").ok()?;
        mac.update(v);
        Some(mac.finalize())
    };
    match (mac(a), mac(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_accepts_the_right_signature_only() {
        let key = b"secret";
        let body = b"{\"a\":1}";
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_sha256_hex(key, body, &good));
        assert!(!verify_sha256_hex(key, b"{\"a\":2}", &good));
        assert!(!verify_sha256_hex(b"other", body, &good));
        assert!(!verify_sha256_hex(key, body, "sha256=zz"));
        assert!(!verify_sha256_hex(key, body, &good[7..]));
    }

    #[test]
    fn what_is_signed_verifies() {
        let good = sign_sha256_hex(b"secret", b"{}");
        assert!(verify_sha256_hex(b"secret", b"{}", &good));
        assert!(!verify_sha256_hex(b"other", b"{}", &good));
        let good = sign_sha1_base64(b"token", b"https://x/yBodyhi");
        assert!(verify_sha1_base64(b"token", b"https://x/yBodyhi", &good));
        assert!(!verify_sha1_base64(b"token", b"https://x/yBodyho", &good));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
