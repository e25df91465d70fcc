//! The console's and the web chat's script and style, embedded in the binary and served at
//! `/assets/{name}` (one place for both pages, outside the `/chat/{channel_id}` namespace).
//! Each is `no-cache` with an ETag of its content: a browser revalidates it on every load
//! (a 304 when unchanged), so an upgraded gateway never runs with a stale script.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

/// One embedded file: its name under `/assets/`, its type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 4] = [
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        name: "chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/chat.js"),
    },
    Asset {
        name: "chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/chat.css"),
    },
];

/// Each asset's strong ETag, `"<sha-256 hex>"`, in the order of [`ASSETS`]; computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hex::encode(Sha256::digest(a.body.as_bytes()))))
        .collect()
});

/// Whether an `If-None-Match` header names `etag` (or is `*`).
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(at) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let (asset, etag) = (&ASSETS[at], ETAGS[at].as_str());
    let status = if matches(&headers, etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = if status == StatusCode::OK {
        asset.body.into_response()
    } else {
        status.into_response()
    };
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_matches_itself_in_a_list_and_weakly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"old\", W/\"abc\""),
        );
        assert!(matches(&headers, "\"abc\""));
        assert!(!matches(&headers, "\"new\""));
        assert!(!matches(&HeaderMap::new(), "\"abc\""));
    }

    #[test]
    fn every_page_links_only_assets_that_exist() {
        for page in [
            include_str!("assets/console.html"),
            include_str!("assets/chat.html"),
        ] {
            let linked: Vec<&str> = page
                .split("/assets/")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .collect();
            assert_eq!(linked.len(), 2, "{linked:?}");
            for name in linked {
                assert!(ASSETS.iter().any(|a| a.name == name), "{name}");
            }
        }
    }
}
