//! `/metrics` after real traffic: a WhatsApp turn worked by the agents with a fake LLM (a tool
//! call, a retried 503) and delivered to a fake Graph API leaves every family counted, with
//! bounded labels only.

use serde_json::json;

use crate::agents::start;
use crate::fake_llm::{Step, text, tool};
use crate::helpers::{eventually, metric};

#[tokio::test]
async fn a_whatsapp_agent_turn_is_counted_in_every_family() {
    let a = start("openai", "").await;
    a.llm.script(vec![
        tool("order_status", json!({ "order_id": "ML-10421" })),
        // Refused once, answered on the retry.
        Step::Status(503),
        text("Your order ML-10421 is on its way."),
    ]);
    a.whatsapp("wamid.M1", "Where is my order ML-10421?").await;
    a.sends(1).await;
    let app = &a.app;
    // The delivery is counted once the platform's answer is recorded, the turn once it is
    // completed: shortly after the send, in either order.
    eventually("the delivery and the turn are counted", || async move {
        let text = app.metrics().await;
        metric(&text, "concierge_deliveries_total", "outcome=\"sent\"") >= 1.0
            && metric(&text, "concierge_turns_total", "outcome=\"agent\"") >= 1.0
    })
    .await;
    let text = app.metrics().await;

    let count = |name: &str, labels: &str| metric(&text, name, labels);
    assert_eq!(
        count(
            "concierge_webhooks_total",
            "channel=\"whatsapp\",outcome=\"accepted\""
        ),
        1.0
    );
    assert_eq!(
        count(
            "concierge_deliveries_total",
            "channel=\"whatsapp\",outcome=\"sent\""
        ),
        1.0
    );
    assert_eq!(count("concierge_turns_total", "outcome=\"agent\""), 1.0);
    assert_eq!(count("concierge_turn_seconds_count", ""), 1.0);
    assert_eq!(count("concierge_inbox_lag_seconds_count", ""), 1.0);

    // Three requests to the provider: the tool round, the refused one and its retry.
    let model = "provider=\"openai\",model=\"test-model\"";
    assert_eq!(count("concierge_llm_calls_total", model), 3.0);
    assert_eq!(count("concierge_llm_call_seconds_count", model), 3.0);
    assert_eq!(count("concierge_llm_retries_total", model), 1.0);
    assert_eq!(
        count(
            "concierge_llm_errors_total",
            &format!("{model},error=\"server_error\"")
        ),
        1.0
    );
    assert_eq!(
        count(
            "concierge_llm_tokens_total",
            &format!("{model},kind=\"prompt\"")
        ),
        200.0
    );
    assert_eq!(
        count(
            "concierge_llm_tokens_total",
            &format!("{model},kind=\"completion\"")
        ),
        40.0
    );
    assert_eq!(
        count(
            "concierge_tool_calls_total",
            "tool=\"order_status\",outcome=\"ok\""
        ),
        1.0
    );

    // Nothing is left waiting or running in the lanes.
    assert_eq!(count("concierge_lane_queue_depth", ""), 0.0);
    assert_eq!(count("concierge_lanes_active", ""), 0.0);
    for family in [
        "# TYPE concierge_lane_queue_depth gauge",
        "# TYPE concierge_handoff_wait_seconds histogram",
        "# TYPE concierge_llm_call_seconds histogram",
        "# TYPE concierge_queue_waiting gauge",
    ] {
        assert!(text.contains(family), "no `{family}` in\n{text}");
    }

    // No id ever becomes a label: not the conversation, not the platform's message ids.
    assert!(!text.contains(a.wa_conversation().await.as_str()), "{text}");
    assert!(!text.contains("wamid."), "{text}");
    assert!(!text.contains("ML-10421"), "{text}");
}
