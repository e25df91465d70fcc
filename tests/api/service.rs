//! Systems' tokens: `concierge token create --service NAME --scope …` prints a token for a
//! system, kept hashed with its scopes; it opens the routes of services (`GET
//! /api/v1/service`), acts as no concierge, and a concierge's token is not one; revoking the
//! service ends it.

use std::process::Command;

use serde_json::Value;

use crate::handoff::{Api, PEOPLE};
use crate::helpers::{Deployment, spawn_in};

fn token(deployment: &Deployment, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_concierge"))
        .arg("token")
        .args(args)
        .arg("--config")
        .arg(deployment.config_path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run concierge token")
}

#[tokio::test]
async fn a_service_token_opens_the_services_routes_only_within_its_scopes() {
    let deployment = Deployment::new(PEOPLE);
    // Made before the gateway starts, as an operator would (the store is the same file).
    let made = token(
        &deployment,
        &[
            "create",
            "--service",
            "crm",
            "--scope",
            "notify",
            "--scope",
            "events",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let crm = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(crm.starts_with("cct_") && crm.len() == 68, "{crm}");
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(stderr.contains("service crm (notify, events)"), "{stderr}");

    // Clear refusals, nothing kept.
    let typo = token(
        &deployment,
        &["create", "--service", "crm", "--scope", "notfy"],
    );
    assert!(!typo.status.success());
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("`notfy` is not a scope") && said.contains("did you mean `notify`"),
        "{said}"
    );
    let no_scope = token(&deployment, &["create", "--service", "crm"]);
    assert!(!no_scope.status.success());
    assert!(String::from_utf8_lossy(&no_scope.stderr).contains("at least one --scope"));
    let bad_name = token(
        &deployment,
        &["create", "--service", "CRM system", "--scope", "notify"],
    );
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("is not a service name"));

    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        let request = client
            .get(app.url(&format!("/api/v1{path}")))
            .bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, me) = get("/service", &crm).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["service"], "crm");
    assert_eq!(me["scopes"], serde_json::json!(["notify", "events"]));

    // A service acts as no concierge; a concierge's token is not a service's.
    let (status, refused) = get("/queue", &crm).await;
    assert_eq!(status, 403, "{refused}");
    let ana = concierge::handoff::access::issue(app.store().as_ref(), "ana")
        .await
        .unwrap();
    let (status, refused) = get("/service", &ana).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not a service's")
    );
    let (status, _) = get("/service", "cct_0000").await;
    assert_eq!(status, 401);
    let ana_api = Api::at(app.url("/api/v1"), ana);
    assert_eq!(ana_api.get("/me").await.0, 200);

    // Revoked, it is gone at once.
    let deployment = app.stop().await;
    let revoked = token(&deployment, &["revoke", "--service", "crm"]);
    assert!(revoked.status.success());
    assert_eq!(
        String::from_utf8_lossy(&revoked.stdout).trim(),
        "revoked 1 token(s) of the service crm"
    );
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    let response = client
        .get(app.url("/api/v1/service"))
        .bearer_auth(&crm)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
