//! Just enough HTTP/1.1 for the fake platform to serve keep-alive connections by hand, so
//! that a fault can hold an answer past the gateway's timeout or drop the connection in the
//! middle of a request.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a request's head or body may take.
const LIMIT: usize = 64 * 1024 * 1024;

/// One request as it came.
pub(super) struct Request {
    pub method: Method,
    /// The path without its query, as sent (still percent-encoded).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Reads one request (its head, then a `Content-Length` or chunked body) from `stream`;
/// `None` at the end of the connection or on anything this fake does not speak.
pub(super) async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        fill(stream, buffer, buffer.len() + 1).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split_whitespace();
    let method = Method::from_bytes(start.next()?.as_bytes()).ok()?;
    let target = start.next()?;
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut headers = HeaderMap::new();
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(stream, buffer).await?
    } else {
        let length = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if length > LIMIT {
            return None;
        }
        fill(stream, buffer, length).await?;
        buffer.drain(..length).collect()
    };
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Reads a chunked body, its trailers left out.
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buffer).await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            while !read_line(stream, buffer).await?.is_empty() {}
            return Some(body);
        }
        if body.len() + size > LIMIT {
            return None;
        }
        fill(stream, buffer, size + 2).await?;
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
    }
}

/// One line ending in CRLF, without it.
async fn read_line(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buffer[..at]).into_owned();
            buffer.drain(..at + 2);
            return Some(line);
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        fill(stream, buffer, buffer.len() + 1).await?;
    }
}

/// Reads from `stream` until `buffer` holds at least `want` bytes.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, want: usize) -> Option<()> {
    let mut chunk = [0u8; 4096];
    while buffer.len() < want {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

/// Writes one answer with its length, so the connection can serve the next request.
pub(super) async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    stream.flush().await
}
