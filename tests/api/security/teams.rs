//! Team scoping of threads never handed off: a conversation belongs to its channel's team
//! (a channel file's `team`, else `[queue] default_team`) until a handoff names another, so a
//! concierge of another team who computes its id gets a 404, as for no thread at all, and
//! can neither read it nor take it over; a `team` that is not a team fails `check`. And the id
//! cannot be computed any more: it is keyed with the deployment's secret.

use concierge::app::Parts;
use concierge::domain::ConversationId;
use serde_json::json;

use super::TEAMS;
use crate::handoff::Api;
use crate::helpers::{Deployment, TestApp, eventually, spawn_in, visitor_key};

/// The conversation of a web chat visitor, as the store names it.
async fn conversation(app: &TestApp, channel: &str, key: &str) -> ConversationId {
    crate::helpers::visitor_conversation_in(app.store(), channel, key).await
}

async fn post(app: &TestApp, channel: &str, key: &str, text: &str) {
    let status = app
        .client
        .post(app.url(&format!("/webhooks/{channel}")))
        .header("x-webchat-key", key)
        .json(&json!({ "id": "m1", "text": text }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

async fn api(app: &TestApp, name: &str) -> Api {
    let token = concierge::handoff::access::issue(app.store().as_ref(), name)
        .await
        .unwrap();
    Api::at(app.url("/api/v1"), token)
}

#[tokio::test]
async fn a_thread_never_handed_off_belongs_to_its_channels_team() {
    // `web` is billing's channel; `shop` names no team: the default team's (support).
    let deployment = Deployment::new(TEAMS);
    let channels = deployment.path().join("channels");
    std::fs::write(
        channels.join("web.toml"),
        "kind = \"webchat\"\nteam = \"billing\"\n",
    )
    .unwrap();
    std::fs::write(channels.join("shop.toml"), "kind = \"webchat\"\n").unwrap();
    let app = spawn_in(deployment, Parts::default()).await;
    let (ana, carl, boss) = (
        api(&app, "ana").await,
        api(&app, "carl").await,
        api(&app, "boss").await,
    );
    post(&app, "web", &visitor_key("wendy"), "hello billing").await;
    post(&app, "shop", &visitor_key("sam"), "hello support").await;
    let billing = conversation(&app, "web", &visitor_key("wendy")).await;
    let support = conversation(&app, "shop", &visitor_key("sam")).await;
    let store = app.store().clone();
    eventually("both conversations exist", || {
        let store = store.clone();
        let (b, s) = (billing.clone(), support.clone());
        async move {
            store.conversation(&b).await.unwrap().is_some()
                && store.conversation(&s).await.unwrap().is_some()
        }
    })
    .await;
    let path = |c: &ConversationId, action: &str| format!("/conversations/{c}{action}");

    // Each team reads its own; the other team's is a 404, the same as an id that exists
    // nowhere, and it cannot be taken over.
    let nowhere = conversation(&app, "shop", &visitor_key("nobody")).await;
    for (who, mine, theirs) in [(&ana, &support, &billing), (&carl, &billing, &support)] {
        let (status, body) = who.get(&path(mine, "")).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = who.get(&path(theirs, "")).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.get("messages").is_none(), "{body}");
        let (status, unknown) = who.get(&path(&nowhere, "")).await;
        assert_eq!((status, &unknown), (404, &body), "indistinguishable");
        for action in ["/claim", "/notes", "/messages"] {
            let (status, answer) = who
                .post(&path(theirs, action), json!({ "text": "mine now" }))
                .await;
            assert_eq!(status, 404, "{action}: {answer}");
        }
    }
    assert_eq!(boss.get(&path(&billing, "")).await.0, 200);
    assert_eq!(boss.get(&path(&support, "")).await.0, 200);

    // The id the attack computed (the hash of the channel and the contact) names nothing,
    // not even for the thread's own team or an admin.
    let contact = concierge::channels::webchat::Webchat::new(
        concierge::domain::ChannelId::parse("web").unwrap(),
        Default::default(),
    )
    .contact_for_key(&visitor_key("wendy"))
    .unwrap();
    let computed = ConversationId::legacy(
        &concierge::domain::ChannelId::parse("web").unwrap(),
        &contact,
    );
    assert_ne!(computed, billing);
    for who in [&carl, &boss] {
        assert_eq!(who.get(&path(&computed, "")).await.0, 404);
    }

    // Ana takes over her channel's thread: it stays support's, and Carl still cannot see it.
    let (status, claimed) = ana.post(&path(&support, "/claim"), json!({})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["conversation"]["handoff"]["team"], "support");
    assert_eq!(carl.get(&path(&support, "")).await.0, 404);
    let (_, queue) = carl.get("/queue").await;
    assert!(!queue.to_string().contains(support.as_str()), "{queue}");
    // Carl's thread was not touched by any of Ana's attempts.
    let messages = app.store().messages(&billing, 0, 100).await.unwrap();
    assert!(
        !messages
            .iter()
            .any(|m| m.content.describe().contains("mine now")),
        "{messages:?}"
    );
}

#[test]
fn a_channel_team_that_is_not_a_team_fails_the_check() {
    let deployment = Deployment::new(TEAMS);
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\n\nteam = \"sales\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concierge"))
        .args(["check", "--config"])
        .arg(deployment.config_path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("channels/web.toml"), "{stderr}");
    assert!(stderr.contains("team"), "{stderr}");
    assert!(stderr.contains(":3"), "the line: {stderr}");
    assert!(
        stderr.contains("`sales` is not one of the teams"),
        "{stderr}"
    );
}
