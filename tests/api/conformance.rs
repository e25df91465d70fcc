//! The 96 webhooks of `tests/fixtures/third-party/inbound-samples.json`, taken from outside
//! this project (other libraries' fixtures, the platforms' docs, recordings; see its `.md`),
//! each signed for its channel as the platform signs. First each is parsed by the real adapter
//! and compared with what it must become (`inbound-expected.json`, one table for every test
//! here); then each is posted to the signed webhook of a running gateway, on SQLite and on
//! Redis, and the store is read back: the event stored as it must be, the raw webhook kept,
//! and no turn (the responders are where LLM calls are made) nor any request to a platform
//! for what is not a customer's message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use concierge::app::Parts;
use concierge::channels::{ChannelAdapter, ChannelConfig, Registry, WebhookRequest};
use concierge::domain::{
    Author, ChannelId, Content, ConversationId, DeliveryStatus, Direction, EventKind, InboundEvent,
    PlatformMessageId,
};
use concierge::orchestrator::{DecidedBy, Decision, Responder, ResponderError, Turn};
use concierge::store::{RawFilter, SharedStore};
use serde_json::Value;

use crate::fake_api::FakeApi;
use crate::helpers::{Deployment, TestApp, eventually, spawn_with};
use crate::redis_server::{TestRedis, redis};

const SAMPLES: &str = include_str!("../fixtures/third-party/inbound-samples.json");
const EXPECTED: &str = include_str!("../fixtures/third-party/inbound-expected.json");

fn samples() -> Vec<Value> {
    let samples: Vec<Value> = serde_json::from_str(SAMPLES).unwrap();
    assert_eq!(samples.len(), 96);
    samples
}

/// What each sample must become, in the file's order: its events (see [`summary`]), and the
/// platform call it needs beyond the 200, if any.
fn expected() -> Vec<(String, Option<String>)> {
    let table: Vec<Value> = serde_json::from_str(EXPECTED).unwrap();
    let samples = samples();
    assert_eq!(table.len(), samples.len());
    table
        .iter()
        .zip(&samples)
        .map(|(row, sample)| {
            assert_eq!(
                row["sample"], sample["name"],
                "the table follows the samples"
            );
            (
                row["becomes"].as_str().unwrap().to_lowercase(),
                row["platform_hears"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Whether a sample is the customer saying something the agents answer.
fn answered(becomes: &str) -> bool {
    becomes.starts_with("message:") && !becomes.contains("reaction")
}

/// The channels the samples were posted to, as the README names them, their platforms on
/// `api` (none when only parsing).
fn channel_files(api: &str) -> Vec<(&'static str, String)> {
    let files = [
        (
            "wa",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"1122334455667\"\naccess_token = \"t\"\napp_secret = \"app-secret\"\nverify_token = \"v\"\napi_base = \"{api}/v23.0\"\n"
            ),
        ),
        (
            "wameta",
            format!(
                "kind = \"whatsapp\"\nphone_number_id = \"106540352242922\"\naccess_token = \"t\"\napp_secret = \"app-secret\"\nverify_token = \"v\"\napi_base = \"{api}/v23.0\"\n"
            ),
        ),
        (
            "twilio",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"ACtesttesttesttesttesttesttest0001\"\nauth_token = \"auth\"\nfrom = \"whatsapp:+201035460160\"\npublic_url = \"https://gateway.example.com/webhooks/twilio\"\napi_base = \"{api}\"\n"
            ),
        ),
        (
            "twilio2",
            format!(
                "kind = \"twilio_whatsapp\"\naccount_sid = \"ACtesttesttesttesttesttesttest0000\"\nauth_token = \"auth\"\nfrom = \"whatsapp:+14123456789\"\npublic_url = \"https://gateway.example.com/webhooks/twilio2\"\napi_base = \"{api}\"\n"
            ),
        ),
        (
            "tg",
            format!(
                "kind = \"telegram\"\nbot_token = \"123:abc\"\nsecret_token = \"tg-secret\"\napi_base = \"{api}\"\n"
            ),
        ),
        (
            "imessage",
            format!(
                "kind = \"bluebubbles\"\nserver_url = \"{api}\"\npassword = \"pw\"\nwebhook_secret = \"bb-secret\"\n"
            ),
        ),
    ];
    // Every sample is a new conversation: no budget of new ones holds any back.
    files
        .into_iter()
        .map(|(id, text)| (id, format!("{text}new_conversations_per_minute = 0\n")))
        .collect()
}

/// The adapters, to sign and parse with outside a gateway.
fn registry() -> Registry {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let channels: Vec<(ChannelId, ChannelConfig)> = channel_files("http://127.0.0.1:9")
        .iter()
        .map(|(id, text)| {
            let mut table: toml::Table = toml::from_str(text).unwrap();
            let kind = table.remove("kind").unwrap();
            let config = match kind.as_str().unwrap() {
                "whatsapp" => ChannelConfig::Whatsapp(table.try_into().unwrap()),
                "twilio_whatsapp" => ChannelConfig::TwilioWhatsapp(table.try_into().unwrap()),
                "telegram" => ChannelConfig::Telegram(table.try_into().unwrap()),
                "bluebubbles" => ChannelConfig::Bluebubbles(table.try_into().unwrap()),
                other => panic!("{other}"),
            };
            (ChannelId::parse(*id).unwrap(), config)
        })
        .collect();
    Registry::build(&channels, &reqwest::Client::new())
}

/// The sample as the platform posts it, signed for the adapter's secrets.
fn request(adapter: &dyn ChannelAdapter, sample: &Value) -> WebhookRequest {
    let (body, content_type) = match sample.get("form") {
        Some(form) => {
            let pairs: Vec<(String, String)> = form
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let text = |i: usize| pair[i].as_str().unwrap_or_default().to_string();
                    (text(0), text(1))
                })
                .collect();
            (
                serde_urlencoded::to_string(&pairs).unwrap(),
                "application/x-www-form-urlencoded",
            )
        }
        None => (sample["body"].to_string(), "application/json"),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
    let mut request = WebhookRequest {
        headers,
        query: BTreeMap::new(),
        raw_query: None,
        body: Bytes::from(body),
    };
    adapter.sign(&mut request).unwrap();
    request
}

/// One line for what the events are: their kinds, and a message's content kind.
fn summary(events: &[InboundEvent]) -> String {
    if events.is_empty() {
        return "nothing".to_string();
    }
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Message(m) => format!("message:{}", content(&m.content)),
            EventKind::Edit { content: c, .. } => format!("edit:{}", content(c)),
            EventKind::Status { status, .. } => {
                format!("status:{}", format!("{status:?}").to_lowercase())
            }
            other => other.name().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
        .to_lowercase()
}

fn content(content: &Content) -> String {
    match content {
        Content::Text { .. } => "text".to_string(),
        Content::Media { kind, .. } => format!("media:{}", format!("{kind:?}").to_lowercase()),
        Content::Location { name: Some(_), .. } => "venue".to_string(),
        Content::Location { .. } => "location".to_string(),
        Content::Choice(_) => "choice".to_string(),
        Content::Reaction { emoji, .. } if emoji.is_empty() => "unreaction".to_string(),
        Content::Reaction { .. } => "reaction".to_string(),
        Content::Unsupported { kind } => format!("unsupported:{kind}"),
        Content::Contacts { contacts } => format!("contacts:{}", contacts.len()),
        Content::Deleted => "deleted".to_string(),
        Content::Order { items, .. } => format!("order:{}", items.len()),
        Content::FormReply { flow_token, .. } => format!(
            "form_reply:{}",
            if flow_token.is_some() {
                "token"
            } else {
                "no token"
            }
        ),
        other => format!("{other:?}"),
    }
}

/// Every sample, verified and parsed by its adapter: what it became.
fn parsed(registry: &Registry) -> Vec<(WebhookRequest, Vec<InboundEvent>)> {
    samples()
        .iter()
        .map(|sample| {
            let adapter = registry.get(sample["channel"].as_str().unwrap()).unwrap();
            let request = request(adapter.as_ref(), sample);
            adapter
                .verify(&request)
                .unwrap_or_else(|e| panic!("{}: {e}", sample["name"]));
            let events = adapter
                .parse(&request)
                .unwrap_or_else(|e| panic!("{}: {e}", sample["name"]));
            (request, events)
        })
        .collect()
}

#[test]
fn every_sample_parses_into_what_it_must() {
    let registry = registry();
    let samples = samples();
    let mut wrong = Vec::new();
    for (i, ((_, events), (becomes, _))) in parsed(&registry).iter().zip(expected()).enumerate() {
        let got = summary(events);
        if got != becomes {
            wrong.push(format!(
                "{i} {}: became `{got}`, must become `{becomes}`",
                samples[i]["name"]
            ));
        }
    }
    println!("{}/96 inbound samples parse as they must", 96 - wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Nothing a platform sends that is not the customer saying something (a status, a receipt,
/// typing, an edit, a system message, an error report) becomes a message.
#[test]
fn no_sample_of_another_kind_becomes_a_message() {
    let registry = registry();
    for (i, ((_, events), (becomes, _))) in parsed(&registry).iter().zip(expected()).enumerate() {
        if !becomes.starts_with("message:") {
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::Message(_))),
                "sample {i}: {events:?} would be answered"
            );
        }
    }
}

/// Answers every turn with one line, and keeps which conversation each turn was of.
#[derive(Default)]
struct Counting {
    turns: Mutex<Vec<ConversationId>>,
}

#[async_trait]
impl Responder for Counting {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        self.turns
            .lock()
            .unwrap()
            .push(turn.entry.conversation.clone());
        Ok(Some(Decision::new(
            DecidedBy::Agent,
            vec![(Author::Agent("entry".into()), Content::text("Noted."))],
        )))
    }
}

/// A gateway with the samples' channels on `platform`, its store on SQLite or on `redis`.
async fn gateway(
    platform: &FakeApi,
    redis: Option<&TestRedis>,
    responder: Arc<Counting>,
) -> TestApp {
    let deployment = Deployment::new("");
    for (id, text) in channel_files(&platform.url) {
        std::fs::write(deployment.path().join(format!("channels/{id}.toml")), text)
            .expect("a channel file");
    }
    let config = match redis {
        Some(redis) => deployment.config_on_redis(redis, &[]),
        None => deployment.config(),
    };
    let parts = Parts {
        responder: Some(responder),
        ..Parts::default()
    };
    spawn_with(deployment, config, parts).await
}

async fn kept(store: &SharedStore) -> usize {
    store
        .raw_webhooks(RawFilter {
            limit: 10_000,
            ..RawFilter::default()
        })
        .await
        .expect("the raw webhooks")
        .len()
}

/// Waits until the inbox holds nothing unfinished; what is left when it does not.
async fn settled(store: &SharedStore) -> Result<(), String> {
    for _ in 0..400 {
        match store.pending(0, 10).await {
            // A refusal of a send never recorded waits two minutes for the record.
            Ok(pending)
                if pending
                    .iter()
                    .all(|e| e.event.kind.name() == "window_closed") =>
            {
                return Ok(());
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    let left = store.pending(0, 10).await.map_err(|e| e.to_string())?;
    Err(format!(
        "the inbox still holds {:?}",
        left.iter().map(|e| e.event.kind.name()).collect::<Vec<_>>()
    ))
}

/// Posts every sample to the gateway's webhook and checks what each left in the store, what
/// it made the responders and the platforms do.
async fn every_sample_through(redis: Option<&TestRedis>) {
    let platform = FakeApi::start().await.expect("the fake platform");
    let responder = Arc::new(Counting::default());
    let app = gateway(&platform, redis, responder.clone()).await;
    let store = app.store().clone();
    let registry = registry();
    let samples = samples();
    let mut wrong = Vec::new();
    let mut conforming = 0;
    let mut order: Vec<_> = parsed(&registry)
        .into_iter()
        .zip(expected())
        .enumerate()
        .collect();
    // A refusal of a send never recorded holds its conversation for two minutes (the record
    // may be late): those go last, so that no other sample waits behind one.
    order.sort_by_key(|(_, (_, (becomes, _)))| becomes.contains("window_closed"));
    for (i, ((request, events), (becomes, hears))) in order {
        let name = samples[i]["name"].as_str().unwrap_or_default().to_string();
        let channel = samples[i]["channel"].as_str().unwrap();
        let (raw_before, turns_before, calls_before) = (
            kept(&store).await,
            responder.turns.lock().unwrap().len(),
            platform.requests().len(),
        );
        let mut url = app.url(&format!("/webhooks/{channel}"));
        if let Some(query) = &request.raw_query {
            url = format!("{url}?{query}");
        }
        let answer = app
            .client
            .post(url)
            .headers(request.headers.clone())
            .body(request.body.clone())
            .send()
            .await
            .expect("the gateway answers");
        let mut problems = Vec::new();
        if answer.status() != 200 {
            problems.push(format!("answered {}", answer.status()));
        }
        if let Err(left) = settled(&store).await {
            problems.push(left);
        }
        if let Some(call) = &hears {
            eventually("the platform hears what it waits for", || async {
                platform.requests().iter().any(|r| r.path.ends_with(call))
            })
            .await;
        }
        let turns: Vec<ConversationId> = responder.turns.lock().unwrap()[turns_before..].to_vec();
        for conversation in &turns {
            if let Err(e) = replied(&store, conversation).await {
                problems.push(e);
            }
        }
        let want_turns = usize::from(answered(&becomes));
        if turns.len() != want_turns {
            problems.push(format!("{} turns, not {want_turns}", turns.len()));
        }
        let calls: Vec<String> = platform.requests()[calls_before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        if !answered(&becomes) {
            let expected_calls: Vec<&String> = hears.iter().collect();
            let unexpected: Vec<&String> = calls
                .iter()
                .filter(|c| !expected_calls.iter().any(|e| c.ends_with(e.as_str())))
                .collect();
            if !unexpected.is_empty() {
                problems.push(format!("the platform was called: {unexpected:?}"));
            }
        }
        if kept(&store).await != raw_before + 1 {
            problems.push("its raw webhook was not kept".to_string());
        }
        for event in &events {
            if let Err(problem) = stored(&store, event, &turns).await {
                problems.push(problem);
            }
        }
        if problems.is_empty() {
            conforming += 1;
        } else {
            wrong.push(format!("{i} {name} ({becomes}): {}", problems.join("; ")));
        }
    }
    // A group's status makes no contact of the group.
    let group = app.conversation("wa", "fowefinoewcnw").await;
    if store.conversation(&group).await.unwrap().is_some() {
        wrong.push("29: a status from a group made a conversation for the group".to_string());
    }
    println!(
        "{conforming}/96 inbound samples through the gateway on {}",
        if redis.is_some() { "Redis" } else { "SQLite" }
    );
    app.stop().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Waits until the turn's reply went out (so that its send is not taken for the next
/// sample's).
async fn replied(store: &SharedStore, conversation: &ConversationId) -> Result<(), String> {
    for _ in 0..400 {
        let messages = store
            .messages(conversation, 0, 1000)
            .await
            .map_err(|e| e.to_string())?;
        let waiting = messages
            .iter()
            .any(|m| m.direction == Direction::Outbound && m.status == DeliveryStatus::Pending);
        if !waiting && messages.iter().any(|m| m.direction == Direction::Outbound) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err("the reply was not sent".to_string())
}

/// What the store must hold after `event` was ingested.
async fn stored(
    store: &SharedStore,
    event: &InboundEvent,
    turns: &[ConversationId],
) -> Result<(), String> {
    let message = |id: &PlatformMessageId| {
        let (store, channel, id) = (store.clone(), event.channel.clone(), id.clone());
        async move {
            store
                .message_by_platform_id(&channel, &id)
                .await
                .map_err(|e| e.to_string())
        }
    };
    match &event.kind {
        EventKind::Message(m) => {
            let Some(stored) = message(&m.platform_id).await? else {
                return Err(format!("message {} not stored", m.platform_id));
            };
            if stored.content.without_kept() != m.content {
                return Err(format!("stored as {:?}", stored.content));
            }
            // Media is fetched for its turn: kept, or a reason why not.
            if matches!(&stored.content, Content::Media { kept: None, .. }) {
                return Err(format!("its media was not fetched: {:?}", stored.content));
            }
            if let Some(turn) = turns.first()
                && *turn != stored.conversation
            {
                return Err("answered in another conversation".to_string());
            }
        }
        EventKind::Edit { target, content } => {
            // An edit of a message we hold replaces its words; of one we never saw, nothing.
            if let Some(stored) = message(target).await?
                && stored.content != *content
            {
                return Err(format!("the edited message reads {:?}", stored.content));
            }
        }
        EventKind::ContactChanged { previous, address } => {
            let conversation = store
                .conversation_of(&event.channel, &event.contact)
                .await
                .map_err(|e| e.to_string())?;
            let Some(found) = store
                .conversation(&conversation)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err("no conversation for the changed number".to_string());
            };
            if found.contact != *address {
                return Err(format!(
                    "the conversation still goes to {} (was {previous})",
                    found.contact
                ));
            }
            noted(store, &conversation, address.as_str()).await?;
        }
        EventKind::IdentityChanged => {
            let conversation = store
                .conversation_of(&event.channel, &event.contact)
                .await
                .map_err(|e| e.to_string())?;
            noted(store, &conversation, "identity").await?;
        }
        EventKind::ChannelError(fault) => {
            let faults = store.channel_faults(100).await.map_err(|e| e.to_string())?;
            if !faults
                .iter()
                .any(|k| k.channel == event.channel && k.fault == *fault)
            {
                return Err(format!(
                    "the fault {fault:?} is not on the channel's record"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

async fn noted(
    store: &SharedStore,
    conversation: &ConversationId,
    says: &str,
) -> Result<(), String> {
    let notes = store.notes(conversation).await.map_err(|e| e.to_string())?;
    if notes.iter().any(|n| n.body.contains(says)) {
        Ok(())
    } else {
        Err(format!("no note for concierges saying `{says}`: {notes:?}"))
    }
}

#[tokio::test]
async fn every_sample_through_the_gateway_on_sqlite() {
    every_sample_through(None).await;
}

#[tokio::test]
async fn every_sample_through_the_gateway_on_redis() {
    let Some(redis) = redis("every_sample_through_the_gateway_on_redis") else {
        return;
    };
    every_sample_through(Some(&redis)).await;
}
