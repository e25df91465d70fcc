//! The consent ledger: a customer's STOP withdraws marketing consent (one confirmation, no
//! LLM), START grants it back, each recorded once with the message as its proof; systems
//! with the `consent` scope record decisions from elsewhere and read the history.

use serde_json::{Value, json};

use crate::agents::{PHONE, start};
use crate::helpers::eventually;

async fn sends_with(a: &crate::agents::Agents, text: &str) -> usize {
    a.graph
        .sends()
        .iter()
        .filter(|s| s["text"]["body"].as_str().is_some_and(|b| b.contains(text)))
        .count()
}

#[tokio::test]
async fn stop_and_start_in_the_chat_are_recorded_and_confirmed_without_the_llm() {
    let a = start("openai", "").await;
    a.whatsapp("wamid.STOP1", "STOP").await;
    eventually("the opt-out is confirmed", || async {
        sends_with(&a, "You will not receive our offers any more").await == 1
    })
    .await;
    a.whatsapp("wamid.STOP2", "Arrêt !").await;
    eventually("the French confirmation", || async {
        sends_with(&a, "Vous ne recevrez plus nos offres").await == 1
    })
    .await;
    a.whatsapp("wamid.START1", "start").await;
    eventually("the opt-in is confirmed", || async {
        sends_with(&a, "you will receive our offers again").await == 1
    })
    .await;
    assert_eq!(a.llm.count(), 0, "no LLM for a keyword");

    // A sentence with the word in it is a question for the agents, not a keyword.
    a.llm.script(vec![crate::fake_llm::text(
        "Of course, here is how returns work.",
    )]);
    a.whatsapp("wamid.Q1", "stop sending me the wrong size please")
        .await;
    eventually("the agents answer", || async {
        sends_with(&a, "here is how returns work").await == 1
    })
    .await;

    let channel = concierge::domain::ChannelId::parse("whatsapp").unwrap();
    let contact = concierge::domain::ContactId::parse(PHONE).unwrap();
    let ledger = a.app.store().consents(&channel, &contact).await.unwrap();
    let seen: Vec<(bool, &str, Option<&str>)> = ledger
        .iter()
        .map(|r| {
            (
                r.consent.granted,
                r.consent.source.as_str(),
                r.consent.proof.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (false, "chat_keyword", Some("STOP")),
            (false, "chat_keyword", Some("Arrêt !")),
            (true, "chat_keyword", Some("start")),
        ]
    );
    assert!(
        ledger
            .iter()
            .all(|r| r.consent.purpose == concierge::store::Purpose::Marketing)
    );
}

#[tokio::test]
async fn a_system_records_consent_and_reads_the_history_within_its_scope() {
    let a = start("openai", "").await;
    let store = a.app.store().as_ref();
    let crm = concierge::handoff::access::issue_service(store, "crm", &["consent".into()])
        .await
        .unwrap();
    let notifier = concierge::handoff::access::issue_service(store, "orders", &["notify".into()])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = a.app.url(&format!("/api/v1/contacts/{PHONE}/consent"));
    let post = |token: &str, body: Value| {
        let request = client.post(&url).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let given = json!({
        "channel": "whatsapp", "purpose": "marketing", "granted": true, "source": "checkout",
        "proof": "☑ Send me offers (order ML-10421)", "key": "ML-10421",
    });
    let (status, now) = post(&crm, given.clone()).await;
    assert_eq!(status, 201, "{now}");
    assert_eq!(now["marketing"], true);
    assert_eq!(now["utility"], Value::Null);
    let (status, again) = post(&crm, given).await;
    assert_eq!(status, 201);
    assert_eq!(again["history"].as_array().unwrap().len(), 1, "a key once");

    // The customer then writes STOP: the ledger has both, in order, with their sources.
    a.whatsapp("wamid.STOP9", "unsubscribe").await;
    eventually("the opt-out is confirmed", || async {
        sends_with(&a, "You will not receive our offers any more").await == 1
    })
    .await;
    let history = client
        .get(format!("{url}?channel=whatsapp"))
        .bearer_auth(&crm)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(history["marketing"], false);
    let sources: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["checkout", "chat_keyword"]);

    // Refused clearly, nothing recorded.
    let (status, _) = post(
        &notifier,
        json!({"channel": "whatsapp", "purpose": "marketing", "granted": true, "source": "x"}),
    )
    .await;
    assert_eq!(status, 403, "a token without the consent scope");
    let (status, _) = post(
        &crm,
        json!({"channel": "fax", "purpose": "marketing", "granted": true, "source": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &crm,
        json!({"channel": "whatsapp", "purpose": "spam", "granted": true, "source": "x"}),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post(
        &crm,
        json!({"channel": "whatsapp", "purpose": "utility", "granted": true, "source": " "}),
    )
    .await;
    assert_eq!(status, 422);
    let ana = concierge::handoff::access::issue(store, "ana")
        .await
        .unwrap();
    let (status, _) = post(
        &ana,
        json!({"channel": "whatsapp", "purpose": "utility", "granted": true, "source": "x"}),
    )
    .await;
    assert!(status == 403 || status == 401, "{status}");
    let channel = concierge::domain::ChannelId::parse("whatsapp").unwrap();
    let contact = concierge::domain::ContactId::parse(PHONE).unwrap();
    assert_eq!(store.consents(&channel, &contact).await.unwrap().len(), 2);
}

#[tokio::test]
async fn stop_is_recorded_while_a_concierge_holds_the_thread_and_she_is_told() {
    let a = start("openai", crate::handoff::PEOPLE).await;
    a.whatsapp("wamid.H1", "I want to talk to a human please")
        .await;
    let conversation = a.wa_conversation().await;
    eventually("the thread is queued", || async {
        matches!(
            a.app.store().thread_state(&conversation).await,
            Ok(concierge::domain::ThreadState::Queued { .. })
        )
    })
    .await;
    let ana = crate::handoff::Api::new(&a, "ana").await;
    let (status, _) = ana
        .post(&format!("/conversations/{conversation}/claim"), json!({}))
        .await;
    assert_eq!(status, 200);
    let llm_calls = a.llm.count();
    a.whatsapp("wamid.H2", "STOP").await;
    let channel = concierge::domain::ChannelId::parse("whatsapp").unwrap();
    let contact = concierge::domain::ContactId::parse(PHONE).unwrap();
    eventually(
        "the opt-out is recorded, and Ana told in a note",
        || async {
            let notes = a.app.store().notes(&conversation).await.unwrap_or_default();
            notes
                .iter()
                .any(|n| n.body.contains("opted out of marketing"))
        },
    )
    .await;
    let ledger = a.app.store().consents(&channel, &contact).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert!(!ledger[0].consent.granted);
    // The gateway does not speak over Ana: she confirms it herself.
    assert_eq!(
        sends_with(&a, "You will not receive our offers any more").await,
        0
    );
    // Ana keeps the thread, and the bot said nothing else.
    assert!(matches!(
        a.app.store().thread_state(&conversation).await.unwrap(),
        concierge::domain::ThreadState::Human { .. }
    ));
    assert_eq!(a.llm.count(), llm_calls, "the bot said nothing else");
}
