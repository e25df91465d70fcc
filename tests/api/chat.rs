//! The web chat, through its own protocol: POST to the webhook, replies on the page's stream.

use std::time::Duration;

use concierge::orchestrator::faq::FaqIndex;

use crate::helpers::{FAQ, spawn_app, visitor_key};

fn answer_to(question: &str) -> String {
    let index = FaqIndex::parse(FAQ).expect("the shipped FAQ parses");
    index
        .best_match(question)
        .expect("the FAQ has an answer")
        .entry
        .answer
        .clone()
}

#[tokio::test]
async fn a_faq_question_gets_its_answer_on_the_same_stream() {
    let app = spawn_app().await;
    let key = visitor_key("ana");
    let mut stream = app.open_stream(&key).await;

    let response = app
        .post_text(&key, "m-1", "What are your opening hours?")
        .await;
    assert_eq!(response.status(), 200);

    let reply = stream.next().await;
    assert_eq!(reply.direction, "out");
    assert_eq!(reply.author, "bot");
    assert_eq!(reply.text, answer_to("What are your opening hours?"));
    assert!(reply.text.contains("10:30"), "{}", reply.text);
}

#[tokio::test]
async fn a_message_that_matches_nothing_goes_to_the_team_inbox_once() {
    let app = spawn_app().await;
    let key = visitor_key("bob");
    let mut stream = app.open_stream(&key).await;

    app.post_text(&key, "m-1", "Do you sponsor the local football club?")
        .await;
    let reply = stream.next().await;
    assert_eq!(reply.author, "system");
    assert!(reply.text.contains("team"), "{}", reply.text);
    assert!(reply.text.contains("Expected wait"), "{}", reply.text);

    // Without an LLM the thread now waits for a person (a shared team inbox): later messages,
    // FAQ questions too, get no bot reply until a concierge hands the thread back.
    app.post_text(&key, "m-2", "And the rugby club?").await;
    app.post_text(&key, "m-3", "Which payment methods do you accept?")
        .await;
    while let Some(event) = stream.next_within(Duration::from_millis(600)).await {
        assert_ne!(
            event.direction, "out",
            "the bot stays silent while the queue holds the thread: {event:?}"
        );
    }
}

#[tokio::test]
async fn a_misspelt_french_question_finds_the_french_answer() {
    let app = spawn_app().await;
    let key = visitor_key("chloe");
    let mut stream = app.open_stream(&key).await;

    app.post_text(&key, "m-1", "vous etes ouvert le dimanch ?")
        .await;
    let reply = stream.next().await;
    assert_eq!(
        reply.text,
        answer_to("Quels sont vos horaires d'ouverture ?")
    );
    assert!(reply.text.contains("dimanche"), "{}", reply.text);

    app.post_text(&key, "m-2", "quels sont les delais de livrasion")
        .await;
    let reply = stream.next().await;
    assert_eq!(
        reply.text,
        answer_to("Quels sont les délais et frais de livraison ?")
    );
}

#[tokio::test]
async fn the_holding_message_follows_the_customers_language() {
    let app = spawn_app().await;
    let key = visitor_key("denis");
    let mut stream = app.open_stream(&key).await;
    app.post_text(
        &key,
        "m-1",
        "Bonjour, est-ce que vous sponsorisez le club de foot ?",
    )
    .await;
    let reply = stream.next().await;
    assert!(reply.text.contains("équipe"), "{}", reply.text);
}

#[tokio::test]
async fn a_reconnecting_page_replays_what_it_missed_once() {
    let app = spawn_app().await;
    let key = visitor_key("eve");
    // No page is open while the reply is sent.
    app.post_text(&key, "m-1", "Do you offer gift wrapping?")
        .await;
    let conversation = {
        let mut stream = app.open_stream(&key).await;
        let mine = stream.next().await;
        assert_eq!((mine.direction.as_str(), mine.id.as_str()), ("in", "m-1"));
        let reply = match stream.next_within(Duration::from_millis(200)).await {
            Some(reply) => reply,
            // The reply was not sent yet when the stream opened: it comes live.
            None => stream.next().await,
        };
        assert_eq!(reply.text, answer_to("Do you offer gift wrapping?"));
        reply.seq
    };
    // Resuming after the last seen event gives nothing old again.
    let mut resumed = app.open_stream_after(&key, conversation).await;
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn the_chat_page_is_served() {
    let app = spawn_app().await;
    for path in ["/chat", "/chat/web"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert!(body.contains("<title>Test shop</title>"));
        assert!(body.contains("\"channel\":\"web\""));
        // Its script is a file of its own (/assets/chat.js), its settings a JSON data block.
        assert!(body.contains("<script src=\"/assets/chat.js\" defer></script>"));
        assert!(body.contains("<script type=\"application/json\" id=\"settings\">{"));
    }
    let missing = app.client.get(app.url("/chat/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let no_key = app
        .client
        .get(app.url("/chat/web/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
}

#[tokio::test]
async fn two_visitors_may_use_the_same_message_id() {
    let app = spawn_app().await;
    let (a, b) = (visitor_key("same-a"), visitor_key("same-b"));
    let mut stream_a = app.open_stream(&a).await;
    let mut stream_b = app.open_stream(&b).await;
    app.post_text(&a, "1", "Do you sell gift cards?").await;
    app.post_text(&b, "1", "Can I exchange an item?").await;
    assert_eq!(
        stream_a.next().await.text,
        answer_to("Do you sell gift cards?")
    );
    assert_eq!(
        stream_b.next().await.text,
        answer_to("Can I exchange an item?")
    );
}

#[tokio::test]
async fn the_stream_takes_the_key_from_the_pages_cookie() {
    let app = spawn_app().await;
    let key = visitor_key("cookie");
    app.post_text(&key, "c-1", "Do you sell gift cards?").await;
    let response = app
        .client
        .get(app.url("/chat/web/events"))
        .header("cookie", format!("other=1; concierge_chat_web={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let wrong = app
        .client
        .get(app.url("/chat/web/events"))
        .header("cookie", "concierge_chat_web=short")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn the_page_cannot_be_broken_by_its_own_settings() {
    let deployment = crate::helpers::Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\ntitle = \"{{SETTINGS}} & <b>\"\ngreeting = \"</script><img src=x onerror=alert(1)>\"\n",
    )
    .unwrap();
    let app = crate::helpers::spawn_in(deployment, concierge::app::Parts::default()).await;
    let body = app
        .client
        .get(app.url("/chat"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("<img"), "{body}");
    assert!(!body.contains("<b>"), "{body}");
    assert!(
        body.contains("<title>{{SETTINGS}} &amp; &lt;b&gt;</title>"),
        "{body}"
    );
    assert!(body.contains("\\u003c/script\\u003e\\u003cimg"), "{body}");
    // The script file's element and the settings' data block, nothing the settings closed.
    assert_eq!(body.matches("</script>").count(), 2);
}
