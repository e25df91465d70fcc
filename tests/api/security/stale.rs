//! Stale events: a customer's message the platform dates before `[server]
//! max_event_age_secs` (7 days by default) is acknowledged with a 200, counted as `stale`,
//! and neither stored nor answered, so a webhook replayed after its dedupe key expired does
//! not reach the customer twice; a fresh one in the same deployment is stored as usual.

use concierge::app::Parts;
use serde_json::json;

use super::hmac_sha256_hex;
use crate::helpers::{Deployment, TestApp, metric, spawn_in};

const APP_SECRET: &str = "stale-app-secret";

/// A paused gateway on the default limit, with a WhatsApp channel.
async fn gateway() -> TestApp {
    let deployment = Deployment::new("[orchestrator]\npaused = true\n");
    let main = std::fs::read_to_string(deployment.config_path()).unwrap();
    let main: String = main
        .lines()
        .filter(|l| !l.starts_with("max_event_age_secs"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(deployment.config_path(), main).unwrap();
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{APP_SECRET}\"\nverify_token = \"v\"\napi_base = \"http://127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    spawn_in(deployment, Parts::default()).await
}

async fn whatsapp(app: &TestApp, wamid: &str, secs_ago: u64) -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
            "contacts": [{ "profile": { "name": "Claire" }, "wa_id": "33612345678" }],
            "messages": [{ "from": "33612345678", "id": wamid,
                           "timestamp": (now - secs_ago).to_string(),
                           "type": "text", "text": { "body": "where is my order?" } }]
        }}]}]
    }))
    .unwrap();
    app.client
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", hmac_sha256_hex(APP_SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_message_older_than_the_maximum_age_is_acknowledged_and_not_processed() {
    let app = gateway().await;
    // Eight days old: past the default week.
    assert_eq!(whatsapp(&app, "wamid.OLD", 8 * 24 * 3600).await, 200);
    assert!(app.store().pending(0, 10).await.unwrap().is_empty());
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_webhooks_total",
            "channel=\"whatsapp\",outcome=\"stale\""
        ),
        1.0,
        "{metrics}"
    );
    // A day old, as a platform's late retry: stored.
    assert_eq!(whatsapp(&app, "wamid.LATE", 24 * 3600).await, 200);
    let pending = app.store().pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.event_id.as_str(), "wamid.LATE");
}
