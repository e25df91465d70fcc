//! Systems' access to the API (the order system, a CRM, a partner's agent): a service token
//! (`concierge token create --service NAME --scope …`) with the scope a route needs. A
//! concierge's token is not one, and a service's token acts as no concierge (403 both ways).

use axum::Json;
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::api::{Problem, Rejection, bearer, problem, unauthorized};
use concierge_engine::handoff::access::hash_token;
use concierge_store::ServiceToken;

/// The service calling, if its token holds `scope` (any scope when `None`): 401 without a
/// valid token, 403 for a concierge's token or a service's without the scope.
pub(crate) async fn service(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<&str>,
) -> Result<ServiceToken, Rejection> {
    let Some(token) = bearer(headers) else {
        return Err(Rejection::from_response(unauthorized(
            "an `Authorization: Bearer <token>` header is required",
        )));
    };
    let hash = hash_token(token);
    if let Some(service) = state.desk.queue.service_token(&hash).await? {
        return match scope {
            Some(scope) if !service.scopes.iter().any(|s| s == scope) => {
                Err(Rejection::from_response(problem(
                    StatusCode::FORBIDDEN,
                    format!("this service's token does not have the `{scope}` scope"),
                )))
            }
            _ => Ok(service),
        };
    }
    if state.desk.queue.token_owner(&hash).await?.is_some() {
        return Err(Rejection::from_response(problem(
            StatusCode::FORBIDDEN,
            "a concierge's token is not a service's: create one with `concierge token create --service`",
        )));
    }
    Err(Rejection::from_response(unauthorized(
        "this token is not valid",
    )))
}

/// What a route needs of a service's token.
pub trait Scope: Send + Sync {
    /// The scope's name, as `--scope` gives it; `None`: any service.
    const NAME: Option<&'static str>;
}

/// Any service, whatever its scopes.
pub struct AnyScope;

impl Scope for AnyScope {
    const NAME: Option<&'static str> = None;
}

/// The `consent` scope: recording and reading customers' consent.
pub struct ConsentScope;

impl Scope for ConsentScope {
    const NAME: Option<&'static str> = Some("consent");
}

/// The calling service, with the scope `S` its route needs, checked before the request's
/// body is read.
pub struct Serviced<S: Scope>(pub ServiceToken, pub std::marker::PhantomData<S>);

impl<S: Scope> axum::extract::FromRequestParts<AppState> for Serviced<S> {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Rejection> {
        service(state, &parts.headers, S::NAME)
            .await
            .map(|token| Serviced(token, std::marker::PhantomData))
    }
}

/// The service a token belongs to.
#[derive(Serialize, ToSchema)]
pub struct ServiceView {
    service: String,
    /// What it may do: notify, events, consent, a2a.
    scopes: Vec<String>,
}

/// Who the calling service is and what its token may do (a system checks its token here).
#[utoipa::path(get, path = "/service", tag = "service", responses(
    (status = 200, description = "The calling service", body = ServiceView),
    (status = 401, description = "No token, or not a valid one", body = Problem),
    (status = 403, description = "A concierge's token, not a service's", body = Problem),
    (status = 503, description = "The store is unavailable; try again", body = Problem),
))]
pub async fn whoami(
    Serviced(service, _): Serviced<AnyScope>,
) -> Result<Json<ServiceView>, Rejection> {
    Ok(Json(ServiceView {
        service: service.service,
        scopes: service.scopes,
    }))
}
