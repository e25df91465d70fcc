//! What a file is, read from its first bytes: what a sender claims (a file name, a MIME type)
//! is never trusted, and only kinds a shop's customers send are kept.

use concierge_domain::MediaKind;

/// A file's type, as its bytes tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub mime: String,
    pub kind: MediaKind,
}

/// The kinds kept, by MIME type as `infer` names them.
const ALLOWED: &[(&str, MediaKind)] = &[
    ("image/jpeg", MediaKind::Image),
    ("image/png", MediaKind::Image),
    ("image/webp", MediaKind::Image),
    ("image/gif", MediaKind::Image),
    ("image/heif", MediaKind::Image),
    ("image/avif", MediaKind::Image),
    ("audio/ogg", MediaKind::Audio),
    ("audio/opus", MediaKind::Audio),
    ("audio/mpeg", MediaKind::Audio),
    ("audio/m4a", MediaKind::Audio),
    ("audio/aac", MediaKind::Audio),
    ("audio/amr", MediaKind::Audio),
    ("audio/x-wav", MediaKind::Audio),
    ("audio/x-flac", MediaKind::Audio),
    ("audio/x-aiff", MediaKind::Audio),
    ("video/mp4", MediaKind::Video),
    ("video/quicktime", MediaKind::Video),
    ("video/webm", MediaKind::Video),
    ("video/x-matroska", MediaKind::Video),
    ("video/3gpp", MediaKind::Video),
    ("application/pdf", MediaKind::Document),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        MediaKind::Document,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        MediaKind::Document,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        MediaKind::Document,
    ),
    (
        "application/vnd.oasis.opendocument.text",
        MediaKind::Document,
    ),
    (
        "application/vnd.oasis.opendocument.spreadsheet",
        MediaKind::Document,
    ),
];

/// What `bytes` are, or why they are not kept.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, crate::MediaError> {
    if let Some(found) = infer::get(bytes) {
        let mime = found.mime_type();
        return match ALLOWED.iter().find(|(m, _)| *m == mime) {
            Some((mime, kind)) => Ok(Sniffed {
                mime: (*mime).to_string(),
                kind: *kind,
            }),
            None => Err(crate::MediaError::NotAllowed(mime.to_string())),
        };
    }
    // No signature: plain text is kept as a document; markup (a web page, an SVG, which can
    // carry scripts) and unknown binaries are not.
    let prefix = &bytes[..bytes.len().min(8192)];
    let text = match std::str::from_utf8(prefix) {
        Ok(text) => text,
        // A character cut at the end of the prefix is not a reason to call the file binary.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => {
            return Err(crate::MediaError::NotAllowed(
                "an unknown binary format".into(),
            ));
        }
    };
    if text.contains('\0') {
        return Err(crate::MediaError::NotAllowed(
            "an unknown binary format".into(),
        ));
    }
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with('<') {
        return Err(crate::MediaError::NotAllowed(
            "markup: a web page, SVG or XML".into(),
        ));
    }
    if bytes.is_empty() {
        return Err(crate::MediaError::Unreadable("the file is empty".into()));
    }
    Ok(Sniffed {
        mime: "text/plain".to_string(),
        kind: MediaKind::Document,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_documents_and_audio_are_kept_by_their_bytes() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
        assert_eq!(sniff(&jpeg).unwrap().mime, "image/jpeg");
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
        assert_eq!(sniff(pdf).unwrap().kind, MediaKind::Document);
        let ogg = b"OggS\0\x02\0\0\0\0\0\0\0\0";
        assert_eq!(sniff(ogg).unwrap().kind, MediaKind::Audio);
        assert_eq!(
            sniff("Commande ML-10421, reçu".as_bytes()).unwrap().mime,
            "text/plain"
        );
    }

    #[test]
    fn executables_markup_and_unknown_binaries_are_refused() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        assert!(matches!(sniff(elf), Err(crate::MediaError::NotAllowed(_))));
        let pe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
        assert!(matches!(sniff(pe), Err(crate::MediaError::NotAllowed(_))));
        for markup in [
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            "  <!doctype html><html><body>hi</body></html>",
            "\u{feff}<?xml version=\"1.0\"?><a/>",
        ] {
            assert!(
                matches!(
                    sniff(markup.as_bytes()),
                    Err(crate::MediaError::NotAllowed(_))
                ),
                "{markup}"
            );
        }
        assert!(matches!(
            sniff(&[0x00, 0x13, 0x37, 0x00, 0xAB]),
            Err(crate::MediaError::NotAllowed(_))
        ));
        assert!(matches!(sniff(b""), Err(crate::MediaError::Unreadable(_))));
    }
}
