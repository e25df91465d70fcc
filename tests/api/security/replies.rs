//! Idempotency keys of concierges' replies: a key is scoped to the concierge and the thread
//! (Léa's reply under the key Ana used is sent), compared exactly ("a b" is not "ab", keys
//! equal in their first 100 characters are two keys), at most 255 bytes (400 past it); a
//! retry is answered with the first request's message ids and sends nothing more, and the
//! same key with another body is a 422 that sends nothing and audits nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::agents::start;
use crate::handoff::Api;
use crate::helpers::eventually;

const TEAMS: &str = r#"
[[teams]]
name = "support"

[[concierges]]
name = "ana"
teams = ["support"]

[[concierges]]
name = "lea"
teams = ["support"]

[[concierges]]
name = "boss"
role = "admin"
"#;

/// A reply with an `Idempotency-Key`: the status and the answer.
async fn reply(api: &Api, path: &str, key: &str, text: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .header("idempotency-key", key)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(answer: &Value) -> Vec<String> {
    answer["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn idempotency_keys_are_per_concierge_and_thread_exact_and_replays_answer_the_same_ids() {
    let a = start("openai", TEAMS).await;
    let ana = Api::new(&a, "ana").await;
    let lea = Api::new(&a, "lea").await;
    let boss = Api::new(&a, "boss").await;
    let conversation = a.wa_conversation().await;
    let path = |action: &str| format!("/conversations/{conversation}{action}");
    a.whatsapp("wamid.I1", "I want to talk to a human please")
        .await;
    eventually("the thread is queued", || async {
        ana.get("/queue")
            .await
            .1
            .to_string()
            .contains(conversation.as_str())
    })
    .await;
    assert_eq!(ana.post(&path("/claim"), json!({})).await.0, 200);

    let (status, first) = reply(&ana, &path("/messages"), "1", "Ana here").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), 1);
    // The client retries: the same ids, nothing more sent.
    let (status, again) = reply(&ana, &path("/messages"), "1", "Ana here").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        ids(&again),
        first_ids,
        "a retry gets the first request's ids"
    );
    // The same key with another body: refused, nothing queued.
    let (status, other) = reply(&ana, &path("/messages"), "1", "Something else").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");

    // Exact comparison: "a b" and "ab" are two keys, so are two long keys equal in their
    // first 100 characters.
    let (_, spaced) = reply(&ana, &path("/messages"), "a b", "spaced").await;
    let (_, joined) = reply(&ana, &path("/messages"), "ab", "joined").await;
    assert_eq!(ids(&spaced).len(), 1);
    assert_eq!(ids(&joined).len(), 1);
    assert_ne!(ids(&spaced), ids(&joined));
    let long = "k".repeat(100);
    let (_, one) = reply(&ana, &path("/messages"), &format!("{long}-one"), "long one").await;
    let (_, two) = reply(&ana, &path("/messages"), &format!("{long}-two"), "long two").await;
    assert_eq!(ids(&one).len(), 1);
    assert_eq!(ids(&two).len(), 1);
    assert_ne!(ids(&one), ids(&two));
    // Too long a key: 400, nothing queued.
    let (status, _) = reply(&ana, &path("/messages"), &"x".repeat(256), "too long").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = reply(&ana, &path("/messages"), &"x".repeat(255), "just fits").await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The thread goes to Léa; her own reply under key `1` is hers, and is sent.
    assert_eq!(
        ana.post(&path("/transfer"), json!({ "team": "support" }))
            .await
            .0,
        200
    );
    assert_eq!(lea.post(&path("/claim"), json!({})).await.0, 200);
    let (status, hers) = reply(&lea, &path("/messages"), "1", "Léa here").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{hers}");
    assert_eq!(ids(&hers).len(), 1, "{hers}");
    assert_ne!(ids(&hers), first_ids);

    // What reached WhatsApp: each distinct reply once, and nothing refused.
    // The handoff acknowledgement, then the concierges' replies.
    let sent = a.sends(8).await;
    let texts: Vec<String> = sent
        .iter()
        .filter_map(|s| s["text"]["body"].as_str().map(str::to_string))
        .collect();
    for expected in [
        "Ana here",
        "spaced",
        "joined",
        "long one",
        "long two",
        "just fits",
        "Léa here",
    ] {
        assert_eq!(
            texts.iter().filter(|t| t.as_str() == expected).count(),
            1,
            "`{expected}` sent once: {texts:?}"
        );
    }
    assert!(
        !texts
            .iter()
            .any(|t| t == "Something else" || t == "too long")
    );
    // The audit log has one reply per reply sent: no record for the retry or the refusals.
    let (_, audit) = boss.get("/audit").await;
    let replies = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "reply")
        .count();
    assert_eq!(replies, 7, "{audit}");
}
