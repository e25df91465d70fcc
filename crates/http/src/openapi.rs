//! The concierge API's route table, from which both the router under `/api/v1` and its
//! OpenAPI document are built: each route is a handler with its `#[utoipa::path]`, so no
//! route can be served undocumented nor documented unserved.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    AppState, api, channel_health, consent, media, merchant_events, notifications, outgoing,
    service,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concierge API",
        version = "1",
        description = "The concierge API: the handoff queue, threads, and the actions human concierges take. Every route but this document needs `Authorization: Bearer <token>`: a concierge's (`concierge token create NAME`) or, for the routes of systems (tag `service`), a service's with the route's scope (`concierge token create --service NAME --scope …`). A concierge sees the threads of their teams; an admin sees all. Errors are `{\"error\": \"…\"}`."
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    modifiers(&Bearer)
)]
struct Document;

/// The `bearer` scheme every route but the document needs.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document (public: no token needed).
#[utoipa::path(get, path = "/openapi.json", tag = "document", security(()), responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
))]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// Every route of the API, with its documentation.
pub fn table() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(openapi))
        .routes(routes!(api::me))
        .routes(routes!(service::whoami))
        .routes(routes!(consent::record))
        .routes(routes!(consent::history))
        .routes(routes!(notifications::notify))
        .routes(routes!(notifications::notification))
        .routes(routes!(notifications::batch))
        .routes(routes!(notifications::batch_progress))
        .routes(routes!(notifications::stop_batch))
        .routes(routes!(outgoing::deliveries))
        .routes(routes!(outgoing::retry))
        .routes(routes!(api::set_status))
        .routes(routes!(api::teams))
        .routes(routes!(channel_health::channels))
        .routes(routes!(media::media))
        .routes(routes!(api::concierges))
        .routes(routes!(api::queue))
        .routes(routes!(api::audit))
        .routes(routes!(api::events))
        .routes(routes!(api::conversation))
        .routes(routes!(api::claim))
        .routes(routes!(api::release))
        .routes(routes!(api::resolve))
        .routes(routes!(api::transfer))
        .routes(routes!(api::reply))
        .routes(routes!(media::upload))
        .routes(routes!(api::note))
        .routes(routes!(merchant_events::post_event))
}

/// The document, rendered once from the table.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let (_, document) = table().split_for_parts();
    document.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the OpenAPI document");
        String::from("{}")
    })
});

/// The (method, path) of each documented operation, paths relative to `/api/v1`.
#[cfg(test)]
fn documented(document: &serde_json::Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (path, operations) in document["paths"].as_object().into_iter().flatten() {
        for method in operations.as_object().into_iter().flatten().map(|(m, _)| m) {
            pairs.push((method.to_uppercase(), path.clone()));
        }
    }
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::from_str(&DOCUMENT).unwrap()
    }

    #[test]
    fn the_document_is_openapi_3_and_every_operation_answers_something() {
        let document = document();
        assert!(
            document["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            document["openapi"]
        );
        assert_eq!(document["servers"][0]["url"], "/api/v1");
        assert!(document["info"]["title"].is_string());
        let mut operations = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                let responses = operation["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path}");
                // Every refusal has the project's problem body (a notification's refusal
                // adds its stable code's meaning to the same `error`).
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        assert!(
                            schema == "#/components/schemas/Problem"
                                || schema == "#/components/schemas/NotifyProblem",
                            "{method} {path} {status}: {schema}"
                        );
                    }
                }
                if path.contains("{id}") {
                    assert_eq!(operation["parameters"][0]["name"], "id", "{method} {path}");
                }
            }
        }
        assert_eq!(operations, 29);
        // Every `$ref` points at a schema the document has.
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        // The router's own routes, as utoipa-axum registered them from the table.
        let (_, served) = table().split_for_parts();
        let served = serde_json::to_value(&served).unwrap();
        assert_eq!(documented(&document()), documented(&served));
        assert!(documented(&served).contains(&("POST".into(), "/conversations/{id}/claim".into())));
    }
}
