//! `GET /api/v1/media/{id}`: a customer's media for a concierge who may see a conversation
//! holding it (any other gets 404, as for media that does not exist), served so a browser
//! never runs it: its type as read from the bytes, `nosniff`, a policy that forbids
//! everything active, and anything but images, audio and video as a download.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::api::{Authed, Problem, Rejection, problem};
use concierge_domain::MediaId;
use concierge_engine::handoff::actions::ActionError;
use concierge_media::Variant;

#[derive(Deserialize, IntoParams)]
pub struct MediaQuery {
    /// `thumb` for an image's thumbnail (320 px on its long side); the original otherwise.
    variant: Option<String>,
}

/// The bytes of kept media.
#[utoipa::path(get, path = "/media/{id}", tag = "concierge",
    params(("id" = String, Path, description = "The media id: the SHA-256 of its bytes"), MediaQuery),
    responses(
        (status = 200, description = "The bytes, with their type", content_type = "application/octet-stream"),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 404, description = "No such media in a conversation this concierge may see", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn media(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(query): Query<MediaQuery>,
) -> Result<Response, Rejection> {
    let not_found = || problem(StatusCode::NOT_FOUND, "no such media");
    let (Some(store), Ok(id)) = (state.media.as_ref(), MediaId::parse(&id)) else {
        return Ok(not_found());
    };
    let holders = store.conversations(&id).await.map_err(unavailable)?;
    let mut allowed = false;
    for conversation in &holders {
        match state.desk.thread(&caller, conversation).await {
            Ok(_) => {
                allowed = true;
                break;
            }
            Err(ActionError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !allowed {
        return Ok(not_found());
    }
    let variant = match query.variant.as_deref() {
        Some("thumb") => Variant::Thumbnail,
        _ => Variant::Original,
    };
    let Some((bytes, mime)) = store.read(&id, variant).await.map_err(unavailable)? else {
        return Ok(not_found());
    };
    let shown = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| mime.starts_with(p));
    let disposition = if shown {
        "inline".to_string()
    } else {
        format!(
            "attachment; filename=\"{}.{}\"",
            &id.as_str()[..16],
            extension(&mime)
        )
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
            (header::CACHE_CONTROL, "private, max-age=3600".to_string()),
        ],
        bytes,
    )
        .into_response())
}

fn unavailable(e: concierge_media::MediaError) -> Rejection {
    tracing::warn!(error = %e, "the media store failed");
    Rejection::from_response(problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the media store is unavailable; try again",
    ))
}

/// A file name's extension for a download of type `mime`.
fn extension(mime: &str) -> &'static str {
    match mime {
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        m if m.ends_with("wordprocessingml.document") => "docx",
        m if m.ends_with("spreadsheetml.sheet") => "xlsx",
        m if m.ends_with("presentationml.presentation") => "pptx",
        "application/vnd.oasis.opendocument.text" => "odt",
        "application/vnd.oasis.opendocument.spreadsheet" => "ods",
        _ => "bin",
    }
}
