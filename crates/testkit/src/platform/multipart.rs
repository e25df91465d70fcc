//! Reads a `multipart/form-data` body as the platforms would: its text fields and its file.

use bytes::Bytes;
use http::HeaderMap;

/// One file of a form: the field it came in, its name and type as sent, and its bytes.
#[derive(Clone, Debug)]
pub struct FilePart {
    pub field: String,
    pub name: Option<String>,
    pub mime: Option<String>,
    pub bytes: Bytes,
}

/// A form's text fields, in order, and its files.
#[derive(Clone, Debug, Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FilePart>,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The form of a request whose type is `multipart/form-data`; `None` for any other body.
pub fn read(headers: &HeaderMap, body: &[u8]) -> Option<Form> {
    let kind = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    if !kind.starts_with("multipart/form-data") {
        return None;
    }
    let boundary = kind
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut form = Form::default();
    for part in split(body, delimiter.as_bytes()).into_iter().skip(1) {
        if part.starts_with(b"--") {
            break;
        }
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(end) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..end]).to_string();
        let content = &part[end + 4..];
        let mut name = None;
        let mut file_name = None;
        let mut mime = None;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                name = parameter(line, "name");
                file_name = parameter(line, "filename");
            } else if lower.starts_with("content-type:") {
                mime = line.split_once(':').map(|(_, v)| v.trim().to_string());
            }
        }
        let Some(name) = name else { continue };
        if file_name.is_some() || mime.is_some() {
            form.files.push(FilePart {
                field: name,
                name: file_name,
                mime,
                bytes: Bytes::copy_from_slice(content),
            });
        } else {
            form.fields
                .push((name, String::from_utf8_lossy(content).to_string()));
        }
    }
    Some(form)
}

/// `name="value"` of a header line.
fn parameter(line: &str, name: &str) -> Option<String> {
    line.split(';').find_map(|p| {
        let (key, value) = p.trim().split_once('=')?;
        (key == name).then(|| value.trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut body: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(at) = find(body, delimiter) {
        parts.push(&body[..at]);
        body = &body[at + delimiter.len()..];
    }
    parts.push(body);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_a_file() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\r\n\x00--XyZ--\r\n";
        let form = read(&headers, body).unwrap();
        assert_eq!(form.field("chat_id"), Some("42"));
        assert_eq!(form.files.len(), 1);
        let file = &form.files[0];
        assert_eq!(
            (
                file.field.as_str(),
                file.name.as_deref(),
                file.mime.as_deref()
            ),
            ("photo", Some("a.jpg"), Some("image/jpeg"))
        );
        assert_eq!(&file.bytes[..], b"\xff\xd8\r\n\x00");
    }
}
