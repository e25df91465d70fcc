//! Customers' media, end to end: a photo sent on WhatsApp is downloaded from the fake Graph
//! API after the webhook is answered, kept by its bytes, shown to the fake LLM as an image
//! fitted to the size models read, and served to a concierge who may see the conversation
//! (and to nobody else); media that is too large, not allowed, gone or failing is a clear
//! line in the thread, counted, and the turn still answers.

use std::io::Cursor;

use base64::Engine;
use serde_json::{Value, json};

use crate::agents::{Agents, PHONE, start};
use crate::fake_llm::text;
use crate::handoff::{Api, PEOPLE};
use crate::helpers::{eventually, metric};
use concierge::domain::{Content, KeptMedia};

/// Turns wait for their media as long as a loaded test machine may need (the default 5 s
/// is for people, not for a debug build decoding photos beside a whole test suite).
const PATIENT: &str = "[media]\nwait_ms = 60000\n";

/// A PNG of `width`×`height`: a gradient, so it does not compress to nothing.
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

pub(crate) fn now_secs() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

impl Agents {
    /// A WhatsApp media message of `kind` (`image`, `audio`, `document`…) naming media `id`.
    pub(crate) async fn whatsapp_media(
        &self,
        wamid: &str,
        kind: &str,
        id: &str,
        caption: Option<&str>,
    ) {
        let mime = match kind {
            "audio" => "audio/ogg; codecs=opus",
            "document" => "application/pdf",
            _ => "image/png",
        };
        let mut media = json!({ "id": id, "mime_type": mime, "sha256": "x" });
        if let Some(caption) = caption {
            media["caption"] = json!(caption);
        }
        let mut message =
            json!({ "from": PHONE, "id": wamid, "timestamp": now_secs(), "type": kind });
        message[kind] = media;
        self.whatsapp_value(json!({
            "contacts": [{ "profile": { "name": "Claire" }, "wa_id": PHONE }],
            "messages": [message],
        }))
        .await;
    }

    /// The last user message of the `n`th LLM call (0 the first), as sent.
    fn user_message(&self, n: usize) -> Value {
        let calls = self.llm.calls();
        calls[n].body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// The text parts of a message's content, joined.
fn texts(message: &Value) -> String {
    crate::fake_llm::content_text(&message["content"])
}

/// The stored media outcome of the conversation's customer messages, oldest first.
async fn kept(a: &Agents) -> Vec<Option<KeptMedia>> {
    let conversation = a.wa_conversation().await;
    a.app
        .store()
        .recent_messages(&conversation, 50)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.content {
            Content::Media { kept, .. } => Some(kept),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_whatsapp_photo_reaches_the_llm_fitted_and_the_concierge_sees_it() {
    let a = start("openai", &format!("{PEOPLE}\n{PATIENT}")).await;
    let photo = png(2400, 1200);
    a.graph
        .serve_media("700000000000007", "image/png", photo.clone());
    a.llm.script(vec![text(
        "I can see the crack near the wick; I'm handing you to our after-sales team.",
    )]);
    a.whatsapp_media(
        "wamid.PHOTO1",
        "image",
        "700000000000007",
        Some("the crack near the wick"),
    )
    .await;
    eventually("the LLM is asked", || async { a.llm.count() > 0 }).await;

    // The model gets the caption, what the photo is, and the photo itself, fitted.
    let user = a.user_message(0);
    let words = texts(&user);
    assert!(words.contains("the crack near the wick"), "{words}");
    assert!(words.contains("image/png, 2400×1200"), "{words}");
    let parts = user["content"].as_array().expect("a message of parts");
    let url = parts
        .iter()
        .find_map(|p| p["image_url"]["url"].as_str())
        .expect("an image part");
    let data = url
        .strip_prefix("data:image/jpeg;base64,")
        .expect("a JPEG data URL");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(dimensions(&sent), (1568, 784), "fitted to 1568 px");
    eventually("the reply is sent", || async {
        a.graph.sends().iter().any(|s| {
            s["text"]["body"]
                .as_str()
                .is_some_and(|t| t.contains("crack"))
        })
    })
    .await;
    assert_eq!(a.graph.media_downloads("700000000000007"), 1);

    // The message says what was kept.
    let Some(Some(KeptMedia::Stored(stored))) = kept(&a).await.pop() else {
        panic!("the photo is kept: {:?}", kept(&a).await);
    };
    assert_eq!(stored.mime, "image/png");
    assert_eq!((stored.width, stored.height), (Some(2400), Some(1200)));
    assert_eq!(stored.bytes, photo.len() as u64);

    // A concierge of the conversation's team sees it in the thread and opens it.
    let ana = Api::new(&a, "ana").await;
    let conversation = a.wa_conversation().await;
    let (status, thread) = ana.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(status, 200);
    let shown = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "media")
        .expect("the photo in the thread")
        .clone();
    assert_eq!(shown["content"]["kept"]["state"], "stored");
    assert_eq!(shown["content"]["kept"]["id"], stored.id.as_str());
    assert_eq!(shown["content"]["caption"], "the crack near the wick");
    assert!(
        shown["content"].get("media").is_none(),
        "the platform's reference stays inside"
    );
    let client = reqwest::Client::new();
    let url = a.app.url(&format!("/api/v1/media/{}", stored.id));
    let got = client
        .get(&url)
        .bearer_auth(&ana.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let headers = got.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-disposition"], "inline");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), photo.as_slice());
    let thumb = client
        .get(format!("{url}?variant=thumb"))
        .bearer_auth(&ana.token)
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    assert_eq!(dimensions(&thumb.bytes().await.unwrap()), (320, 160));

    // Nobody else: another team's concierge, no token, an id that is not one.
    let carl = Api::new(&a, "carl").await;
    let refused = client
        .get(&url)
        .bearer_auth(&carl.token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    for bad in ["../../etc/passwd", "ABCDEF", &"0".repeat(64)] {
        let response = client
            .get(a.app.url(&format!("/api/v1/media/{bad}")))
            .bearer_auth(&ana.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
    }
    let boss = Api::new(&a, "boss").await;
    let admin = client
        .get(&url)
        .bearer_auth(&boss.token)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "an admin sees every team");

    let metrics = a.app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "concierge_media_downloads_total",
            r#"channel="whatsapp",outcome="kept""#
        ),
        1.0
    );
    println!(
        "media: a {}×{} PNG of {} bytes reached the LLM as a 1568×784 JPEG of {} bytes",
        2400,
        1200,
        photo.len(),
        sent.len()
    );
}

#[tokio::test]
async fn anthropic_gets_a_small_photo_as_it_was_sent() {
    let a = start("anthropic", PATIENT).await;
    let photo = png(800, 600);
    a.graph
        .serve_media("700000000000008", "image/png", photo.clone());
    a.llm.script(vec![text("Lovely colour.")]);
    a.whatsapp_media("wamid.PHOTO2", "image", "700000000000008", None)
        .await;
    eventually("the LLM is asked", || async { a.llm.count() > 0 }).await;
    let user = a.user_message(0);
    let image = user["content"]
        .as_array()
        .expect("a message of parts")
        .iter()
        .find(|p| p["type"] == "image")
        .expect("an image block")
        .clone();
    assert_eq!(image["source"]["type"], "base64");
    assert_eq!(image["source"]["media_type"], "image/png");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(image["source"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, photo, "a photo that fits goes as it came");
}

#[tokio::test]
async fn media_that_cannot_be_kept_is_a_clear_line_and_the_turn_still_answers() {
    let a = start("openai", PATIENT).await;
    a.llm.echo();
    // A web page claiming to be a photo; a photo whose first two downloads fail; media the
    // platform no longer has.
    a.graph.serve_media(
        "700000000000010",
        "image/jpeg",
        b"<html><script>alert(1)</script></html>".to_vec(),
    );
    a.graph
        .serve_media("700000000000011", "image/png", png(40, 30));
    a.graph.fail_media("700000000000011", 2);
    a.whatsapp_media("wamid.BAD1", "image", "700000000000010", None)
        .await;
    eventually("the first is answered", || async { a.llm.count() >= 1 }).await;
    a.whatsapp_media("wamid.BAD2", "image", "700000000000011", None)
        .await;
    eventually("the second is answered", || async { a.llm.count() >= 2 }).await;
    a.whatsapp_media("wamid.BAD3", "document", "missing", Some("invoice.pdf"))
        .await;
    eventually("the third is answered", || async { a.llm.count() >= 3 }).await;

    let first = texts(&a.user_message(0));
    assert!(
        first.contains("could not be read: files of this kind are not kept"),
        "{first}"
    );
    let second = a.user_message(1);
    assert!(
        second["content"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["type"] == "image_url")),
        "kept after the platform failed twice: {second}"
    );
    assert_eq!(a.graph.media_downloads("700000000000011"), 3);
    let third = texts(&a.user_message(2));
    assert!(third.contains("no such media"), "{third}");
    assert!(third.contains("invoice.pdf"), "{third}");

    let outcomes = kept(&a).await;
    assert!(
        matches!(&outcomes[0], Some(KeptMedia::Unavailable { reason }) if reason.contains("not kept")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Some(KeptMedia::Stored(s)) if s.width == Some(40)),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Some(KeptMedia::Unavailable { .. })),
        "{outcomes:?}"
    );
    eventually("three replies are sent", || async {
        a.graph.sends().len() >= 3
    })
    .await;
    let metrics = a.app.metrics().await;
    for (outcome, count) in [("not_allowed", 1.0), ("kept", 1.0), ("gone", 1.0)] {
        assert_eq!(
            metric(
                &metrics,
                "concierge_media_downloads_total",
                &format!(r#"channel="whatsapp",outcome="{outcome}""#)
            ),
            count,
            "{outcome}"
        );
    }
}

/// An Ogg voice note of `size` bytes, different for each `seed`.
fn voice(seed: u8, size: usize) -> Vec<u8> {
    let mut bytes = b"OggS\x00\x02".to_vec();
    bytes.resize(size, seed);
    bytes
}

#[tokio::test]
async fn a_voice_note_is_answered_in_its_words_and_a_failed_transcription_is_said() {
    let transcriber = concierge_testkit::transcriber::FakeTranscriber::start()
        .await
        .unwrap();
    let a = start(
        "openai",
        &format!(
            "{PATIENT}\n[transcription]\nprovider = \"openai_compatible\"\nbase_url = \"{}/v1\"\nmodel = \"whisper-test\"\napi_key = \"transcribe-test-key\"\n",
            transcriber.url
        ),
    )
    .await;
    a.llm.echo();
    use concierge_testkit::transcriber::Said;
    transcriber.script(vec![
        Said::Words("Bonjour, ma bougie est arrivée cassée, je voudrais un échange.".into()),
        Said::Status(500),
        Said::Garbage,
        Said::Words("Can I talk to a real person please".into()),
    ]);
    let notes: Vec<Vec<u8>> = (1..=4).map(|n| voice(n, 3000 + usize::from(n))).collect();
    for (n, note) in notes.iter().enumerate() {
        a.graph
            .serve_media(&format!("70000000000003{n}"), "audio/ogg", note.clone());
    }
    for n in 0..3 {
        a.whatsapp_media(
            &format!("wamid.VOICE{n}"),
            "audio",
            &format!("70000000000003{n}"),
            None,
        )
        .await;
        eventually("the voice note is answered", || async {
            a.llm.count() > n as u64
        })
        .await;
    }

    // The server got the audio as uploaded, with the model and the key.
    let heard = transcriber.heard();
    assert_eq!(heard.len(), 3);
    assert_eq!(heard[0].path, "/v1/audio/transcriptions");
    assert!(
        heard[0].carries(&notes[0]),
        "the audio bytes, as downloaded"
    );
    assert_eq!(heard[0].field("model").as_deref(), Some("whisper-test"));
    assert_eq!(
        heard[0].headers["authorization"],
        "Bearer transcribe-test-key"
    );
    assert!(
        String::from_utf8_lossy(&heard[0].body).contains("filename=\"voice.ogg\""),
        "a file name the server tells the format by"
    );
    // The agent answers the words; a failure is said, and the turn still answers.
    let first = texts(&a.user_message(0));
    assert!(
        first.contains("its words:] Bonjour, ma bougie est arrivée cassée"),
        "{first}"
    );
    let second = texts(&a.user_message(1));
    assert!(
        second.contains("could not be put into words: the transcription server answered 500"),
        "{second}"
    );
    let third = texts(&a.user_message(2));
    assert!(third.contains("answer could not be read"), "{third}");
    let outcomes = kept(&a).await;
    assert!(
        matches!(&outcomes[0], Some(KeptMedia::Stored(s)) if s.transcript.as_deref().is_some_and(|t| t.ends_with("échange."))),
        "{outcomes:?}"
    );

    // Words that ask for a person hand the thread over, as if typed.
    a.whatsapp_media("wamid.VOICE3", "audio", "700000000000033", None)
        .await;
    let conversation = a.wa_conversation().await;
    eventually(
        "the spoken request for a person queues the thread",
        || async {
            matches!(
                a.app.store().thread_state(&conversation).await,
                Ok(concierge::domain::ThreadState::Queued { .. })
            )
        },
    )
    .await;
    let metrics = a.app.metrics().await;
    for (outcome, count) in [("ok", 2.0), ("status", 1.0), ("malformed", 1.0)] {
        assert_eq!(
            metric(
                &metrics,
                "concierge_transcriptions_total",
                &format!(r#"outcome="{outcome}""#)
            ),
            count,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn a_slow_download_does_not_keep_the_customer_waiting_and_is_recorded_when_done() {
    let a = start("openai", "[media]\nwait_ms = 200\n").await;
    a.llm.echo();
    a.graph
        .serve_media("700000000000040", "image/png", png(64, 48));
    a.graph
        .slow_media("700000000000040", std::time::Duration::from_millis(1500));
    a.whatsapp_media(
        "wamid.SLOW1",
        "image",
        "700000000000040",
        Some("is this normal?"),
    )
    .await;
    eventually("the turn is answered", || async { a.llm.count() >= 1 }).await;
    let words = texts(&a.user_message(0));
    assert!(words.contains("still downloading"), "{words}");
    assert!(words.contains("is this normal?"), "{words}");
    // The download went on and is recorded on the message, for the console and the next turn.
    eventually("the photo is kept after the turn", || async {
        matches!(kept(&a).await.first(), Some(Some(KeptMedia::Stored(_))))
    })
    .await;
    let metrics = a.app.metrics().await;
    assert_eq!(metric(&metrics, "concierge_media_late_total", ""), 1.0);
    assert_eq!(a.graph.media_downloads("700000000000040"), 1);
}

#[tokio::test]
async fn a_pdf_reaches_openai_as_a_file_with_its_name() {
    let a = start("openai", PATIENT).await;
    let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec();
    a.graph
        .serve_media("700000000000050", "application/pdf", pdf.clone());
    a.llm.script(vec![text("Thanks, I have your invoice.")]);
    a.whatsapp_media(
        "wamid.PDF1",
        "document",
        "700000000000050",
        Some("invoice-ML-10421.pdf"),
    )
    .await;
    eventually("the LLM is asked", || async { a.llm.count() > 0 }).await;
    let user = a.user_message(0);
    let file = user["content"]
        .as_array()
        .expect("a message of parts")
        .iter()
        .find(|p| p["type"] == "file")
        .expect("a file part")
        .clone();
    assert_eq!(file["file"]["filename"], "invoice-ML-10421.pdf");
    let data = file["file"]["file_data"]
        .as_str()
        .unwrap()
        .strip_prefix("data:application/pdf;base64,")
        .expect("a PDF data URL");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        pdf
    );
    assert!(texts(&user).contains("application/pdf"), "{user}");
}
