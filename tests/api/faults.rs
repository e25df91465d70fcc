//! The platform fails a send in each way a real one can (429, 500, an answer that comes too
//! late, a connection closed after or before the message was accepted), played by a fake
//! Graph API over raw HTTP that reports statuses back to the gateway as Meta does. Each
//! time the customer's phone shows the reply once; where the answer to the send was lost,
//! the platform's status confirms it and that is counted (`reconciled`).

use std::time::Duration;

use concierge::domain::{ConversationId, DeliveryStatus, Direction};
use concierge_testkit::platform::{FakeApi, Fault};

use crate::helpers::{Deployment, TestApp, eventually, metric, spawn_in};

const SECRET: &str = "faults-app-secret";

async fn start(platform: &FakeApi) -> TestApp {
    let deployment = Deployment::new(
        "[delivery]\nsend_timeout_secs = 1\nconfirm_wait_ms = 1500\n\n[faq]\nthreshold = 1.0\n",
    );
    std::fs::write(
        deployment.path().join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"faults-token\"\napp_secret = \"{SECRET}\"\nverify_token = \"faults-verify\"\napi_base = \"{}\"\n",
            concierge_testkit::load::PHONE_NUMBER_ID,
            platform.graph_api_base()
        ),
    )
    .expect("channel file");
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    platform.report_statuses_to(&app.url("/webhooks/whatsapp"), SECRET);
    app
}

async fn conversation(store: &concierge::store::SharedStore) -> ConversationId {
    crate::helpers::conversation_in(store, "whatsapp", &concierge_testkit::load::phone(0)).await
}

/// The customer writes once; waits until the reply is marked sent and the platform has
/// been quiet for longer than the gateway would wait before sending again.
async fn customer_writes_and_the_reply_settles(app: &TestApp) {
    let shot = &concierge_testkit::load::shots(1, 1, SECRET, "faults", |_| "hello".to_string())[0];
    let answer = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &shot.signature)
        .body(shot.body.clone())
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 200);
    let store = app.store().clone();
    eventually("the reply is marked sent", || {
        let store = store.clone();
        async move {
            store
                .messages(&conversation(&store).await, 0, 10)
                .await
                .unwrap()
                .iter()
                .any(|m| {
                    m.direction == Direction::Outbound
                        && m.status.rank() >= DeliveryStatus::Sent.rank()
                })
        }
    })
    .await;
    // Longer than confirm_wait_ms plus a retry: a second copy would have come by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

/// What the customer's phone shows.
fn shown(platform: &FakeApi) -> usize {
    platform
        .accepted()
        .iter()
        .filter(|a| a.to == concierge_testkit::load::phone(0))
        .count()
}

async fn deliveries(app: &TestApp, outcome: &str) -> f64 {
    metric(
        &app.metrics().await,
        "concierge_deliveries_total",
        &format!("outcome=\"{outcome}\""),
    )
}

async fn one_fault(fault: Fault) -> (TestApp, FakeApi) {
    let platform = FakeApi::start().await.expect("fake platform");
    platform.script([fault.clone()]);
    let app = start(&platform).await;
    customer_writes_and_the_reply_settles(&app).await;
    assert_eq!(platform.faults().len(), 1, "the fault was met");
    assert_eq!(shown(&platform), 1, "{fault:?}: {:?}", platform.accepted());
    (app, platform)
}

#[tokio::test]
async fn a_429_is_retried_after_its_wait_and_the_reply_shown_once() {
    let (app, _platform) = one_fault(Fault::too_many(1)).await;
    assert_eq!(deliveries(&app, "retried").await, 1.0);
    assert_eq!(deliveries(&app, "reconciled").await, 0.0);
}

#[tokio::test]
async fn a_500_is_retried_and_the_reply_shown_once() {
    let (app, _platform) = one_fault(Fault::server_error()).await;
    assert_eq!(deliveries(&app, "retried").await, 1.0);
    assert_eq!(deliveries(&app, "reconciled").await, 0.0);
}

#[tokio::test]
async fn an_answer_that_comes_too_late_is_confirmed_by_the_status_not_sent_again() {
    let (app, platform) = one_fault(Fault::SlowAnswer {
        hold: Duration::from_secs(3),
    })
    .await;
    assert_eq!(deliveries(&app, "reconciled").await, 1.0);
    assert_eq!(deliveries(&app, "resent_after_crash").await, 0.0);
    // The reply carries the platform's id from the status.
    let reply = crate::helpers::first_reply(app.store(), &conversation(app.store()).await).await;
    assert_eq!(
        reply.platform_id.map(|p| p.as_str().to_string()),
        Some(platform.accepted()[0].wamid.clone())
    );
}

#[tokio::test]
async fn a_connection_closed_after_accepting_is_confirmed_by_the_status_not_sent_again() {
    let (app, _platform) = one_fault(Fault::CloseAfterAccept).await;
    assert_eq!(deliveries(&app, "reconciled").await, 1.0);
    assert_eq!(deliveries(&app, "resent_after_crash").await, 0.0);
}

#[tokio::test]
async fn a_connection_closed_before_accepting_is_sent_again_after_the_wait() {
    // No status can come: nothing was accepted. The customer still gets the reply, once.
    let (app, _platform) = one_fault(Fault::CloseBeforeAccept).await;
    assert_eq!(deliveries(&app, "reconciled").await, 0.0);
    assert_eq!(deliveries(&app, "resent_after_crash").await, 1.0);
}

#[tokio::test]
async fn every_fault_in_a_row_still_ends_in_one_reply() {
    let platform = FakeApi::start().await.expect("fake platform");
    platform.script([
        Fault::too_many(1),
        Fault::server_error(),
        Fault::CloseBeforeAccept,
        Fault::CloseAfterAccept,
    ]);
    let app = start(&platform).await;
    customer_writes_and_the_reply_settles(&app).await;
    assert_eq!(platform.faults().len(), 4);
    assert_eq!(shown(&platform), 1, "{:?}", platform.accepted());
    assert_eq!(deliveries(&app, "reconciled").await, 1.0);
}
