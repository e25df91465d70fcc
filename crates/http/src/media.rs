//! Kept media over HTTP. `POST /api/v1/conversations/{id}/media`: a concierge keeps a file
//! to reply with. `GET /media/out/{channel}/{id}`: a reply's file for a platform that fetches
//! it (Twilio), by a link the channel signed that expires.
//! `GET /api/v1/media/{id}`: a customer's media for a concierge who may see a conversation
//! holding it (any other gets 404, as for media that does not exist), served so a browser
//! never runs it: its type as read from the bytes, `nosniff`, a policy that forbids
//! everything active, and anything but images, audio and video as a download.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api::{Authed, Problem, Rejection, problem};
use concierge_domain::{ConversationId, MediaId, MediaKind};
use concierge_engine::handoff::actions::ActionError;
use concierge_media::{MediaError, Variant};

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
    Ok(serve(&id, bytes, mime, "private, max-age=3600"))
}

/// Kept media as the gateway serves it anywhere: its type as read from the bytes, never
/// sniffed, never run, anything but a picture, a sound or a film as a download.
pub(crate) fn serve(id: &MediaId, bytes: Bytes, mime: String, cache: &'static str) -> Response {
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
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
            (header::CACHE_CONTROL, cache.to_string()),
        ],
        bytes,
    )
        .into_response()
}

#[derive(Deserialize, IntoParams)]
pub struct UploadQuery {
    /// The file's name, as the customer's app will show it (a document's); its path, if
    /// any, is dropped.
    name: Option<String>,
}

/// A file kept for a reply: the id to send it by.
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    /// The media id: the SHA-256 of its bytes.
    id: String,
    /// Its type, read from the bytes.
    mime: String,
    bytes: u64,
    width: Option<u32>,
    height: Option<u32>,
    /// The name given, cleaned, to send with the reply.
    name: Option<String>,
}

/// Keeps a file a concierge will send in this conversation (the body is the file, its
/// `Content-Type` what the sender thinks it is; what it is is read from the bytes). Reply
/// with it by its id: `POST /conversations/{id}/messages` with `media`.
#[utoipa::path(post, path = "/conversations/{id}/media", tag = "thread",
    params(("id" = String, Path, description = "The conversation id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Kept; reply with its id", body = Uploaded),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 404, description = "No such conversation, or not one the caller may see", body = Problem),
        (status = 413, description = "Larger than `[media] max_bytes`", body = Problem),
        (status = 415, description = "A kind of file that is not sent (executables, web pages, SVG, archives) or that does not read", body = Problem),
        (status = 422, description = "An empty body", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn upload(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<Response, Rejection> {
    let conversation = ConversationId::parse(id).map_err(|_| ActionError::NotFound)?;
    // Only a concierge who may see the conversation keeps files for it.
    state.desk.thread(&caller, &conversation).await?;
    let Some(store) = state.media.as_ref() else {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "media is not kept on this gateway ([media] is off)",
        ));
    };
    if body.is_empty() {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the file is empty",
        ));
    }
    let stored = match store.keep(body, MediaKind::Document).await {
        Ok(stored) => stored,
        Err(e @ MediaError::TooLarge { .. }) => {
            return Ok(problem(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
        }
        Err(e @ (MediaError::NotAllowed(_) | MediaError::Unreadable(_))) => {
            return Ok(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()));
        }
        Err(e) => return Err(unavailable(e)),
    };
    store
        .link(&stored.id, &conversation)
        .await
        .map_err(unavailable)?;
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            id: stored.id.to_string(),
            mime: stored.mime,
            bytes: stored.bytes,
            width: stored.width,
            height: stored.height,
            name: query.name.as_deref().and_then(file_name),
        }),
    )
        .into_response())
}

/// A file name as a sender gave it, made safe to pass on: no path, no control characters,
/// at most 120 characters; `None` when nothing is left.
pub(crate) fn file_name(given: &str) -> Option<String> {
    let last = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(120)
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    (!clean.is_empty()).then_some(clean)
}

#[derive(Deserialize)]
pub struct LinkQuery {
    expires: i64,
    signature: String,
}

/// `GET /media/out/{channel}/{id}`: a reply's file for the platform that fetches it by URL
/// (Twilio), through a link the channel signed; refused once the link expires.
pub async fn linked(
    State(state): State<AppState>,
    Path((channel, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let refused = || {
        problem(
            StatusCode::FORBIDDEN,
            "this link is not valid or has expired",
        )
    };
    let query = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<LinkQuery>(q).ok());
    let (Some(adapter), Ok(id), Some(query)) =
        (state.channels.get(&channel), MediaId::parse(&id), query)
    else {
        return refused();
    };
    if !adapter.media_link_valid(&id, query.expires, &query.signature) {
        state.metrics.media_links("refused");
        return refused();
    }
    let Some(store) = state.media.as_ref() else {
        return problem(StatusCode::NOT_FOUND, "no such media");
    };
    match store.read(&id, Variant::Original).await {
        Ok(Some((bytes, mime))) => {
            state.metrics.media_links("served");
            serve(&id, bytes, mime, "private, no-store")
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no such media"),
        Err(e) => unavailable(e).into_response(),
    }
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
