//! The API's JSON request body: axum's `Json`, whose refusals (not JSON, the wrong type, a
//! missing field) are answered with the API's problem body and the same status, as the
//! OpenAPI document says, instead of axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::response::Response;
use serde::de::DeserializeOwned;

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(super::api::problem(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}
