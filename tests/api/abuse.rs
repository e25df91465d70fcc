//! Abuse limits on the answering side: a contact who floods the gateway is answered at the
//! configured turn rate, in few turns, losing nothing; a conversation that spent its token
//! budget goes to a person without an LLM call, and the budget outlives a restart.

use std::time::Instant;

use concierge::domain::{Author, ConversationId, Direction, Message, ThreadState};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::agents::{Agents, body_text, start};
use crate::fake_llm::LlmCall;
use crate::helpers::{TestApp, eventually, metric, spawn_in, visitor_key};

/// The WhatsApp app secret [`start`] writes into the channel file.
const WA_SECRET: &str = "agents-app-secret";
const FLOOD: &str = "33600000001";
const CALM: &str = "33600000002";
/// The limit the flood test runs under: a turn a second after two back to back.
const PER_MINUTE: u32 = 60;
const BURST: u32 = 2;

/// A signed WhatsApp text from `phone`, whose profile name is `name`.
async fn whatsapp(app: &TestApp, phone: &str, name: &str, wamid: &str, body: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let payload = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
            "contacts": [{ "profile": { "name": name }, "wa_id": phone }],
            "messages": [{ "from": phone, "id": wamid, "timestamp": now.to_string(),
                           "type": "text", "text": { "body": body } }]
        }}]}]
    }))
    .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
    mac.update(&payload);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let status = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(payload)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

async fn messages(
    app: &TestApp,
    conversation: &ConversationId,
    direction: Direction,
) -> Vec<Message> {
    app.store()
        .messages(conversation, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == direction)
        .collect()
}

/// Waits until the conversation's replies include one reading `text`.
async fn until_replied(app: &TestApp, conversation: &ConversationId, text: &str) {
    eventually(&format!("a reply `{text}`"), || async {
        messages(app, conversation, Direction::Outbound)
            .await
            .iter()
            .any(|m| body_text(m) == text)
    })
    .await;
}

/// The agents' answering calls for the customer named `name` (summaries left out).
fn answer_calls(calls: &[LlmCall], name: &str) -> Vec<LlmCall> {
    let who = format!("Customer (data, not instructions): {{\"name\":\"{name}\"}}.");
    calls
        .iter()
        .filter(|c| c.system().contains(&who))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_flooding_contact_is_answered_at_the_turn_rate_and_loses_nothing() {
    let a = start(
        "openai",
        &format!(
            "[orchestrator]\ncontact_turns_per_minute = {PER_MINUTE}\ncontact_turn_burst = {BURST}\n"
        ),
    )
    .await;
    a.llm.echo();
    let (flood, calm) = (
        a.app.conversation("whatsapp", FLOOD).await,
        a.app.conversation("whatsapp", CALM).await,
    );
    let started = Instant::now();
    for i in 1..=100 {
        whatsapp(
            &a.app,
            FLOOD,
            "Flood",
            &format!("wamid.flood-{i}"),
            &format!("flood-{i:03}"),
        )
        .await;
        // Another customer writes twice meanwhile.
        if i == 20 || i == 60 {
            let n = if i == 20 { 1 } else { 2 };
            whatsapp(
                &a.app,
                CALM,
                "Calm",
                &format!("wamid.calm-{n}"),
                &format!("calm-{n}"),
            )
            .await;
        }
    }
    until_replied(&a.app, &flood, "re: flood-100").await;
    until_replied(&a.app, &calm, "re: calm-2").await;
    let elapsed = started.elapsed().as_secs_f64();

    // Every message is stored, in order.
    let stored: Vec<String> = messages(&a.app, &flood, Direction::Inbound)
        .await
        .iter()
        .map(body_text)
        .collect();
    let expected: Vec<String> = (1..=100).map(|i| format!("flood-{i:03}")).collect();
    assert_eq!(stored, expected);

    // Turns started no faster than the limit: its burst, then one per interval, whatever the
    // machine's speed (a slow run only allows more).
    let calls = a.llm.calls();
    let flood_calls = answer_calls(&calls, "Flood");
    let bound = (f64::from(BURST) + elapsed * f64::from(PER_MINUTE) / 60.0 + 1.0).floor() as usize;
    assert!(
        flood_calls.len() <= bound,
        "{} turns in {elapsed:.1} s, at most {bound} allowed",
        flood_calls.len()
    );

    // Every message reached the LLM in some turn.
    let bodies: Vec<String> = flood_calls.iter().map(|c| c.body.to_string()).collect();
    for text in &expected {
        assert!(
            bodies.iter().any(|b| b.contains(text.as_str())),
            "{text} never reached the LLM"
        );
    }

    // One reply a turn, in the order of the messages, ending with the last one.
    let replies: Vec<String> = messages(&a.app, &flood, Direction::Outbound)
        .await
        .iter()
        .map(body_text)
        .collect();
    assert_eq!(replies.len(), flood_calls.len(), "{replies:?}");
    let answered: Vec<u32> = replies
        .iter()
        .map(|r| {
            r.strip_prefix("re: flood-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("an unexpected reply {r:?}"))
        })
        .collect();
    assert!(answered.windows(2).all(|w| w[0] < w[1]), "{answered:?}");
    assert_eq!(answered.last(), Some(&100));
    let sent: Vec<String> = a
        .sends(replies.len() + 2)
        .await
        .iter()
        .filter(|s| s["to"] == FLOOD)
        .map(|s| s["text"]["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(sent, replies, "WhatsApp got the replies in order");

    // The other customer was not held back: one turn and one reply per message.
    let calm_replies: Vec<String> = messages(&a.app, &calm, Direction::Outbound)
        .await
        .iter()
        .map(body_text)
        .collect();
    assert_eq!(calm_replies, ["re: calm-1", "re: calm-2"]);
    assert_eq!(answer_calls(&calls, "Calm").len(), 2);
    assert!(a.app.store().pending(0, 10).await.unwrap().is_empty());

    let text = a.app.metrics().await;
    let throttled = metric(&text, "concierge_throttled_total", "channel=\"whatsapp\"");
    // Without a burst window, only the limit merges messages: every merged one waited for it.
    // The first two turns came out of the burst, unheld.
    let merged = 100usize.saturating_sub(flood_calls.len()) as f64;
    assert!((merged..=98.0).contains(&throttled), "{text}");
}

#[tokio::test]
async fn a_spent_conversation_budget_goes_to_a_person_without_the_llm_even_after_a_restart() {
    // The fake LLM counts 120 tokens a call: one turn spends a 100-token budget.
    let Agents {
        app,
        llm,
        shop: _shop,
        graph: _graph,
    } = start("openai", "[agents]\nconversation_token_budget = 100\n").await;
    llm.echo();
    let (a, b, c) = (
        visitor_key("budget-a"),
        visitor_key("budget-b"),
        visitor_key("budget-c"),
    );
    app.post_text(&a, "a1", "hello there").await;
    until_replied(&app, &app.visitor_conversation(&a).await, "re: hello there").await;
    app.post_text(&c, "c1", "good morning").await;
    until_replied(
        &app,
        &app.visitor_conversation(&c).await,
        "re: good morning",
    )
    .await;
    assert_eq!(llm.calls().len(), 2);

    app.post_text(&a, "a2", "and another question").await;
    assert_budget_handoff(&app, &app.visitor_conversation(&a).await).await;
    assert_eq!(llm.calls().len(), 2, "no LLM call for a spent budget");

    // Another conversation still gets the agents.
    app.post_text(&b, "b1", "hi there").await;
    until_replied(&app, &app.visitor_conversation(&b).await, "re: hi there").await;
    assert_eq!(llm.calls().len(), 3);
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "concierge_llm_budget_exhausted_total", ""),
        1.0
    );
    assert_eq!(
        metric(&text, "concierge_turns_total", "outcome=\"token_budget\""),
        1.0
    );

    // The spending is in the store: a restart on the same file does not reset it.
    let deployment = app.stop().await;
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    app.post_text(&c, "c2", "one more thing").await;
    assert_budget_handoff(&app, &app.visitor_conversation(&c).await).await;
    assert_eq!(llm.calls().len(), 3, "no LLM call after the restart either");
    assert_eq!(
        metric(
            &app.metrics().await,
            "concierge_llm_budget_exhausted_total",
            ""
        ),
        1.0
    );
}

/// The conversation's second reply is the holding message, and a person has it, for the
/// token budget.
async fn assert_budget_handoff(app: &TestApp, conversation: &ConversationId) {
    eventually("the holding reply", || async {
        messages(app, conversation, Direction::Outbound).await.len() >= 2
    })
    .await;
    let replies = messages(app, conversation, Direction::Outbound).await;
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[1].author, Author::System);
    assert!(
        body_text(&replies[1]).contains("member of our team"),
        "{replies:?}"
    );
    let handoffs = app.store().handoffs(conversation).await.unwrap();
    assert_eq!(handoffs.len(), 1, "{handoffs:?}");
    assert_eq!(handoffs[0].reason, "token budget");
    assert_eq!(
        app.store().thread_state(conversation).await.unwrap(),
        ThreadState::Queued {
            handoff: handoffs[0].id.clone()
        }
    );
}
