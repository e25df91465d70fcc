//! The concierges' console: one page, served as is (no build step), that talks to the
//! concierge API with the token the concierge signs in with. Its script and style are files
//! of its own (`/assets/console.js`, `/assets/console.css`), nothing runs inline, and no
//! site may frame it.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header;

const PAGE: &str = include_str!("assets/console.html");

static POLICY: LazyLock<String> = LazyLock::new(|| super::csp::policy("'none'", ""));

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY.as_str()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}
