//! The shared store test suite: every backend runs these same checks, through the traits
//! only. A backend's test file calls [`store_suite!`](crate::store_suite) with a function
//! that makes a fresh, empty store.

use concierge::domain::{
    Author, ChannelId, Choice, ContactId, Content, ConversationId, DeliveryStatus, Direction,
    EventId, EventKind, InboundEvent, InboundMessage, KeptMedia, MediaId, MediaKind, MediaRef,
    MessageId, PlatformMessageId, StoredMedia, ThreadState, now_millis,
};
use concierge::store::{
    Appended, HandoffChange, NewAudit, NewHandoff, NewNote, NewReply, SharedStore, StoreError,
    Summary, ThreadChange, ThreadMove, TurnOutcome, TurnUsage,
};

/// Expands into one `#[tokio::test]` per suite check, each on a fresh store from `$factory`:
/// an async function returning a [`SharedStore`] and a guard kept alive for the test (the
/// temporary folder, say). With `optional`, the factory returns an `Option` of that, and a
/// check with no store (no server to test against) returns at once: the factory says why.
#[macro_export]
macro_rules! store_suite {
    (optional $factory:path) => {
        $crate::store_suite!(@names @optional $factory);
    };
    ($factory:path) => {
        $crate::store_suite!(@names @always $factory);
    };
    (@names @$mode:ident $factory:path) => {
        $crate::store_suite!(@tests $mode $factory;
            ingest_dedupes_on_channel_and_event_id,
            ingest_stores_the_customer_message,
            a_raw_webhook_comes_back_exactly_without_credentials,
            a_webhook_of_no_event_is_kept_to_no_conversation,
            pending_follows_inbox_order,
            complete_writes_replies_and_marks_done_together,
            complete_twice_writes_once,
            idempotency_keys_are_unique,
            a_human_thread_refuses_automated_replies,
            claims_hand_out_one_head_per_conversation_in_order,
            a_sent_entry_is_never_handed_out_again,
            retry_waits_until_due,
            an_expired_lease_is_reclaimed_as_maybe_sent,
            released_leases_are_due_again,
            released_leases_spare_the_sends_in_hand,
            a_failed_entry_records_the_reason_and_unblocks_the_next,
            delivery_status_only_moves_forward,
            status_events_apply_at_ingest_and_dedupe,
            thread_state_defaults_and_transitions,
            recent_messages_are_the_last_ones_in_order,
            a_media_message_records_what_became_of_its_bytes,
            a_turn_reads_up_to_its_message_and_the_replies_written_since,
            ping_answers,
            a_turn_does_not_undo_a_takeover_that_happened_meanwhile,
            an_ambiguous_failure_marks_the_retry_maybe_sent,
            a_status_naming_an_unanswered_send_confirms_it,
            next_due_ignores_entries_waiting_behind_their_conversation,
            a_status_before_the_send_is_recorded_applies_when_it_is,
            the_same_message_under_a_new_event_id_is_not_answered_twice,
            a_reengagement_reply_is_known_as_one,
            a_person_stays_one_contact_whichever_id_comes,
            a_burst_is_completed_with_its_notes_and_usage,
            usage_since_counts_the_turns_of_the_window,
            a_summary_only_moves_forward,
            the_queue_moves_threads_atomically,
            new_conversations_get_ids_nobody_can_compute,
            only_the_owner_replies_and_the_sla_breaches_once,
            tokens_presence_and_audit,
            the_consent_ledger_grows_and_keeps_a_key_once,
            a_notification_is_queued_once_and_only_with_consent,
            a_webhook_delivery_is_queued_once_leased_retried_and_kept,
            a_batch_moves_by_its_cursor_once_and_stops,
            a_cart_and_its_open_forms_are_kept_with_the_conversation,
            a_merchant_event_is_the_gateways_and_opens_no_window,
            a_cleared_presence_is_gone_and_others_stay,
            a_takeover_cancels_the_agents_replies_not_yet_sent,
        );
    };
    (@tests always $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $factory().await;
                $crate::store_suite::$name(store).await;
            }
        )*
    };
    (@tests optional $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((store, _guard)) = $factory(stringify!($name)).await else {
                    return;
                };
                $crate::store_suite::$name(store).await;
            }
        )*
    };
}

fn channel() -> ChannelId {
    ChannelId::parse("web").expect("valid channel id")
}

fn contact(name: &str) -> ContactId {
    ContactId::parse(name).expect("valid contact id")
}

/// A customer text message event.
pub fn text_event(contact_name: &str, event_id: &str, text: &str) -> InboundEvent {
    InboundEvent {
        channel: channel(),
        event_id: EventId::parse(event_id).expect("valid event id"),
        contact: contact(contact_name),
        aliases: Vec::new(),
        at: now_millis(),
        kind: EventKind::Message(InboundMessage {
            platform_id: PlatformMessageId::parse(format!("p-{event_id}"))
                .expect("valid platform id"),
            content: Content::text(text),
            reply_to: None,
            display_name: Some("Ana".to_string()),
            over_budget: None,
        }),
    }
}

fn reply(key: &str, text: &str) -> NewReply {
    NewReply {
        idempotency_key: key.to_string(),
        author: Author::Agent("faq".to_string()),
        content: Content::text(text),
        reply_to: None,
        reengage: false,
    }
}

fn outcome(replies: Vec<NewReply>) -> TurnOutcome {
    TurnOutcome {
        replies,
        ..TurnOutcome::default()
    }
}

/// Ingests one event and completes it with the given replies; returns the inbox seq.
async fn turn(store: &SharedStore, event: InboundEvent, replies: Vec<NewReply>) -> i64 {
    store.ingest(&[event]).await.expect("ingest");
    let pending = store.pending(0, 100).await.expect("pending");
    let seq = pending.last().expect("an inbox entry").seq;
    store
        .complete(seq, outcome(replies))
        .await
        .expect("complete");
    seq
}

pub async fn new_conversations_get_ids_nobody_can_compute(store: SharedStore) {
    let event = text_event("15550100001", "k1", "hello");
    let before = id_of(&store, &event).await;
    let outcome = store.ingest(std::slice::from_ref(&event)).await.unwrap();
    // The id announced before the conversation existed is the one it got.
    assert_eq!(outcome.appended[0].conversation, before);
    assert!(store.conversation(&before).await.unwrap().is_some());
    // Not the hash of the phone number anyone can compute.
    let guessable = ConversationId::legacy(&event.channel, &event.contact);
    assert_ne!(before, guessable);
    assert!(store.conversation(&guessable).await.unwrap().is_none());
    // Stable for the contact, different for another.
    store
        .ingest(&[text_event("15550100001", "k2", "again")])
        .await
        .unwrap();
    assert_eq!(store.messages(&before, 0, 10).await.unwrap().len(), 2);
    let other = id_of(&store, &text_event("15550100002", "k3", "x")).await;
    assert_ne!(other, before);
}

/// The id the store gives (or gave) the conversation of the event's contact.
async fn id_of(store: &SharedStore, event: &InboundEvent) -> ConversationId {
    store
        .conversation_of(&event.channel, &event.contact)
        .await
        .expect("conversation_of")
}

pub async fn ingest_dedupes_on_channel_and_event_id(store: SharedStore) {
    let event = text_event("ana", "e1", "hello");
    let first = store.ingest(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!((first.accepted, first.duplicates), (1, 0));
    // The entry appended, as the webhook's trace names it.
    let pending = store.pending(0, 100).await.unwrap();
    assert_eq!(
        first.appended,
        vec![Appended {
            seq: pending[0].seq,
            conversation: id_of(&store, &event).await,
        }]
    );
    for _ in 0..2 {
        let again = store.ingest(std::slice::from_ref(&event)).await.unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 1));
        assert!(again.appended.is_empty());
    }
    let batch = store
        .ingest(&[text_event("ana", "e2", "x"), text_event("ana", "e2", "x")])
        .await
        .unwrap();
    assert_eq!((batch.accepted, batch.duplicates), (1, 1));
    assert_eq!(store.pending(0, 100).await.unwrap().len(), 2);
    let conversation = id_of(&store, &event).await;
    assert_eq!(
        store.messages(&conversation, 0, 100).await.unwrap().len(),
        2
    );
}

pub async fn ingest_stores_the_customer_message(store: SharedStore) {
    let event = text_event("ana", "e1", "do you ship to Belgium?");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let conversation = store
        .conversation(&id_of(&store, &event).await)
        .await
        .unwrap()
        .expect("the conversation exists");
    assert_eq!(conversation.contact, contact("ana"));
    assert_eq!(conversation.thread, ThreadState::initial());
    let messages = store
        .messages(&id_of(&store, &event).await, 0, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.direction, Direction::Inbound);
    assert_eq!(message.author, Author::Customer);
    assert_eq!(message.content, Content::text("do you ship to Belgium?"));
    assert_eq!(message.platform_id.as_ref().unwrap().as_str(), "p-e1");
    let pending = store.pending(0, 10).await.unwrap();
    assert_eq!(pending[0].message, Some(message.id));
    assert_eq!(pending[0].event, event);
    assert_eq!(
        store.message(message.id).await.unwrap().as_ref(),
        Some(message)
    );
}

/// A webhook request as the HTTP layer keeps it: credentials removed by the channels'
/// rule, the rest as received.
fn kept_webhook(query: &str, body: &[u8], received_at: i64) -> concierge::store::RawWebhook {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json; charset=utf-8"),
        ("x-hub-signature-256", "sha256=5ec2e7"),
        ("authorization", "Bearer hunter2"),
        ("user-agent", "facebookexternalua"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-webchat-key", "visitor-hunter2-0123456789"),
    ] {
        headers.append(name, http::HeaderValue::from_static(value));
    }
    let (query, headers) = concierge::store::credentials::kept_request(Some(query), &headers);
    concierge::store::RawWebhook {
        channel: channel(),
        kind: "webchat".to_string(),
        received_at,
        query,
        headers,
        body: bytes::Bytes::copy_from_slice(body),
    }
}

/// A webhook the adapter found nothing in (an error report, an update kind it does not read)
/// is kept all the same: it comes back in an export of its channel, and in none of a
/// conversation's, and creates no inbox entry.
pub async fn a_webhook_of_no_event_is_kept_to_no_conversation(store: SharedStore) {
    use concierge::store::RawFilter;
    let now = now_millis();
    let errors = kept_webhook("", b"{\"errors\":[{\"code\":130429}]}", now);
    let outcome = store.ingest_raw(&[], errors.clone()).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 0));
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let kept = store
        .raw_webhooks(RawFilter {
            channel: Some(channel()),
            limit: 10,
            ..RawFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].raw.body, errors.body);
    let ana = store
        .ingest(&[text_event("ana", "raw-alone-1", "hello")])
        .await
        .unwrap();
    let conversation = ana.appended[0].conversation.clone();
    let of_ana = store
        .raw_webhooks(RawFilter {
            conversation: Some(conversation),
            limit: 10,
            ..RawFilter::default()
        })
        .await
        .unwrap();
    assert!(of_ana.is_empty(), "{of_ana:?}");
}

pub async fn a_raw_webhook_comes_back_exactly_without_credentials(store: SharedStore) {
    use concierge::store::RawFilter;
    let now = now_millis();
    let first = kept_webhook(
        "lang=fr&secret=hunter2&x=%C3%A9",
        "{\"text\":\"Où est ma commande ?\"}\n".as_bytes(),
        now - 1_000,
    );
    // Not UTF-8: kept byte for byte all the same.
    let second = kept_webhook("guid=g1", &[0xff, 0x00, b'{', 0xc3], now);
    let ana = store
        .ingest_raw(&[text_event("ana", "raw-1", "first")], first.clone())
        .await
        .unwrap();
    assert_eq!(ana.accepted, 1);
    store
        .ingest_raw(&[text_event("bob", "raw-2", "second")], second.clone())
        .await
        .unwrap();
    // A platform's retry keeps no second record.
    let retry = store
        .ingest_raw(&[text_event("ana", "raw-1", "first")], first.clone())
        .await
        .unwrap();
    assert_eq!(retry.duplicates, 1);

    let all = |limit| RawFilter {
        limit,
        ..RawFilter::default()
    };
    let kept = store.raw_webhooks(all(10)).await.unwrap();
    let raws: Vec<_> = kept.iter().map(|k| k.raw.clone()).collect();
    assert_eq!(
        raws,
        vec![first.clone(), second.clone()],
        "exactly, in order"
    );
    assert_eq!(first.query.as_deref(), Some("lang=fr&x=%C3%A9"));
    assert_eq!(second.query, None);
    assert_eq!(
        first.headers,
        vec![
            (
                "content-type".to_string(),
                "application/json; charset=utf-8".to_string()
            ),
            ("user-agent".to_string(), "facebookexternalua".to_string()),
            ("x-forwarded-for".to_string(), "10.0.0.1".to_string()),
            ("x-forwarded-for".to_string(), "10.0.0.2".to_string()),
            (
                concierge::store::credentials::VISITOR_HEADER.to_string(),
                concierge::store::credentials::kept_headers([(
                    "x-webchat-key".to_string(),
                    "visitor-hunter2-0123456789".to_string()
                )])[0]
                    .1
                    .clone()
            ),
        ]
    );
    for raw in &raws {
        let text = format!("{:?} {:?}", raw.query, raw.headers);
        for secret in ["hunter2", "5ec2e7", "g1", "signature", "authorization"] {
            assert!(!text.contains(secret), "`{secret}` kept in {text}");
        }
    }

    // Page by page, by conversation, by channel, by time.
    let page = store.raw_webhooks(all(1)).await.unwrap();
    assert_eq!(page.len(), 1);
    let next = store
        .raw_webhooks(RawFilter {
            after: Some(page[0].cursor.clone()),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].raw, second);
    let of_ana = store
        .raw_webhooks(RawFilter {
            conversation: Some(ana.appended[0].conversation.clone()),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(of_ana.len(), 1);
    assert_eq!(of_ana[0].raw, first);
    let elsewhere = store
        .raw_webhooks(RawFilter {
            channel: Some(ChannelId::parse("other").unwrap()),
            ..all(10)
        })
        .await
        .unwrap();
    assert!(elsewhere.is_empty());
    let recent = store
        .raw_webhooks(RawFilter {
            since: Some(now),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].raw, second);

    // A request kept before its visitor key counted as a credential: read back without it.
    let mut old = first.clone();
    old.headers.push((
        "x-webchat-key".to_string(),
        "visitor-hunter2-old".to_string(),
    ));
    store
        .ingest_raw(&[text_event("cid", "raw-old", "old")], old)
        .await
        .unwrap();
    let again = store.raw_webhooks(all(10)).await.unwrap();
    let text = format!("{:?}", again[2].raw.headers);
    assert!(!text.contains("visitor-hunter2-old"), "{text}");
    assert!(
        text.contains(concierge::store::credentials::VISITOR_HEADER),
        "{text}"
    );
}

pub async fn pending_follows_inbox_order(store: SharedStore) {
    for i in 0..5 {
        let who = if i % 2 == 0 { "ana" } else { "bob" };
        store
            .ingest(&[text_event(who, &format!("e{i}"), "hi")])
            .await
            .unwrap();
    }
    let all = store.pending(0, 100).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let after = store.pending(all[1].seq, 2).await.unwrap();
    let ids: Vec<&str> = after.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(ids, ["e2", "e3"]);
}

pub async fn complete_writes_replies_and_marks_done_together(store: SharedStore) {
    let event = text_event("ana", "e1", "hours?");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let done = store
        .complete(
            seq,
            outcome(vec![reply("k1", "10 to 7"), reply("k2", "see you")]),
        )
        .await
        .unwrap();
    assert_eq!(done.queued.len(), 2);
    assert!(!done.already_done);
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let messages = store
        .messages(&id_of(&store, &event).await, 0, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].direction, Direction::Outbound);
    assert_eq!(messages[1].status, DeliveryStatus::Pending);
    assert_eq!(messages[1].content, Content::text("10 to 7"));
    assert_eq!(messages[2].content, Content::text("see you"));
    let claimed = store.claim_due(now_millis(), 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1, "one head per conversation");
    assert_eq!(claimed[0].message.id, done.queued[0]);
    assert_eq!(claimed[0].idempotency_key, "k1");
}

pub async fn complete_twice_writes_once(store: SharedStore) {
    let event = text_event("ana", "e1", "hours?");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    store
        .complete(seq, outcome(vec![reply("k1", "a")]))
        .await
        .unwrap();
    let again = store
        .complete(seq, outcome(vec![reply("k1", "a")]))
        .await
        .unwrap();
    assert!(again.already_done);
    assert!(again.queued.is_empty());
    assert_eq!(
        store
            .messages(&id_of(&store, &event).await, 0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        store.complete(999_999, TurnOutcome::default()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn idempotency_keys_are_unique(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "e1", "a"),
        vec![reply("same", "x")],
    )
    .await;
    let event = text_event("ana", "e2", "b");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let done = store
        .complete(seq, outcome(vec![reply("same", "x")]))
        .await
        .unwrap();
    assert!(done.queued.is_empty());
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let outbound = store
        .messages(&id_of(&store, &event).await, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .count();
    assert_eq!(outbound, 1);
}

pub async fn a_human_thread_refuses_automated_replies(store: SharedStore) {
    let event = text_event("ana", "e1", "I want a person");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let conversation = id_of(&store, &event).await;
    store
        .set_thread_state(
            &conversation,
            ThreadState::Human {
                concierge: "lea".to_string(),
            },
        )
        .await
        .unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let human = NewReply {
        idempotency_key: "k-human".to_string(),
        author: Author::Concierge("lea".to_string()),
        content: Content::text("Hi, Léa here"),
        reply_to: None,
        reengage: false,
    };
    let system = NewReply {
        idempotency_key: "k-system".to_string(),
        author: Author::System,
        content: Content::text("hold on"),
        reply_to: None,
        reengage: false,
    };
    let done = store
        .complete(seq, outcome(vec![reply("k-bot", "bot"), system, human]))
        .await
        .unwrap();
    assert_eq!(done.refused, 2);
    assert_eq!(done.queued.len(), 1);
    let claimed = store.claim_due(now_millis(), 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.author, Author::Concierge("lea".into()));

    // The turn that queues the thread for a human still tells the customer so (its reply is
    // judged by the state it was decided from); the handoff is recorded with it. The next
    // turn is refused.
    let event = text_event("bob", "e2", "help");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let done = store
        .complete(
            seq,
            TurnOutcome {
                replies: vec![reply("k-bob", "a colleague will answer")],
                thread: Some(ThreadChange {
                    from: ThreadState::initial(),
                    to: ThreadState::Queued {
                        handoff: "h1".to_string(),
                    },
                }),
                handoff: Some(NewHandoff {
                    id: "h1".to_string(),
                    reason: "asked for a person".to_string(),
                    priority: Some("high".to_string()),
                    team: None,
                    requested_by: "front_desk".to_string(),
                    ..NewHandoff::default()
                }),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((done.refused, done.queued.len()), (0, 1));
    assert!(matches!(
        store
            .thread_state(&id_of(&store, &event).await)
            .await
            .unwrap(),
        ThreadState::Queued { .. }
    ));
    let handoffs = store.handoffs(&id_of(&store, &event).await).await.unwrap();
    assert_eq!(handoffs.len(), 1);
    assert_eq!(
        (handoffs[0].reason.as_str(), handoffs[0].priority.as_deref()),
        ("asked for a person", Some("high"))
    );
    let event = text_event("bob", "e3", "hello?");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let done = store
        .complete(seq, outcome(vec![reply("k-bob-2", "bot")]))
        .await
        .unwrap();
    assert_eq!((done.refused, done.queued.len()), (1, 0));
}

pub async fn claims_hand_out_one_head_per_conversation_in_order(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "a1", "x"),
        vec![reply("a1-0", "first"), reply("a1-1", "second")],
    )
    .await;
    turn(
        &store,
        text_event("bob", "b1", "y"),
        vec![reply("b1-0", "bob")],
    )
    .await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    let texts: Vec<_> = claimed.iter().map(|e| e.message.content.clone()).collect();
    assert_eq!(texts, vec![Content::text("first"), Content::text("bob")]);
    assert!(claimed.iter().all(|e| e.attempts == 1 && !e.maybe_sent));
    // Nothing more until the heads are done.
    assert!(store.claim_due(now, 10, 60_000).await.unwrap().is_empty());
    store.mark_sent(claimed[0].id, None, now).await.unwrap();
    let next = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.content, Content::text("second"));
}

pub async fn a_sent_entry_is_never_handed_out_again(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 10).await.unwrap();
    let platform_id = PlatformMessageId::parse("wamid.1").unwrap();
    store
        .mark_sent(claimed[0].id, Some(platform_id.clone()), now)
        .await
        .unwrap();
    let far = now + 365 * 24 * 3600 * 1000;
    assert!(store.claim_due(far, 10, 10).await.unwrap().is_empty());
    assert_eq!(store.release_leases(&[]).await.unwrap(), 0);
    assert!(store.claim_due(far, 10, 10).await.unwrap().is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Sent);
    assert_eq!(message.platform_id, Some(platform_id));
    // Late outcomes for a sent entry change nothing.
    store
        .retry_at(claimed[0].id, now, "late", false)
        .await
        .unwrap();
    store
        .mark_failed(claimed[0].id, None, "late", now)
        .await
        .unwrap();
    assert!(store.claim_due(far, 10, 10).await.unwrap().is_empty());
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Sent);
}

pub async fn retry_waits_until_due(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    store
        .retry_at(claimed[0].id, now + 5_000, "HTTP 500", false)
        .await
        .unwrap();
    assert!(
        store
            .claim_due(now + 4_999, 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due_at().await.unwrap(), Some(now + 5_000));
    let again = store.claim_due(now + 5_000, 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].first_attempt_at, now);
    assert!(!again[0].maybe_sent);
}

pub async fn an_expired_lease_is_reclaimed_as_maybe_sent(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store
            .claim_due(now + 999, 10, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_due(now + 1_000, 10, 1_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].maybe_sent);
    assert_eq!(again[0].idempotency_key, claimed[0].idempotency_key);
}

pub async fn released_leases_are_due_again(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    store.claim_due(now, 10, 3_600_000).await.unwrap();
    assert_eq!(store.release_leases(&[]).await.unwrap(), 1);
    let again = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].maybe_sent);
}

/// A worker that lost a claim's answer releases its leases but those whose sends it still
/// has in hand.
pub async fn released_leases_spare_the_sends_in_hand(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "a1", "x"),
        vec![reply("ka", "to ana")],
    )
    .await;
    turn(
        &store,
        text_event("bob", "b1", "x"),
        vec![reply("kb", "to bob")],
    )
    .await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 3_600_000).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let in_hand = claimed[0].id;
    assert_eq!(store.release_leases(&[in_hand]).await.unwrap(), 1);
    let again = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1, "only the entry not in hand is due again");
    assert_eq!(again[0].id, claimed[1].id);
    assert!(again[0].maybe_sent);
}

pub async fn a_failed_entry_records_the_reason_and_unblocks_the_next(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "a1", "x"),
        vec![reply("k0", "first"), reply("k1", "second")],
    )
    .await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    store
        .mark_failed(
            claimed[0].id,
            Some("131047".into()),
            "re-engagement required",
            now,
        )
        .await
        .unwrap();
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(
        message.status,
        DeliveryStatus::Failed {
            code: Some("131047".into()),
            reason: "re-engagement required".into()
        }
    );
    let next = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.content, Content::text("second"));
}

pub async fn delivery_status_only_moves_forward(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    let platform_id = PlatformMessageId::parse("out-1").unwrap();
    store
        .mark_sent(claimed[0].id, Some(platform_id.clone()), now)
        .await
        .unwrap();
    let web = channel();
    assert!(
        store
            .update_status(&web, &platform_id, DeliveryStatus::Read)
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_status(&web, &platform_id, DeliveryStatus::Delivered)
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_status(
                &web,
                &platform_id,
                DeliveryStatus::Failed {
                    code: None,
                    reason: "late".into()
                }
            )
            .await
            .unwrap()
    );
    let unknown = PlatformMessageId::parse("nope").unwrap();
    assert!(
        !store
            .update_status(&web, &unknown, DeliveryStatus::Read)
            .await
            .unwrap()
    );
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Read);
}

pub async fn status_events_apply_at_ingest_and_dedupe(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    let platform_id = PlatformMessageId::parse("out-1").unwrap();
    store
        .mark_sent(claimed[0].id, Some(platform_id.clone()), now)
        .await
        .unwrap();
    let status = InboundEvent {
        channel: channel(),
        event_id: EventId::parse("status-1").unwrap(),
        contact: contact("ana"),
        aliases: Vec::new(),
        at: now,
        kind: EventKind::Status {
            target: platform_id,
            status: DeliveryStatus::Delivered,
            ours: None,
        },
    };
    let first = store.ingest(std::slice::from_ref(&status)).await.unwrap();
    assert_eq!(first.accepted, 1);
    assert!(
        first.appended.is_empty(),
        "a status is applied, not appended"
    );
    let again = store.ingest(std::slice::from_ref(&status)).await.unwrap();
    assert_eq!(again.duplicates, 1);
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Delivered);
    let typing = InboundEvent {
        event_id: EventId::parse("typing-1").unwrap(),
        kind: EventKind::Typing,
        ..status
    };
    let outcome = store.ingest(&[typing]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 0));
}

pub async fn thread_state_defaults_and_transitions(store: SharedStore) {
    let unknown = store
        .conversation_of(&channel(), &contact("nobody"))
        .await
        .unwrap();
    assert_eq!(
        store.thread_state(&unknown).await.unwrap(),
        ThreadState::initial()
    );
    assert!(matches!(
        store.set_thread_state(&unknown, ThreadState::Closed).await,
        Err(StoreError::NotFound(_))
    ));
    let event = text_event("ana", "e1", "x");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let conversation = id_of(&store, &event).await;
    store
        .set_thread_state(&conversation, ThreadState::Closed)
        .await
        .unwrap();
    assert_eq!(
        store.thread_state(&conversation).await.unwrap(),
        ThreadState::Closed
    );
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    store
        .complete(
            seq,
            TurnOutcome {
                replies: vec![],
                thread: Some(ThreadChange {
                    from: ThreadState::Closed,
                    to: ThreadState::initial(),
                }),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.thread_state(&conversation).await.unwrap(),
        ThreadState::initial()
    );
}

pub async fn a_media_message_records_what_became_of_its_bytes(store: SharedStore) {
    let mut event = text_event("ana", "e-photo", "");
    let photo = Content::media(
        MediaKind::Image,
        Some("image/jpeg".into()),
        Some("the crack".into()),
        MediaRef("wa-media-1".into()),
    );
    if let EventKind::Message(m) = &mut event.kind {
        m.content = photo.clone();
    }
    store.ingest(&[event]).await.unwrap();
    store
        .ingest(&[text_event("ana", "e-text", "and this")])
        .await
        .unwrap();
    let conversation = id_of(&store, &text_event("ana", "x", "x")).await;
    let recent = store.recent_messages(&conversation, 2).await.unwrap();
    let kept = KeptMedia::Stored(StoredMedia {
        id: MediaId::parse(&"ab".repeat(32)).unwrap(),
        mime: "image/png".into(),
        bytes: 2048,
        width: Some(640),
        height: Some(480),
        transcript: None,
        transcript_problem: None,
        name: None,
    });
    assert!(store.set_media(recent[0].id, &kept).await.unwrap());
    assert!(
        !store.set_media(recent[1].id, &kept).await.unwrap(),
        "a text has no media"
    );
    assert!(!store.set_media(MessageId::new(), &kept).await.unwrap());
    let stored = store.message(recent[0].id).await.unwrap().unwrap();
    assert_eq!(stored.content, photo.with_kept(kept).unwrap());
    let stored = store.message(recent[1].id).await.unwrap().unwrap();
    assert_eq!(stored.content, Content::text("and this"));
}

pub async fn recent_messages_are_the_last_ones_in_order(store: SharedStore) {
    for i in 0..6 {
        store
            .ingest(&[text_event("ana", &format!("e{i}"), &format!("m{i}"))])
            .await
            .unwrap();
    }
    let conversation = id_of(&store, &text_event("ana", "x", "x")).await;
    let recent = store.recent_messages(&conversation, 3).await.unwrap();
    let texts: Vec<_> = recent.iter().map(|m| m.content.clone()).collect();
    assert_eq!(
        texts,
        vec![
            Content::text("m3"),
            Content::text("m4"),
            Content::text("m5")
        ]
    );
    let choice = Content::Choice(Choice::new("yes", "Yes"));
    let mut event = text_event("ana", "e-choice", "");
    if let EventKind::Message(m) = &mut event.kind {
        m.content = choice.clone();
    }
    store.ingest(&[event]).await.unwrap();
    let recent = store.recent_messages(&conversation, 1).await.unwrap();
    assert_eq!(recent[0].content, choice);
}

pub async fn a_turn_reads_up_to_its_message_and_the_replies_written_since(store: SharedStore) {
    for i in 0..6 {
        store
            .ingest(&[text_event("ana", &format!("e{i}"), &format!("m{i}"))])
            .await
            .unwrap();
    }
    let conversation = id_of(&store, &text_event("ana", "x", "x")).await;
    // The first message's turn replies after all six were stored.
    let pending = store.pending(0, 100).await.unwrap();
    store
        .complete(pending[0].seq, outcome(vec![reply("k0", "r0")]))
        .await
        .unwrap();
    let all = store.messages(&conversation, 0, 100).await.unwrap();
    assert_eq!(all.len(), 7);
    let texts = |messages: Vec<concierge::domain::Message>| -> Vec<Content> {
        messages.into_iter().map(|m| m.content).collect()
    };
    // The turn of m1 reads m0 and m1, then the reply; not m2..m5, which wait their turn.
    let upto = store
        .messages_upto(&conversation, all[1].seq, 2)
        .await
        .unwrap();
    assert_eq!(
        texts(upto),
        vec![
            Content::text("m0"),
            Content::text("m1"),
            Content::text("r0")
        ]
    );
    let upto = store
        .messages_upto(&conversation, all[1].seq, 1)
        .await
        .unwrap();
    assert_eq!(texts(upto), vec![Content::text("m1"), Content::text("r0")]);
    assert!(
        store
            .messages_upto(&conversation, all[1].seq, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn ping_answers(store: SharedStore) {
    store.ping().await.unwrap();
}

pub async fn a_turn_does_not_undo_a_takeover_that_happened_meanwhile(store: SharedStore) {
    let event = text_event("ana", "e1", "hello?");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let conversation = id_of(&store, &event).await;
    store
        .set_thread_state(&conversation, ThreadState::Closed)
        .await
        .unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    // The turn read Closed and decided to reopen with the bot; a concierge took the thread
    // before the turn completed.
    let lea = ThreadState::Human {
        concierge: "lea".to_string(),
    };
    store
        .set_thread_state(&conversation, lea.clone())
        .await
        .unwrap();
    let done = store
        .complete(
            seq,
            TurnOutcome {
                replies: vec![reply("k", "bot")],
                thread: Some(ThreadChange {
                    from: ThreadState::Closed,
                    to: ThreadState::initial(),
                }),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((done.refused, done.queued.len()), (1, 0));
    assert_eq!(store.thread_state(&conversation).await.unwrap(), lea);
}

pub async fn an_ambiguous_failure_marks_the_retry_maybe_sent(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    store
        .retry_at(claimed[0].id, now, "timeout", true)
        .await
        .unwrap();
    let again = store.claim_due(now, 10, 60_000).await.unwrap();
    assert!(again[0].maybe_sent);
    // It stays marked through later, unambiguous failures.
    store
        .retry_at(again[0].id, now, "HTTP 500", false)
        .await
        .unwrap();
    let third = store.claim_due(now, 10, 60_000).await.unwrap();
    assert!(third[0].maybe_sent);
    assert_eq!(third[0].attempts, 3);
}

pub async fn a_status_naming_an_unanswered_send_confirms_it(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "a1", "x"),
        vec![reply("k0", "first"), reply("k1", "second")],
    )
    .await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    let first = claimed[0].message.id;
    // The send's answer was lost: retried later, maybe sent.
    store
        .retry_at(claimed[0].id, now + 60_000, "no answer", true)
        .await
        .unwrap();
    let platform_id = PlatformMessageId::parse("wamid.confirmed").unwrap();
    // A status on another channel, or naming a message with no open entry, confirms nothing.
    let elsewhere = ChannelId::parse("elsewhere").unwrap();
    assert!(
        !store
            .confirm_sent(&elsewhere, first, platform_id.clone(), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_sent(&channel(), MessageId::new(), platform_id.clone(), now)
            .await
            .unwrap()
    );
    assert!(
        store
            .confirm_sent(&channel(), first, platform_id.clone(), now)
            .await
            .unwrap()
    );
    // Once: a second report finds nothing open.
    assert!(
        !store
            .confirm_sent(&channel(), first, platform_id.clone(), now)
            .await
            .unwrap()
    );
    let message = store.message(first).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Sent);
    assert_eq!(message.platform_id, Some(platform_id));
    // The conversation's next reply is due at once, and the first is never handed out again.
    let next = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].message.id, first);
    // A late answer to the lost send changes nothing.
    store.mark_sent(claimed[0].id, None, now).await.unwrap();
}

pub async fn next_due_ignores_entries_waiting_behind_their_conversation(store: SharedStore) {
    turn(
        &store,
        text_event("ana", "a1", "x"),
        vec![reply("k0", "first"), reply("k1", "second")],
    )
    .await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .retry_at(claimed[0].id, now + 60_000, "429", false)
        .await
        .unwrap();
    // "second" is due now but waits behind "first": the next due time is first's retry.
    assert_eq!(store.next_due_at().await.unwrap(), Some(now + 60_000));
}

pub async fn a_status_before_the_send_is_recorded_applies_when_it_is(store: SharedStore) {
    turn(&store, text_event("ana", "a1", "x"), vec![reply("k", "r")]).await;
    let now = now_millis();
    let claimed = store.claim_due(now, 10, 60_000).await.unwrap();
    let platform_id = PlatformMessageId::parse("wamid.early").unwrap();
    let status = InboundEvent {
        channel: channel(),
        event_id: EventId::parse("status-early").unwrap(),
        contact: contact("ana"),
        aliases: Vec::new(),
        at: now,
        kind: EventKind::Status {
            target: platform_id.clone(),
            status: DeliveryStatus::Delivered,
            ours: None,
        },
    };
    assert_eq!(store.ingest(&[status]).await.unwrap().accepted, 1);
    store
        .mark_sent(claimed[0].id, Some(platform_id), now)
        .await
        .unwrap();
    let message = store.message(claimed[0].message.id).await.unwrap().unwrap();
    assert_eq!(message.status, DeliveryStatus::Delivered);
}

pub async fn the_same_message_under_a_new_event_id_is_not_answered_twice(store: SharedStore) {
    let first = text_event("ana", "e1", "hello");
    let mut again = first.clone();
    again.event_id = EventId::parse("e1-redelivered").unwrap();
    assert_eq!(
        store
            .ingest(std::slice::from_ref(&first))
            .await
            .unwrap()
            .accepted,
        1
    );
    let outcome = store.ingest(&[again]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 1));
    assert_eq!(store.pending(0, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .messages(&id_of(&store, &first).await, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn a_reengagement_reply_is_known_as_one(store: SharedStore) {
    let event = text_event("ana", "e1", "x");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let mut again = reply("k-again", "r");
    again.reengage = true;
    let done = store
        .complete(seq, outcome(vec![reply("k", "r"), again]))
        .await
        .unwrap();
    assert!(!store.is_reengagement(done.queued[0]).await.unwrap());
    assert!(store.is_reengagement(done.queued[1]).await.unwrap());
    let claimed = store.claim_due(now_millis(), 10, 60_000).await.unwrap();
    assert!(!claimed[0].reengage);
}

pub async fn a_person_stays_one_contact_whichever_id_comes(store: SharedStore) {
    // First by phone only (an older payload), then with a business-scoped id beside the
    // phone, then by the business-scoped id alone: one contact, one conversation.
    let phone = text_event("15550100001", "e1", "first");
    store.ingest(std::slice::from_ref(&phone)).await.unwrap();
    let mut both = text_event("US.1349", "e2", "second");
    both.aliases = vec![contact("15550100001")];
    store.ingest(&[both]).await.unwrap();
    let alone = text_event("US.1349", "e3", "third");
    store.ingest(&[alone]).await.unwrap();
    let conversation = id_of(&store, &phone).await;
    let messages = store.messages(&conversation, 0, 10).await.unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m.contact == contact("15550100001")));
    let pending = store.pending(0, 10).await.unwrap();
    assert!(pending.iter().all(|e| e.conversation == conversation));

    // The other way round: first seen with both ids, later by phone alone.
    let mut first = text_event("US.7777", "f1", "hello");
    first.aliases = vec![contact("15550100009")];
    store.ingest(std::slice::from_ref(&first)).await.unwrap();
    store
        .ingest(&[text_event("15550100009", "f2", "again")])
        .await
        .unwrap();
    let messages = store
        .messages(&id_of(&store, &first).await, 0, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
}

pub async fn a_burst_is_completed_with_its_notes_and_usage(store: SharedStore) {
    let events = [
        text_event("ann", "b1", "hi"),
        text_event("ann", "b2", "my order"),
        text_event("ann", "b3", "is late"),
    ];
    store.ingest(&events).await.unwrap();
    let pending = store.pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    let conversation = pending[0].conversation.clone();
    let usage = TurnUsage {
        input_tokens: 120,
        output_tokens: 30,
        llm_calls: 2,
    };
    let done = store
        .complete(
            pending[2].seq,
            TurnOutcome {
                replies: vec![reply("k-burst", "one answer")],
                absorbed: vec![pending[0].seq, pending[1].seq],
                notes: vec![NewNote {
                    author: "front_desk".to_string(),
                    body: "asked orders: where is ML-1?".to_string(),
                }],
                usage: Some(usage),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.queued.len(), 1);
    assert!(store.pending(0, 10).await.unwrap().is_empty());
    let notes = store.notes(&conversation).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].author, "front_desk");
    // Notes never show up among the conversation's messages.
    let messages = store.recent_messages(&conversation, 10).await.unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(store.usage(&conversation).await.unwrap(), usage);
    // A replay of the same completion writes nothing more.
    let again = store
        .complete(
            pending[2].seq,
            TurnOutcome {
                notes: vec![NewNote {
                    author: "x".to_string(),
                    body: "y".to_string(),
                }],
                usage: Some(usage),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert!(again.already_done);
    assert_eq!(store.notes(&conversation).await.unwrap().len(), 1);
    assert_eq!(store.usage(&conversation).await.unwrap(), usage);
}

pub async fn usage_since_counts_the_turns_of_the_window(store: SharedStore) {
    let events = [
        text_event("una", "u1", "hello"),
        text_event("una", "u2", "again"),
        text_event("ugo", "u3", "hi"),
    ];
    store.ingest(&events).await.unwrap();
    let pending = store.pending(0, 10).await.unwrap();
    let (una, ugo) = (
        id_of(&store, &events[0]).await,
        id_of(&store, &events[2]).await,
    );
    let used = |tokens: u64| TurnUsage {
        input_tokens: tokens,
        output_tokens: 10,
        llm_calls: 1,
    };
    let complete = |seq: i64, usage: TurnUsage| {
        let store = store.clone();
        async move {
            store
                .complete(
                    seq,
                    TurnOutcome {
                        usage: Some(usage),
                        ..TurnOutcome::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    let before = now_millis();
    complete(pending[0].seq, used(100)).await;
    // Whole milliseconds apart: the window starts between the two turns.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    complete(pending[1].seq, used(50)).await;
    complete(pending[2].seq, used(7)).await;
    let mut both = used(100);
    both.add(used(50));
    assert_eq!(store.usage_since(&una, before).await.unwrap(), both);
    assert_eq!(store.usage_since(&una, between).await.unwrap(), used(50));
    assert_eq!(
        store
            .usage_since(&una, now_millis() + 60_000)
            .await
            .unwrap(),
        TurnUsage::default()
    );
    assert_eq!(store.usage_since(&ugo, before).await.unwrap(), used(7));
    assert_eq!(store.usage(&una).await.unwrap(), both);
    // A replayed completion counts once.
    assert!(complete(pending[1].seq, used(50)).await.already_done);
    assert_eq!(store.usage_since(&una, before).await.unwrap(), both);
}

pub async fn a_summary_only_moves_forward(store: SharedStore) {
    let event = text_event("sam", "s1", "hello");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let conversation = id_of(&store, &event).await;
    assert_eq!(store.summary(&conversation).await.unwrap(), None);
    let newer = Summary {
        text: "asked about ML-1".to_string(),
        upto_seq: 10,
    };
    store
        .set_summary(&conversation, newer.clone())
        .await
        .unwrap();
    store
        .set_summary(
            &conversation,
            Summary {
                text: "older".to_string(),
                upto_seq: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.summary(&conversation).await.unwrap(), Some(newer));
}

/// A conversation queued for a person through a turn, as the desk queues one.
async fn queued(store: &SharedStore, who: &str, sla_due_at: Option<i64>) -> ConversationId {
    let event = text_event(who, &format!("{who}-q"), "a person please");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 100).await.unwrap().last().unwrap().seq;
    let handoff = format!("h-{who}");
    let done = store
        .complete(
            seq,
            TurnOutcome {
                thread: Some(ThreadChange {
                    from: ThreadState::initial(),
                    to: ThreadState::Queued {
                        handoff: handoff.clone(),
                    },
                }),
                handoff: Some(NewHandoff {
                    id: handoff,
                    reason: "asked for a person".to_string(),
                    priority: Some("normal".to_string()),
                    team: Some("support".to_string()),
                    requested_by: "gateway".to_string(),
                    brief: Some("{\"reason\":\"asked for a person\"}".to_string()),
                    sla_due_at,
                }),
                ..TurnOutcome::default()
            },
        )
        .await
        .unwrap();
    assert!(done.thread_changed);
    id_of(store, &event).await
}

fn audit(actor: &str, action: &str, conversation: &ConversationId) -> NewAudit {
    NewAudit {
        actor: actor.to_string(),
        action: action.to_string(),
        conversation: Some(conversation.clone()),
        detail: String::new(),
    }
}

fn claim(conversation: &ConversationId, from: ThreadState, who: &str) -> ThreadMove {
    ThreadMove {
        conversation: conversation.clone(),
        from,
        to: ThreadState::Human {
            concierge: who.to_string(),
        },
        handoff: HandoffChange::None,
        note: None,
        audit: audit(who, "claim", conversation),
    }
}

pub async fn the_queue_moves_threads_atomically(store: SharedStore) {
    let conversation = queued(&store, "quinn", None).await;
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    let handoff = queue[0].handoff.clone().expect("the open handoff");
    assert_eq!(handoff.team.as_deref(), Some("support"));
    assert!(handoff.brief.is_some());
    assert_eq!(
        queue[0].last_inbound.as_ref().unwrap().content,
        Content::text("a person please")
    );
    let from = queue[0].conversation.thread.clone();

    // Two claims from the same state, at once: exactly one applies.
    let (a, b) = tokio::join!(
        store.move_thread(claim(&conversation, from.clone(), "ana")),
        store.move_thread(claim(&conversation, from.clone(), "ben"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one claim wins ({a}, {b})");
    let winner = if a { "ana" } else { "ben" };
    let handoffs = store.handoffs(&conversation).await.unwrap();
    assert_eq!(handoffs[0].claimed_by.as_deref(), Some(winner));
    assert!(handoffs[0].claimed_at.is_some());

    // Released with a note: the handoff is closed and the thread leaves the queue.
    let released = store
        .move_thread(ThreadMove {
            conversation: conversation.clone(),
            from: ThreadState::Human {
                concierge: winner.to_string(),
            },
            to: ThreadState::initial(),
            handoff: HandoffChange::Close {
                outcome: "released".to_string(),
                note: Some("refund done".to_string()),
            },
            note: Some(NewNote {
                author: winner.to_string(),
                body: "released".to_string(),
            }),
            audit: audit(winner, "release", &conversation),
        })
        .await
        .unwrap();
    assert!(released);
    assert!(store.queue().await.unwrap().is_empty());
    let handoffs = store.handoffs(&conversation).await.unwrap();
    assert!(!handoffs[0].is_open());
    assert_eq!(handoffs[0].outcome.as_deref(), Some("released"));
    assert_eq!(handoffs[0].release_note.as_deref(), Some("refund done"));
    assert_eq!(store.notes(&conversation).await.unwrap().len(), 1);
    // A stale move does nothing.
    assert!(
        !store
            .move_thread(claim(&conversation, from, "ana"))
            .await
            .unwrap()
    );
}

pub async fn only_the_owner_replies_and_the_sla_breaches_once(store: SharedStore) {
    let conversation = queued(&store, "rita", Some(now_millis() - 1)).await;
    let concierge_reply = |key: &str| NewReply {
        idempotency_key: key.to_string(),
        author: Author::Concierge("ana".to_string()),
        content: Content::text("hello, Ana here"),
        reply_to: None,
        reengage: false,
    };
    // Not hers yet: refused, nothing queued.
    let refused = store
        .concierge_reply(
            &conversation,
            "ana",
            vec![concierge_reply("c1")],
            audit("ana", "reply", &conversation),
        )
        .await
        .unwrap();
    assert!(refused.is_none());

    let breaches = store.sla_breaches(now_millis()).await.unwrap();
    assert_eq!(breaches.len(), 1);
    assert_eq!(breaches[0].priority, "high");
    assert!(
        store.sla_breaches(now_millis()).await.unwrap().is_empty(),
        "once"
    );

    // Offered to ana: a second offer while hers stands is refused.
    let handoff = store.queue().await.unwrap()[0].handoff.clone().unwrap();
    let now = now_millis();
    assert!(
        store
            .offer(&handoff.id, "ana", now, now + 30_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .offer(&handoff.id, "ben", now, now + 30_000)
            .await
            .unwrap()
    );

    let from = store.thread_state(&conversation).await.unwrap();
    assert!(
        store
            .move_thread(claim(&conversation, from, "ana"))
            .await
            .unwrap()
    );
    let queued = store
        .concierge_reply(
            &conversation,
            "ana",
            vec![concierge_reply("c1")],
            audit("ana", "reply", &conversation),
        )
        .await
        .unwrap()
        .expect("the owner replies");
    assert_eq!(queued.ids.len(), 1);
    assert!(!queued.replayed);
    // The same request again is not queued twice; ben, not the owner, is refused.
    let again = store
        .concierge_reply(
            &conversation,
            "ana",
            vec![concierge_reply("c1")],
            audit("ana", "reply", &conversation),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again,
        concierge::store::ConciergeReplied {
            ids: queued.ids.clone(),
            replayed: true
        },
        "the same messages, none queued"
    );
    assert!(
        store
            .concierge_reply(
                &conversation,
                "ben",
                vec![concierge_reply("c2")],
                audit("ben", "reply", &conversation)
            )
            .await
            .unwrap()
            .is_none()
    );
    let handoffs = store.handoffs(&conversation).await.unwrap();
    assert!(handoffs[0].first_response_at.is_some());
    assert!(handoffs[0].offered_to.is_none(), "a claim clears the offer");
    let claimed = store.claim_due(now_millis(), 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.author, Author::Concierge("ana".into()));
    // Agents still cannot speak in her thread.
    let event = text_event("rita", "rita-2", "thanks");
    store.ingest(std::slice::from_ref(&event)).await.unwrap();
    let seq = store.pending(0, 10).await.unwrap()[0].seq;
    let done = store
        .complete(seq, outcome(vec![reply("k-rita", "bot")]))
        .await
        .unwrap();
    assert_eq!((done.refused, done.queued.len()), (1, 0));
}

pub async fn a_cleared_presence_is_gone_and_others_stay(store: SharedStore) {
    store
        .touch_presence("ana", Some("online"), 1000)
        .await
        .unwrap();
    store.touch_presence("ben", None, 2000).await.unwrap();
    store.clear_presence("ana").await.unwrap();
    let presence = store.presence().await.unwrap();
    assert_eq!(
        presence
            .iter()
            .map(|p| p.concierge.as_str())
            .collect::<Vec<_>>(),
        ["ben"]
    );
    // Clearing twice, or someone never seen, is no error.
    store.clear_presence("ana").await.unwrap();
    store.clear_presence("zoe").await.unwrap();
    // A console connecting again brings them back, online with a fresh idle clock.
    store.touch_presence("ana", None, 3000).await.unwrap();
    let presence = store.presence().await.unwrap();
    let ana = presence.iter().find(|p| p.concierge == "ana").unwrap();
    assert_eq!((ana.status.as_str(), ana.idle_since), ("online", 3000));
}

pub async fn the_consent_ledger_grows_and_keeps_a_key_once(store: SharedStore) {
    use concierge::store::{NewConsent, Purpose, consent::latest};
    let channel = ChannelId::parse("whatsapp").unwrap();
    let ana = ContactId::parse("33612345678").unwrap();
    let ben = ContactId::parse("33698765432").unwrap();
    let decision =
        |contact: &ContactId, purpose, granted, source: &str, key: Option<&str>, at| NewConsent {
            channel: channel.clone(),
            contact: contact.clone(),
            purpose,
            granted,
            source: source.to_string(),
            proof: Some(format!("{source} proof")),
            at,
            key: key.map(str::to_string),
        };
    assert!(store.consents(&channel, &ana).await.unwrap().is_empty());
    let granted = decision(
        &ana,
        Purpose::Marketing,
        true,
        "checkout",
        Some("order-1"),
        1_000,
    );
    assert!(store.record_consent(&granted).await.unwrap());
    assert!(!store.record_consent(&granted).await.unwrap(), "a key once");
    let stop = decision(
        &ana,
        Purpose::Marketing,
        false,
        "chat_keyword",
        Some("evt-stop"),
        2_000,
    );
    assert!(store.record_consent(&stop).await.unwrap());
    let utility = decision(&ana, Purpose::Utility, true, "api", None, 3_000);
    assert!(store.record_consent(&utility).await.unwrap());
    assert!(
        store.record_consent(&utility).await.unwrap(),
        "no key: always recorded"
    );
    store
        .record_consent(&decision(
            &ben,
            Purpose::Marketing,
            true,
            "web_form",
            None,
            4_000,
        ))
        .await
        .unwrap();
    let ledger = store.consents(&channel, &ana).await.unwrap();
    assert_eq!(ledger.len(), 4);
    assert!(ledger.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(ledger[0].consent, granted);
    assert_eq!(ledger[1].consent, stop);
    let marketing = latest(&ledger, Purpose::Marketing).unwrap();
    assert!(!marketing.consent.granted);
    assert_eq!(marketing.consent.source, "chat_keyword");
    assert!(latest(&ledger, Purpose::Utility).unwrap().consent.granted);
    assert_eq!(store.consents(&channel, &ben).await.unwrap().len(), 1);
    let elsewhere = ChannelId::parse("telegram").unwrap();
    assert!(store.consents(&elsewhere, &ana).await.unwrap().is_empty());
}

pub async fn tokens_presence_and_audit(store: SharedStore) {
    store.add_token("hash-1", "ana").await.unwrap();
    assert_eq!(
        store.token_owner("hash-1").await.unwrap().as_deref(),
        Some("ana")
    );
    assert_eq!(store.token_owner("hash-2").await.unwrap(), None);
    store.add_token("hash-3", "ana").await.unwrap();
    store.add_token("hash-4", "ben").await.unwrap();
    assert_eq!(store.revoke_tokens("ana").await.unwrap(), 2);
    assert_eq!(store.token_owner("hash-1").await.unwrap(), None);
    assert_eq!(
        store.token_owner("hash-4").await.unwrap().as_deref(),
        Some("ben")
    );

    // A system's tokens are apart from people's: their own owner, with scopes.
    let scopes = vec!["notify".to_string(), "events".to_string()];
    store
        .add_service_token("hash-s1", "crm", &scopes)
        .await
        .unwrap();
    store
        .add_service_token("hash-s2", "crm", &scopes[..1])
        .await
        .unwrap();
    store
        .add_service_token("hash-s3", "orders", &[])
        .await
        .unwrap();
    let crm = store.service_token("hash-s1").await.unwrap().unwrap();
    assert_eq!((crm.service.as_str(), crm.scopes.clone()), ("crm", scopes));
    assert_eq!(store.token_owner("hash-s1").await.unwrap(), None);
    assert_eq!(store.service_token("hash-4").await.unwrap(), None);
    assert!(
        store
            .service_token("hash-s3")
            .await
            .unwrap()
            .unwrap()
            .scopes
            .is_empty()
    );
    assert_eq!(store.revoke_service_tokens("crm").await.unwrap(), 2);
    assert_eq!(store.service_token("hash-s2").await.unwrap(), None);
    assert!(store.service_token("hash-s3").await.unwrap().is_some());
    assert_eq!(store.revoke_service_tokens("crm").await.unwrap(), 0);

    store
        .touch_presence("ana", Some("online"), 1000)
        .await
        .unwrap();
    store.touch_presence("ana", None, 5000).await.unwrap();
    store
        .touch_presence("ana", Some("online"), 6000)
        .await
        .unwrap();
    let presence = store.presence().await.unwrap();
    assert_eq!(presence.len(), 1);
    assert_eq!(
        (presence[0].seen_at, presence[0].idle_since),
        (6000, 1000),
        "staying online keeps the idle clock"
    );
    store
        .touch_presence("ana", Some("away"), 7000)
        .await
        .unwrap();
    assert_eq!(store.presence().await.unwrap()[0].status, "away");

    let conversation = store
        .conversation_of(&channel(), &contact("zed"))
        .await
        .unwrap();
    store
        .audit(audit("boss", "resolve", &conversation))
        .await
        .unwrap();
    store
        .audit(audit("ana", "claim", &conversation))
        .await
        .unwrap();
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str()),
        ("ana", "claim"),
        "newest first"
    );
}

pub async fn a_takeover_cancels_the_agents_replies_not_yet_sent(store: SharedStore) {
    let event = text_event("tara", "t1", "hello");
    turn(&store, event.clone(), vec![reply("t1-0", "bot answer")]).await;
    let conversation = id_of(&store, &event).await;
    let taken = store
        .move_thread(ThreadMove {
            handoff: HandoffChange::Open(NewHandoff {
                id: "h-tara".to_string(),
                reason: "taken over by ana".to_string(),
                requested_by: "ana".to_string(),
                ..NewHandoff::default()
            }),
            ..claim(&conversation, ThreadState::initial(), "ana")
        })
        .await
        .unwrap();
    assert!(taken);
    assert!(
        store
            .claim_due(now_millis(), 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    let out: Vec<_> = store
        .messages(&conversation, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .collect();
    assert!(
        matches!(out[0].status, DeliveryStatus::Failed { .. }),
        "{:?}",
        out[0].status
    );
    assert_eq!(
        store.handoffs(&conversation).await.unwrap()[0]
            .claimed_by
            .as_deref(),
        Some("ana")
    );
}

pub async fn a_notification_is_queued_once_and_only_with_consent(store: SharedStore) {
    use concierge::store::{NewConsent, NewNotification, Notified, Purpose, Refusal};
    let channel = ChannelId::parse("whatsapp").unwrap();
    let ana = ContactId::parse("33612345678").unwrap();
    let conversation = store.conversation_of(&channel, &ana).await.unwrap();
    let notification = |id: &str, key: &str, purpose| NewNotification {
        id: id.to_string(),
        key: format!("orders:{key}"),
        service: "orders".to_string(),
        channel: channel.clone(),
        contact: ana.clone(),
        conversation: conversation.clone(),
        purpose,
        template: Some("order_shipped.fr".to_string()),
        content: Content::template("order_shipped", "fr", vec!["ML-10421".to_string()]),
        batch: None,
        at: 1_000,
    };
    // A utility notification to a customer never seen: the conversation starts with it.
    let first = store
        .notify(&notification("n1", "k1", Purpose::Utility))
        .await
        .unwrap();
    let Notified::Queued {
        notification: queued,
        replayed: false,
    } = first
    else {
        panic!("not queued: {first:?}");
    };
    assert_eq!(queued.conversation, conversation);
    let stored = store.conversation(&conversation).await.unwrap().unwrap();
    assert_eq!(stored.contact, ana);
    let messages = store.messages(&conversation, 0, 10).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, queued.message);
    assert!(messages[0].content.is_template());
    assert_eq!(
        store.notification("n1").await.unwrap(),
        Some(queued.clone())
    );
    // The same key again: the first notification, nothing more queued.
    let again = store
        .notify(&notification("n2", "k1", Purpose::Utility))
        .await
        .unwrap();
    assert_eq!(
        again,
        Notified::Queued {
            notification: queued.clone(),
            replayed: true
        }
    );
    assert_eq!(store.messages(&conversation, 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.notification("n2").await.unwrap(), None);
    let claimed = store.claim_due(now_millis(), 10, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.id, queued.message);
    // Marketing needs a yes; a STOP withdraws it; a full opt-out stops utility too.
    let marketing = store
        .notify(&notification("n3", "k3", Purpose::Marketing))
        .await
        .unwrap();
    assert_eq!(marketing, Notified::Refused(Refusal::NoConsent));
    let decide = |purpose, granted, at| NewConsent {
        channel: channel.clone(),
        contact: ana.clone(),
        purpose,
        granted,
        source: "api".to_string(),
        proof: None,
        at,
        key: None,
    };
    store
        .record_consent(&decide(Purpose::Marketing, true, 2_000))
        .await
        .unwrap();
    let yes = store
        .notify(&notification("n4", "k4", Purpose::Marketing))
        .await
        .unwrap();
    assert!(matches!(
        yes,
        Notified::Queued {
            replayed: false,
            ..
        }
    ));
    store
        .record_consent(&decide(Purpose::Marketing, false, 3_000))
        .await
        .unwrap();
    let stopped = store
        .notify(&notification("n5", "k5", Purpose::Marketing))
        .await
        .unwrap();
    assert_eq!(stopped, Notified::Refused(Refusal::OptedOut));
    store
        .record_consent(&decide(Purpose::Utility, false, 4_000))
        .await
        .unwrap();
    let utility = store
        .notify(&notification("n6", "k6", Purpose::Utility))
        .await
        .unwrap();
    assert_eq!(utility, Notified::Refused(Refusal::OptedOut));
    // Refused ones left nothing behind: the first notification and the one marketing message.
    assert_eq!(store.messages(&conversation, 0, 10).await.unwrap().len(), 2);
    assert_eq!(store.notification("n5").await.unwrap(), None);
}

pub async fn a_webhook_delivery_is_queued_once_leased_retried_and_kept(store: SharedStore) {
    use concierge::store::{DeliveryState, NewDelivery};
    let delivery = |webhook: &str, event: &str| NewDelivery {
        webhook: webhook.to_string(),
        event_id: event.to_string(),
        event_type: "message.received".to_string(),
        payload: format!("{{\"id\":\"{event}\"}}"),
        at: 1_000,
    };
    let added = store
        .enqueue_webhooks(&[delivery("crm", "msg_1"), delivery("orders", "msg_1")])
        .await
        .unwrap();
    assert_eq!(added, 2, "one per webhook");
    assert_eq!(
        store
            .enqueue_webhooks(&[delivery("crm", "msg_1"), delivery("crm", "msg_2")])
            .await
            .unwrap(),
        1,
        "an event once per webhook"
    );
    let claimed = store.claim_webhooks(2_000, 10, 30_000).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|d| d.attempts == 1));
    assert!(claimed.iter().all(|d| d.state == DeliveryState::Pending));
    assert!(
        store
            .claim_webhooks(3_000, 10, 30_000)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let first = claimed
        .iter()
        .find(|d| d.webhook == "crm" && d.event_id == "msg_1")
        .unwrap();
    assert_eq!(first.payload, "{\"id\":\"msg_1\"}");
    store
        .webhook_attempt_failed(first.id, Some(10_000), "HTTP 500", Some(500), 3_000)
        .await
        .unwrap();
    let others: Vec<i64> = claimed
        .iter()
        .filter(|d| d.id != first.id)
        .map(|d| d.id)
        .collect();
    store
        .webhook_delivered(others[0], 204, 3_000)
        .await
        .unwrap();
    store
        .webhook_attempt_failed(others[1], None, "HTTP 410", Some(410), 3_000)
        .await
        .unwrap();
    assert!(
        store
            .claim_webhooks(9_000, 10, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_webhooks(10_000, 10, 30_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first.id, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(again[0].last_status, Some(500));
    store
        .webhook_delivered(first.id, 200, 11_000)
        .await
        .unwrap();
    // A late answer of an earlier attempt changes nothing once it is done.
    store
        .webhook_attempt_failed(first.id, Some(20_000), "late", None, 12_000)
        .await
        .unwrap();
    assert!(
        store
            .claim_webhooks(60_000, 10, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    let delivered = store
        .webhook_deliveries(DeliveryState::Delivered, 10)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0].id, first.id, "newest first");
    assert_eq!(delivered[0].last_status, Some(200));
    let failed = store
        .webhook_deliveries(DeliveryState::Failed, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 410"));
    assert!(
        !store.retry_webhook(first.id, 70_000).await.unwrap(),
        "not failed"
    );
    assert!(store.retry_webhook(failed[0].id, 70_000).await.unwrap());
    assert!(
        store
            .webhook_deliveries(DeliveryState::Failed, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store.claim_webhooks(70_000, 10, 30_000).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (failed[0].id, 1));
}

pub async fn a_batch_moves_by_its_cursor_once_and_stops(store: SharedStore) {
    use concierge::store::{BatchState, BatchStep, NewBatch};
    let new = |id: &str, key: &str, n: usize| NewBatch {
        id: id.to_string(),
        key: key.to_string(),
        service: "orders".to_string(),
        channel: ChannelId::parse("whatsapp").unwrap(),
        template: Some("back_in_stock.fr".to_string()),
        request: "{}".to_string(),
        recipients: (0..n)
            .map(|i| format!("{{\"to\":\"+3361234{i:04}\"}}"))
            .collect(),
        at: 1_000,
    };
    let (batch, replayed) = store
        .create_batch(&new("b1", "orders:k1", 5))
        .await
        .unwrap();
    assert!(!replayed);
    assert_eq!(
        (batch.total, batch.next, batch.state),
        (5, 0, BatchState::Running)
    );
    let (again, replayed) = store
        .create_batch(&new("b2", "orders:k1", 3))
        .await
        .unwrap();
    assert!(replayed);
    assert_eq!(again.id, "b1");
    assert!(store.batch("b2").await.unwrap().is_none());
    let running = store.running_batches().await.unwrap();
    assert_eq!(
        running.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["b1"]
    );
    let first = store.batch_recipients("b1", 0, 2).await.unwrap();
    assert_eq!(
        first,
        ["{\"to\":\"+33612340000\"}", "{\"to\":\"+33612340001\"}"]
    );
    assert_eq!(store.batch_recipients("b1", 4, 10).await.unwrap().len(), 1);
    assert!(store.lease_batch("b1", "me", 2_000, 7_000).await.unwrap());
    assert!(
        !store
            .lease_batch("b1", "other", 3_000, 8_000)
            .await
            .unwrap(),
        "held"
    );
    assert!(
        store
            .lease_batch("b1", "other", 7_001, 12_000)
            .await
            .unwrap(),
        "run out"
    );
    let step = BatchStep {
        from: 0,
        to: 2,
        queued: 1,
        skipped: vec!["opted_out".to_string()],
    };
    assert!(store.advance_batch("b1", &step, 3_000).await.unwrap());
    assert!(
        !store.advance_batch("b1", &step, 3_000).await.unwrap(),
        "the cursor moved on"
    );
    let after = store.batch("b1").await.unwrap().unwrap();
    assert_eq!((after.next, after.queued, after.skipped), (2, 1, 1));
    assert_eq!(after.reasons.get("opted_out"), Some(&1));
    let stopped = store.stop_batch("b1", 4_000).await.unwrap().unwrap();
    assert_eq!(stopped.state, BatchState::Stopped);
    let late = BatchStep {
        from: 2,
        to: 3,
        queued: 1,
        skipped: vec![],
    };
    assert!(
        !store.advance_batch("b1", &late, 5_000).await.unwrap(),
        "stopped"
    );
    assert!(store.running_batches().await.unwrap().is_empty());
    // One worked to its end is done.
    store
        .create_batch(&new("b3", "orders:k3", 2))
        .await
        .unwrap();
    let all = BatchStep {
        from: 0,
        to: 2,
        queued: 2,
        skipped: vec![],
    };
    assert!(store.advance_batch("b3", &all, 6_000).await.unwrap());
    assert_eq!(
        store.batch("b3").await.unwrap().unwrap().state,
        BatchState::Done
    );
    assert!(store.running_batches().await.unwrap().is_empty());
}

/// A conversation's cart and open forms round-trip, replace each other, and stay apart from
/// another conversation's.
pub async fn a_cart_and_its_open_forms_are_kept_with_the_conversation(store: SharedStore) {
    use concierge::domain::Product;
    use concierge::store::{CommerceState, OpenFlow};
    store
        .ingest(&[
            text_event("ana", "c1", "hello"),
            text_event("bob", "c2", "hi"),
        ])
        .await
        .unwrap();
    let ana = store
        .conversation_of(&channel(), &contact("ana"))
        .await
        .unwrap();
    let bob = store
        .conversation_of(&channel(), &contact("bob"))
        .await
        .unwrap();
    assert_eq!(
        store.commerce(&ana).await.unwrap(),
        CommerceState::default()
    );
    let fig = Product {
        id: "BOU-FIGUIER-300".into(),
        name: "Figuier 300 g".into(),
        price: Some("€38.00".into()),
        image: Some("https://cdn.example/fig.jpg".into()),
        available: Some(true),
    };
    let mut state = CommerceState::default();
    state.add(&fig);
    state.add(&fig);
    state.open_flow(OpenFlow {
        token: "flow-1".into(),
        flow: "delivery_address".into(),
        sent_at: 42,
    });
    state.applied_seq = 7;
    store.set_commerce(&ana, &state).await.unwrap();
    let kept = store.commerce(&ana).await.unwrap();
    assert_eq!(kept, state);
    assert_eq!(kept.cart[0].quantity, 2);
    assert_eq!(
        store.commerce(&bob).await.unwrap(),
        CommerceState::default()
    );
    state.remove("BOU-FIGUIER-300");
    store.set_commerce(&ana, &state).await.unwrap();
    assert!(store.commerce(&ana).await.unwrap().cart.is_empty());
}

/// An event the merchant's systems posted is stored as the gateway's (not the customer's),
/// opens no reply window, and is taken once however often it is posted.
pub async fn a_merchant_event_is_the_gateways_and_opens_no_window(store: SharedStore) {
    let first = text_event("ana", "m0", "hello");
    let said_at = first.at;
    store.ingest(&[first]).await.unwrap();
    let conversation = store
        .conversation_of(&channel(), &contact("ana"))
        .await
        .unwrap();
    let event = |at| InboundEvent {
        channel: channel(),
        event_id: EventId::parse("merchant-event:shop:pay-1").unwrap(),
        contact: contact("ana"),
        aliases: Vec::new(),
        at,
        kind: EventKind::Message(InboundMessage {
            platform_id: PlatformMessageId::parse("merchant-event:shop:pay-1").unwrap(),
            content: Content::Event {
                name: "payment.succeeded".into(),
                id: "pay-1".into(),
                service: "shop".into(),
                data: serde_json::json!({ "order": "ML-1" }),
            },
            reply_to: None,
            display_name: None,
            over_budget: None,
        }),
    };
    let outcome = store.ingest(&[event(said_at + 60_000)]).await.unwrap();
    assert_eq!(outcome.accepted, 1);
    assert_eq!(outcome.appended.len(), 1);
    let again = store.ingest(&[event(said_at + 90_000)]).await.unwrap();
    assert_eq!(again.accepted, 0, "{again:?}");
    assert!(again.appended.is_empty());
    let messages = store.messages(&conversation, 0, 10).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].author, Author::System);
    assert_eq!(messages[1].content.kind_name(), "event");
    assert_eq!(
        store.last_inbound_at(&conversation).await.unwrap(),
        Some(said_at),
        "the customer's words, not the event, open the window"
    );
}
