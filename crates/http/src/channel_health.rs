//! `GET /api/v1/channels`: each configured channel and the faults its platform reported
//! about it (a rate limit hit, an account problem), for the console's channel health.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::api::{Authed, Problem, Rejection};
use concierge_domain::{Millis, now_millis};

/// How many faults are read for the page, and shown per channel.
const FAULTS_READ: usize = 500;
const FAULTS_SHOWN: usize = 20;
/// The window of the `recent` count.
const RECENT_MS: Millis = 24 * 3600 * 1000;

#[derive(Serialize, ToSchema)]
pub struct FaultView {
    code: Option<String>,
    title: String,
    detail: Option<String>,
    /// When the platform reported it (Unix milliseconds).
    at: Millis,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelView {
    id: String,
    /// `whatsapp`, `twilio_whatsapp`, `telegram`, `bluebubbles` or `webchat`.
    kind: String,
    /// `ok`, or `faults` when the platform reported any in the last 24 hours.
    #[schema(value_type = String)]
    health: &'static str,
    /// Faults reported in the last 24 hours.
    recent: usize,
    /// The newest faults (at most 20), newest first.
    faults: Vec<FaultView>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelsView {
    channels: Vec<ChannelView>,
}

/// The channels, and the faults their platforms reported in the last 30 days.
#[utoipa::path(get, path = "/channels", tag = "concierge", responses(
        (status = 200, description = "Every configured channel, with its health", body = ChannelsView),
        (status = 401, description = "No token, or not a valid one", body = Problem),
        (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn channels(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> Result<Response, Rejection> {
    let kept = state.store.channel_faults(FAULTS_READ).await?;
    let since = now_millis() - RECENT_MS;
    let channels = state
        .channels
        .ids()
        .filter_map(|id| state.channels.adapter(id))
        .map(|adapter| {
            let mine: Vec<_> = kept.iter().filter(|k| k.channel == *adapter.id()).collect();
            let recent = mine.iter().filter(|k| k.at >= since).count();
            ChannelView {
                id: adapter.id().to_string(),
                kind: adapter.kind().name().to_string(),
                health: if recent > 0 { "faults" } else { "ok" },
                recent,
                faults: mine
                    .iter()
                    .take(FAULTS_SHOWN)
                    .map(|k| FaultView {
                        code: k.fault.code.clone(),
                        title: k.fault.title.clone(),
                        detail: k.fault.detail.clone(),
                        at: k.at,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(ChannelsView { channels }).into_response())
}
