//! Human concierges end to end: a customer asks for a person on WhatsApp, the handoff is
//! queued with its brief, a concierge claims and answers through the API, the bot stays
//! silent, and takes over again after the release with the concierge's note. Also: racing
//! claims, business hours and the SLA, and access.

use std::time::Duration;

use concierge::domain::{Author, ConversationId, ThreadState};
use concierge::handoff::access;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::agents::{Agents, body_text, start};
use crate::fake_llm::text;
use crate::helpers::{PATIENCE, eventually};

/// Two teams, two concierges in support, one in billing, and an admin.
pub(crate) const PEOPLE: &str = r#"
[[teams]]
name = "support"

[[teams]]
name = "billing"

[[concierges]]
name = "ana"
teams = ["support"]

[[concierges]]
name = "ben"
teams = ["support"]

[[concierges]]
name = "carl"
teams = ["billing"]

[[concierges]]
name = "boss"
role = "admin"
"#;

/// A concierge's API client.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) token: String,
    client: reqwest::Client,
}

impl Api {
    pub(crate) async fn new(a: &Agents, name: &str) -> Api {
        let token = access::issue(a.app.store().as_ref(), name).await.unwrap();
        Api::at(a.app.url("/api/v1"), token)
    }

    /// A client for the API at `base` (ending in `/api/v1`) with an issued token.
    pub(crate) fn at(base: String, token: String) -> Api {
        Api {
            base,
            token,
            client: reqwest::Client::new(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Opens the live event stream.
    pub(crate) async fn events(&self) -> Events {
        let response = self
            .client
            .get(format!("{}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut events = Events {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            seen: Vec::new(),
        };
        let (name, _) = events.next().await;
        assert_eq!(name, "ready");
        events
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A server-sent event stream, read event by event; each event read is kept in `seen`.
pub(crate) struct Events {
    body: ByteStream,
    buffer: String,
    pub(crate) seen: Vec<(String, Value)>,
}

impl Events {
    pub(crate) async fn next(&mut self) -> (String, Value) {
        self.next_within(PATIENCE).await.expect("an event in time")
    }

    /// The next event, or `None` when none comes within `wait` (or the stream ends).
    pub(crate) async fn next_within(
        &mut self,
        wait: std::time::Duration,
    ) -> Option<(String, Value)> {
        let next = tokio::time::timeout(wait, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = "message".to_string();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Some((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
                }
                let chunk = self.body.next().await?.ok()?;
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(event) = &next {
            self.seen.push(event.clone());
        }
        next
    }

    /// The next event with this name, skipping others.
    pub(crate) async fn until(&mut self, wanted: &str) -> Value {
        loop {
            let (name, data) = self.next().await;
            if name == wanted {
                return data;
            }
        }
    }
}

fn conv_path(conversation: &ConversationId, action: &str) -> String {
    format!("/conversations/{conversation}{action}")
}

async fn thread_state(a: &Agents, conversation: &ConversationId) -> ThreadState {
    a.app.store().thread_state(conversation).await.unwrap()
}

#[tokio::test]
async fn a_customer_asks_for_a_person_and_a_concierge_takes_over_then_hands_back() {
    let a = start("openai", PEOPLE).await;
    let ana = Api::new(&a, "ana").await;
    let mut events = ana.events().await;
    // The LLM writes the brief's narrative part.
    a.llm.script(vec![text(
        r#"```json
{"summary": "Claire wants to change the delivery address of ML-10421.", "intent": "change delivery address",
 "mood": "impatient", "suggested_replies": ["Hello Claire, I can help with the address.", "Which address should we use?"]}
```"#,
    )]);
    a.whatsapp("wamid.H1", "I want to talk to a human please")
        .await;
    let conversation = a.wa_conversation().await;

    // Queued, with a brief, and the consoles heard of it.
    let handoff = events.until("handoff").await;
    assert_eq!(handoff["conversation"], conversation.to_string());
    assert_eq!(handoff["team"], "support");
    let ThreadState::Queued { .. } = thread_state(&a, &conversation).await else {
        panic!("the thread should be queued");
    };
    // The customer was told, with the expected wait, on WhatsApp.
    let sends = a.sends(1).await;
    let ack = sends[0]["text"]["body"].as_str().unwrap().to_string();
    assert!(ack.contains("Expected wait"), "{ack}");
    let (status, view) = ana.get(&conv_path(&conversation, "")).await;
    assert_eq!(status, 200, "{view}");
    let brief = &view["brief"];
    assert_eq!(brief["reason"], "the customer asked for a person");
    assert_eq!(brief["written_by"], "llm");
    assert_eq!(brief["mood"], "impatient");
    assert_eq!(brief["suggested_replies"].as_array().unwrap().len(), 2);
    assert!(
        brief["last_messages"][0]
            .as_str()
            .unwrap()
            .contains("talk to a human")
    );
    let (_, queue) = ana.get("/queue").await;
    assert_eq!(queue["items"][0]["conversation"], conversation.to_string());
    assert_eq!(queue["items"][0]["state"], "queued");
    assert_eq!(queue["items"][0]["contact"]["name"], "Claire");
    assert_eq!(queue["items"][0]["contact"]["phone"], "+33612345678");

    // Ana claims it and answers; the answer reaches WhatsApp.
    let (status, claimed) = ana
        .post(&conv_path(&conversation, "/claim"), json!({}))
        .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["conversation"]["owner"], "ana");
    assert_eq!(events.until("claimed").await["concierge"], "ana");
    let (status, _) = ana
        .post(
            &conv_path(&conversation, "/messages"),
            json!({ "text": "Hello Claire, Ana here. Which address should we use?" }),
        )
        .await;
    assert_eq!(status, 202);
    let sends = a.sends(2).await;
    assert_eq!(
        sends[1]["text"]["body"],
        "Hello Claire, Ana here. Which address should we use?"
    );
    assert_eq!(sends[1]["to"], "33612345678");
    let delivery = events.until("delivery").await;
    assert_eq!(
        (delivery["status"].as_str(), delivery["concierge"].as_str()),
        (Some("sent"), Some("ana"))
    );

    // The customer's message goes to Ana's console, and the bot says nothing.
    let llm_calls = a.llm.calls().len();
    a.whatsapp("wamid.H2", "12 rue des Lilas, 69003 Lyon").await;
    let message = events.until("message").await;
    assert_eq!(message["text"], "12 rue des Lilas, 69003 Lyon");
    assert_eq!(message["concierge"], "ana");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.llm.calls().len(), llm_calls, "the bot stays silent");
    assert_eq!(a.graph.sends().len(), 2);
    // An internal note never reaches the customer.
    let (status, _) = ana
        .post(
            &conv_path(&conversation, "/notes"),
            json!({ "text": "address changed in the back office" }),
        )
        .await;
    assert_eq!(status, 201);

    // Released with a note; the bot answers the next message, knowing what Ana did.
    let (status, released) = ana
        .post(
            &conv_path(&conversation, "/release"),
            json!({ "note": "Address changed to 12 rue des Lilas; continue." }),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["conversation"]["state"], "bot");
    events.until("released").await;
    a.llm
        .script(vec![text("Anything else I can do for you, Claire?")]);
    a.whatsapp("wamid.H3", "Thanks! When will it arrive?").await;
    let sends = a.sends(3).await;
    assert_eq!(
        sends[2]["text"]["body"],
        "Anything else I can do for you, Claire?"
    );
    let last = a.llm.calls().last().unwrap().system();
    assert!(
        last.contains("Address changed to 12 rue des Lilas; continue."),
        "{last}"
    );
    // The note and the concierge's answer are in the thread; the note was never sent.
    let (_, view) = ana.get(&conv_path(&conversation, "")).await;
    let notes = view["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n["body"] == "address changed in the back office")
    );
    assert!(
        !a.graph
            .sends()
            .iter()
            .any(|s| s.to_string().contains("back office"))
    );
    let replies = a.replies(&conversation, 3).await;
    assert_eq!(replies[1].author, Author::Concierge("ana".to_string()));
    assert!(body_text(&replies[1]).contains("Ana here"));
    // Every action is audited.
    let boss = Api::new(&a, "boss").await;
    let (_, audit) = boss.get("/audit").await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in ["claim", "reply", "note", "release"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
}

#[tokio::test]
async fn two_concierges_claiming_at_once_never_both_win() {
    let a = start("openai", PEOPLE).await;
    let ana = Api::new(&a, "ana").await;
    let ben = Api::new(&a, "ben").await;
    let conversation = a.wa_conversation().await;
    for round in 0..25 {
        a.whatsapp(&format!("wamid.R{round}"), "can I speak to a person?")
            .await;
        eventually("the thread is queued", || async {
            matches!(
                thread_state(&a, &conversation).await,
                ThreadState::Queued { .. }
            )
        })
        .await;
        let path = conv_path(&conversation, "/claim");
        let ((sa, _), (sb, body_b)) =
            tokio::join!(ana.post(&path, json!({})), ben.post(&path, json!({})));
        let mut statuses = [sa, sb];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {body_b}");
        let ThreadState::Human { concierge } = thread_state(&a, &conversation).await else {
            panic!("owned by one of them");
        };
        let winner = if sa == 200 { "ana" } else { "ben" };
        assert_eq!(concierge, winner, "round {round}");
        let owner = if winner == "ana" { &ana } else { &ben };
        let (status, _) = owner
            .post(&conv_path(&conversation, "/resolve"), json!({}))
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn out_of_hours_the_customer_is_told_when_the_team_opens() {
    // Open one hour a week, on a day that is not today.
    let tomorrow = jiff::Zoned::now()
        .in_tz("Europe/Paris")
        .unwrap()
        .tomorrow()
        .unwrap()
        .weekday();
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [tomorrow.to_monday_zero_offset() as usize];
    let a = start(
        "openai",
        &format!("[[teams]]\nname = \"support\"\nhours = \"{day} 09:00-10:00\"\n"),
    )
    .await;
    a.whatsapp("wamid.O1", "I need a real person").await;
    let sends = a.sends(1).await;
    let body = sends[0]["text"]["body"].as_str().unwrap();
    assert!(body.contains("away right now"), "{body}");
    assert!(body.contains("tomorrow at 09:00"), "{body}");
    // The SLA clock starts at the opening, not now.
    let handoffs = a
        .app
        .store()
        .handoffs(&a.wa_conversation().await)
        .await
        .unwrap();
    let due = handoffs[0].sla_due_at.unwrap();
    assert!(due > concierge::domain::now_millis() + 3600 * 1000);
}

#[tokio::test]
async fn a_breached_sla_raises_the_priority_and_tells_the_consoles() {
    let a = start("openai", &format!("[queue]\nsla_secs = 1\n{PEOPLE}")).await;
    let ana = Api::new(&a, "ana").await;
    let mut events = ana.events().await;
    a.whatsapp("wamid.S1", "customer service please").await;
    let handoff = events.until("handoff").await;
    assert_eq!(handoff["priority"], "normal");
    let breach = events.until("sla_breached").await;
    assert_eq!(
        breach["conversation"],
        a.wa_conversation().await.to_string()
    );
    assert_eq!(breach["priority"], "high");
    let (_, queue) = ana.get("/queue").await;
    assert_eq!(queue["items"][0]["handoff"]["priority"], "high");
    assert_eq!(queue["items"][0]["sla"]["state"], "breached");
    // Once only.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let handoffs = a
        .app
        .store()
        .handoffs(&a.wa_conversation().await)
        .await
        .unwrap();
    assert_eq!(handoffs[0].priority.as_deref(), Some("high"));
}

#[tokio::test]
async fn the_api_needs_a_token_and_keeps_each_team_to_its_threads() {
    let a = start("openai", PEOPLE).await;
    let ana = Api::new(&a, "ana").await;
    let carl = Api::new(&a, "carl").await;
    let boss = Api::new(&a, "boss").await;
    a.whatsapp("wamid.A1", "I want to speak to someone").await;
    let conversation = a.wa_conversation().await;
    eventually("queued", || async {
        matches!(
            thread_state(&a, &conversation).await,
            ThreadState::Queued { .. }
        )
    })
    .await;
    let client = reqwest::Client::new();
    // No token, a malformed header, a wrong token: 401.
    for auth in [None, Some("Basic abc"), Some("Bearer cct_0000")] {
        let mut request = client.get(a.app.url("/api/v1/queue"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    // Carl (billing) does not see support's thread, may not touch it, and cannot tell it exists.
    let (_, queue) = carl.get("/queue").await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 0);
    assert_eq!(carl.get(&conv_path(&conversation, "")).await.0, 404);
    assert_eq!(
        carl.post(&conv_path(&conversation, "/claim"), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        carl.post(
            &conv_path(&conversation, "/messages"),
            json!({ "text": "hi" })
        )
        .await
        .0,
        404
    );
    // A revoked token is refused at once.
    a.app.store().revoke_tokens("carl").await.unwrap();
    assert_eq!(carl.get("/queue").await.0, 401);
    // Ana (support) and the admin do.
    assert_eq!(
        ana.get("/queue").await.1["items"].as_array().unwrap().len(),
        1
    );
    assert_eq!(boss.get(&conv_path(&conversation, "")).await.0, 200);
    assert_eq!(ana.get("/audit").await.0, 403);
    // An unknown conversation is 404, the OpenAPI document is public.
    assert_eq!(ana.get("/conversations/c_nope").await.0, 404);
    let spec = client
        .get(a.app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    let spec: Value = spec.json().await.unwrap();
    assert!(spec["paths"]["/conversations/{id}/claim"].is_object());

    // Tokens are stored hashed: the database file never holds one.
    let data = a.app.deployment.path().join("data");
    let db = std::fs::read(data.join("test.db")).unwrap();
    let wal = std::fs::read(data.join("test.db-wal")).unwrap_or_default();
    assert!(!db.is_empty());
    for token in [&ana.token, &carl.token, &boss.token] {
        let needle = token.as_bytes();
        for file in [&db, &wal] {
            assert!(!file.windows(needle.len()).any(|w| w == needle));
        }
    }
    // The live ones are found by their hash, which is what the file holds.
    for token in [&ana.token, &boss.token] {
        let hash = access::hash_token(token);
        assert!(a.app.store().token_owner(&hash).await.unwrap().is_some());
        let hex = hash.as_bytes();
        assert!(
            db.windows(hex.len()).any(|w| w == hex) || wal.windows(hex.len()).any(|w| w == hex),
            "the hash is what is stored"
        );
    }
}

#[tokio::test]
async fn a_waiting_thread_is_offered_to_the_longest_idle_online_concierge_and_can_be_transferred() {
    let a = start("openai", PEOPLE).await;
    let ana = Api::new(&a, "ana").await;
    let ben = Api::new(&a, "ben").await;
    let carl = Api::new(&a, "carl").await;
    // Ben came online first (idle longest), then Ana; both have their console open.
    assert_eq!(
        ben.post("/me/status", json!({ "status": "online" }))
            .await
            .0,
        200
    );
    let _ben_console = ben.events().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        ana.post("/me/status", json!({ "status": "online" }))
            .await
            .0,
        200
    );
    let mut ana_events = ana.events().await;
    a.whatsapp("wamid.T1", "I need a human").await;
    let offered = ana_events.until("offered").await;
    assert_eq!(offered["concierge"], "ben");
    let conversation = a.wa_conversation().await;
    let (_, queue) = ana.get("/queue").await;
    assert_eq!(queue["items"][0]["offered_to"], "ben");

    // Ben accepts; then hands it to billing, where Carl takes it.
    assert_eq!(
        ben.post(&conv_path(&conversation, "/claim"), json!({}))
            .await
            .0,
        200
    );
    let (status, moved) = ben
        .post(
            &conv_path(&conversation, "/transfer"),
            json!({ "team": "billing" }),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["conversation"]["state"], "queued");
    assert_eq!(moved["conversation"]["handoff"]["team"], "billing");
    // Support no longer sees it; billing does.
    assert_eq!(ana.get(&conv_path(&conversation, "")).await.0, 404);
    assert_eq!(
        carl.get("/queue").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        carl.post(&conv_path(&conversation, "/claim"), json!({}))
            .await
            .0,
        200
    );
    // Only the owner may release it.
    assert_eq!(
        ben.post(&conv_path(&conversation, "/release"), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        carl.post(&conv_path(&conversation, "/release"), json!({}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_bot_that_makes_no_progress_hands_over() {
    let a = start("openai", "[queue]\nmax_bot_turns = 2\n").await;
    a.llm.script(vec![
        text("Could you tell me more?"),
        text("Could you be more precise?"),
    ]);
    a.whatsapp("wamid.N1", "it does not work").await;
    a.whatsapp("wamid.N2", "the thing, it does not work").await;
    a.sends(2).await;
    a.whatsapp("wamid.N3", "still not working").await;
    let conversation = a.wa_conversation().await;
    eventually("handed over", || async {
        matches!(
            thread_state(&a, &conversation).await,
            ThreadState::Queued { .. }
        )
    })
    .await;
    let handoffs = a.app.store().handoffs(&conversation).await.unwrap();
    assert_eq!(handoffs[0].reason, "no resolution after 2 bot turns");
}
