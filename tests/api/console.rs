//! The console in a real headless Chromium, driven over WebDriver (chromedriver, spoken to
//! with plain HTTP): sign in, see a handoff appear live, claim it, reply, and the reply
//! reaches the fake WhatsApp API. A screenshot is kept in target/test-artifacts/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! the test says so and passes, unless CONCIERGE_REQUIRE_CHROMIUM=1 (set by `.ci/run`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::agents::{Agents, start};
use crate::fake_llm::text;
use crate::handoff::Api;
use crate::helpers::PATIENCE;
use concierge::domain::ConversationId;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    process: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    /// Chromium's profile (`profile/`) and its temporary files (`tmp/`, its TMPDIR):
    /// removed when the driver drops, after every process that wrote there is gone.
    _scratch: tempfile::TempDir,
}

impl Drop for Driver {
    /// Ends the session first, so chromedriver quits the browser it started (killing only
    /// chromedriver would leave Chromium running); then kills chromedriver's whole process
    /// group (it and every Chromium process it started), so nothing is left even when the
    /// session did not end; the profile and temporary files go with `_scratch` once they are gone.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some(address) = self.base.strip_prefix("http://")
            && let Ok(mut stream) = std::net::TcpStream::connect(address)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // Until the whole answer is in (chromedriver answers once the browser has
                // quit), not until the connection closes: it may keep it open.
                let mut answer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    answer.extend_from_slice(&chunk[..n]);
                    if answered(&answer) {
                        break;
                    }
                }
            }
        }
        kill_group(&mut self.process, self._scratch.path());
    }
}

/// Whether `bytes` hold a whole HTTP answer: its head and `Content-Length` bytes of body.
fn answered(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// Stops a child started as the leader of its own process group, and everything it left:
/// chromedriver first (SIGTERM), then a few seconds for the rest (the browser it started,
/// its crash handlers) to exit by itself, then SIGKILL to whatever is left.
fn kill_group(child: &mut Child, folder: &Path) {
    let group = child.id();
    let kill = |signal: &str, target: String| {
        let _ = Command::new("kill")
            .args([signal, "--", &target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    kill("-TERM", group.to_string());
    let _ = child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !leftovers(group, folder).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    kill("-KILL", format!("-{group}"));
    for pid in leftovers(group, folder) {
        kill("-KILL", pid.to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The running processes (zombies, which an init that does not reap may keep, left out)
/// of process group `group`, or whose command line names `folder`: Chromium's crash
/// handlers start a session of their own, and name the profile folder.
fn leftovers(group: u32, folder: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let folder = folder.to_string_lossy().into_owned();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid pgrp …`; comm may hold spaces, so read after its `)`.
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (state, pgrp) = (*fields.first()?, fields.get(2)?.parse::<u32>().ok()?);
            if state == "Z" {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let names_folder = String::from_utf8_lossy(&cmdline).contains(&folder);
            (pgrp == group || names_folder).then_some(pid)
        })
        .collect()
}

fn find_binary(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Driver {
    pub(crate) async fn start(chromium: &Path, chromedriver: &Path) -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        // Chromium's profile and temporary folders (the `org.chromium.*` ones it makes in
        // TMPDIR), in a folder this driver owns.
        let scratch = tempfile::Builder::new()
            .prefix("concierge-chromium-")
            .tempdir()
            .expect("a folder for Chromium");
        let (profile, tmp) = (scratch.path().join("profile"), scratch.path().join("tmp"));
        for dir in [&profile, &tmp] {
            std::fs::create_dir_all(dir).expect("a folder for Chromium");
        }
        // Its own process group: Chromium, started by chromedriver, is in it too, so the
        // whole group can be killed at the end.
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = client.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--window-size=1400,900".to_string(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let session: Value = client
            .post(format!("{base}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium, "args": args },
                // The console's messages, Content-Security-Policy violations among them.
                "goog:loggingPrefs": { "browser": "ALL" }
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_string();
        Driver {
            process,
            base,
            session,
            client,
            _scratch: scratch,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        let value = answer["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("WebDriver {path}: {error}: {}", value["message"]);
        }
        value
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Runs the next commands in the frame `css` finds (`None`: the top page again).
    pub(crate) async fn frame(&self, css: Option<&str>) {
        let id = match css {
            Some(css) => {
                let mut element = serde_json::Map::new();
                element.insert(ELEMENT.to_string(), Value::String(self.find(css).await));
                Value::Object(element)
            }
            None => Value::Null,
        };
        self.call(reqwest::Method::POST, "/frame", Some(json!({ "id": id })))
            .await;
    }

    /// Clicks the element `css` finds; found again when the page re-rendered it between
    /// the find and the click (a live queue does), a few times at most.
    pub(crate) async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            let url = format!("{}/session/{}/element/{id}/click", self.base, self.session);
            let answer: Value = self
                .client
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match answer["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Some(error) => panic!(
                    "WebDriver click {css}: {error}: {}",
                    answer["value"]["message"]
                ),
            }
        }
        panic!("WebDriver click {css}: the element kept going stale");
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until the script returns true.
    pub(crate) async fn until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.script(script).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self.script("return document.body.innerText").await;
                panic!("the console never showed: {what}\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser console's messages since the last call.
    pub(crate) async fn console_log(&self) -> Vec<String> {
        let log = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await;
        log.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that nothing the page did was refused by its Content-Security-Policy.
    pub(crate) async fn assert_no_csp_violation(&self) {
        let log = self.console_log().await;
        let refused: Vec<_> = log
            .iter()
            .filter(|m| m.contains("Content Security Policy") || m.contains("Refused to"))
            .collect();
        assert!(
            refused.is_empty(),
            "the page broke its policy: {refused:#?}"
        );
    }

    /// Resizes the browser window (the page's viewport follows).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Chromium and chromedriver, when installed; without them a test says why on stderr
/// (`SKIPPED: …`) and passes, unless CONCIERGE_REQUIRE_CHROMIUM=1 (`.ci/run` sets it; the
/// older CONCIERGE_REQUIRE_BROWSER=1 too), where it fails.
pub(crate) fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium = find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let chromedriver = find_binary(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some((chromium, chromedriver)),
        _ => {
            crate::skip::skipped(
                test,
                &["CONCIERGE_REQUIRE_CHROMIUM", "CONCIERGE_REQUIRE_BROWSER"],
                "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            None
        }
    }
}

#[tokio::test]
async fn a_concierge_signs_in_sees_a_handoff_live_claims_it_and_replies() {
    let Some((chromium, chromedriver)) =
        browser("a_concierge_signs_in_sees_a_handoff_live_claims_it_and_replies")
    else {
        return;
    };
    let a = start(
        "openai",
        "[[teams]]\nname = \"support\"\n\n[[concierges]]\nname = \"ana\"\nteams = [\"support\"]\n",
    )
    .await;
    let ana = Api::new(&a, "ana").await;
    let driver = Driver::start(&chromium, &chromedriver).await;

    driver.goto(&a.app.url("/console")).await;
    driver.type_into("#token", &ana.token).await;
    driver.click("#sign-in").await;
    driver
        .until(
            "signed in and live",
            "return !document.getElementById('app').hidden && document.getElementById('connection').textContent.trim() === 'live'",
        )
        .await;

    // A customer asks for a person: the handoff appears without a reload.
    a.llm.script(vec![text(
        r#"{"summary": "Claire asks about engraving a candle for a gift.", "intent": "custom engraving",
            "mood": "calm", "suggested_replies": ["Hello Claire, we can engrave up to 20 characters. What name would you like?"]}"#,
    )]);
    a.whatsapp("wamid.C1", "Can I talk to a person about an engraving?")
        .await;
    let conversation = a.wa_conversation().await;
    let item = format!(".queue-item[data-conversation='{conversation}']");
    driver
        .until(
            "the handoff in the queue",
            &format!("return document.querySelector(\"{item}\") !== null"),
        )
        .await;
    driver.click(&item).await;
    driver
        .until(
            "the thread and its brief",
            "return !document.getElementById('thread').hidden && document.querySelector('button.suggestion') !== null",
        )
        .await;
    driver.click("#claim").await;
    driver
        .until(
            "claimed",
            "return document.getElementById('thread-state').textContent.includes('human')",
        )
        .await;

    // One click puts the suggested reply in the box; send it.
    driver.click("button.suggestion").await;
    driver.click("#send").await;
    let graph = a.graph.clone();
    crate::helpers::eventually("the reply reaches WhatsApp", || {
        let graph = graph.clone();
        async move {
            graph.sends().iter().any(|s| {
                s["text"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("engrave up to 20 characters"))
            })
        }
    })
    .await;
    driver
        .until(
            "the reply in the history",
            "return [...document.querySelectorAll('#history .msg.out')].some(m => m.textContent.includes('engrave up to 20'))",
        )
        .await;
    // Its inline script ran by its hash: nothing was refused on the way.
    driver.assert_no_csp_violation().await;
    let artifact = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/console.png");
    driver.screenshot(&artifact).await;
    assert!(std::fs::metadata(&artifact).unwrap().len() > 10_000);
}

/// What a platform tells beyond words, as a concierge sees it: a cart, a shared contact card
/// and a message the customer deleted, each in its own form in the thread, and a rate-limit
/// fault of the number behind the channel-health button. Screenshots at desktop and phone
/// widths are kept in target/test-artifacts/.
#[tokio::test]
async fn a_concierge_sees_carts_cards_deletions_and_channel_faults() {
    let Some((chromium, chromedriver)) =
        browser("a_concierge_sees_carts_cards_deletions_and_channel_faults")
    else {
        return;
    };
    let (a, ana, conversation) = claimed_by_ana(
        "",
        "wamid.K1",
        "Can I talk to a person about my order?",
        r#"{"summary": "Claire wants to change her order.", "intent": "order change", "mood": "calm", "suggested_replies": []}"#,
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let from = crate::agents::PHONE;
    a.whatsapp_value(json!({ "messages": [
        { "from": from, "id": "wamid.K2", "timestamp": now, "type": "order", "order": {
            "catalog_id": "cat-1", "text": "Gift wrapped, please",
            "product_items": [
                { "product_retailer_id": "BOU-FIGUIER", "quantity": 2, "item_price": 38, "currency": "EUR" },
                { "product_retailer_id": "DIFF-ROSE", "quantity": 1, "item_price": 24.5, "currency": "EUR" }
            ] } },
        { "from": from, "id": "wamid.K3", "timestamp": now, "type": "contacts", "contacts": [
            { "name": { "formatted_name": "Léa Martin" }, "phones": [{ "phone": "+33 6 11 22 33 44" }],
              "emails": [{ "email": "lea@example.com" }] } ] },
        { "from": from, "id": "wamid.K4", "timestamp": now, "type": "revoke",
          "revoke": { "original_message_id": "wamid.K1" } }
    ]}))
    .await;
    a.whatsapp_value(json!({ "errors": [{ "code": 130429, "title": "Rate limit hit",
        "message": "Rate limit hit",
        "error_data": { "details": "Too many messages sent from this phone number in a short period" } }] }))
    .await;

    let driver = signed_in_at(&chromium, &chromedriver, &a, &ana, &conversation).await;
    driver
        .until(
            "the order, the card and the deletion in the thread",
            "return document.querySelector('#history table.order') !== null \
             && document.querySelector('#history .contact-card') !== null \
             && document.querySelector('#history em.deleted') !== null",
        )
        .await;
    let history = driver
        .script("return document.getElementById('history').textContent")
        .await;
    let history = history.as_str().unwrap_or_default();
    for shown in [
        "BOU-FIGUIER",
        "38 EUR",
        "Gift wrapped",
        "Léa Martin",
        "lea@example.com",
        "Deleted by the customer",
    ] {
        assert!(history.contains(shown), "{shown} not in {history}");
    }
    assert!(
        !history.contains("talk to a person about my order"),
        "the deleted message's words are still shown: {history}"
    );
    driver
        .until(
            "the channel-health button",
            "return !document.getElementById('health').hidden",
        )
        .await;
    driver.click("#health").await;
    driver
        .until(
            "the fault in the panel",
            "return document.getElementById('health-list').textContent.includes('130429 Rate limit hit')",
        )
        .await;
    driver.assert_no_csp_violation().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    driver
        .screenshot(&artifacts.join("console-health.png"))
        .await;
    driver.click("#health-close").await;
    driver
        .screenshot(&artifacts.join("console-kinds.png"))
        .await;
    driver.resize(390, 844).await;
    driver
        .screenshot(&artifacts.join("console-kinds-390.png"))
        .await;
}

/// A deployment whose WhatsApp customer asked for a person (`words`, with the LLM's `brief`)
/// and whose concierge ana claimed the thread: the deployment, ana, the conversation.
async fn claimed_by_ana(
    extra: &str,
    wamid: &str,
    words: &str,
    brief: &str,
) -> (Agents, Api, ConversationId) {
    let a = start(
        "openai",
        &format!(
            "[[teams]]\nname = \"support\"\n\n[[concierges]]\nname = \"ana\"\nteams = [\"support\"]\n\n{extra}"
        ),
    )
    .await;
    let ana = Api::new(&a, "ana").await;
    a.llm.script(vec![text(brief)]);
    a.whatsapp(wamid, words).await;
    let conversation = a.wa_conversation().await;
    crate::helpers::eventually("the handoff is queued", || async {
        ana.get(&format!("/conversations/{conversation}")).await.1["conversation"]["state"].as_str()
            == Some("queued")
    })
    .await;
    ana.post(&format!("/conversations/{conversation}/claim"), json!({}))
        .await;
    (a, ana, conversation)
}

/// The console in Chromium, signed in as `concierge`, on `conversation`.
async fn signed_in_at(
    chromium: &Path,
    chromedriver: &Path,
    a: &Agents,
    concierge: &Api,
    conversation: &ConversationId,
) -> Driver {
    let driver = Driver::start(chromium, chromedriver).await;
    driver
        .goto(&a.app.url(&format!("/console#{conversation}")))
        .await;
    driver.type_into("#token", &concierge.token).await;
    driver.click("#sign-in").await;
    driver
}

/// A photo and a voice note from the customer, in the thread as a thumbnail (the original a
/// click away) and an audio player with the note's words under it, read with the
/// concierge's token.
#[tokio::test]
async fn a_concierge_sees_the_customers_photo_and_voice_note() {
    let Some((chromium, chromedriver)) =
        browser("a_concierge_sees_the_customers_photo_and_voice_note")
    else {
        return;
    };
    let transcriber = concierge_testkit::transcriber::FakeTranscriber::start()
        .await
        .unwrap();
    transcriber.script(vec![concierge_testkit::transcriber::Said::Words(
        "The wick broke the first time I lit it.".into(),
    )]);
    let (a, ana, conversation) = claimed_by_ana(
        &format!(
            "[transcription]\nprovider = \"openai_compatible\"\nbase_url = \"{}/v1\"\n",
            transcriber.url
        ),
        "wamid.M1",
        "Can I talk to a person? My candle arrived broken",
        r#"{"summary": "Claire's candle arrived cracked.", "intent": "after-sales", "mood": "upset", "suggested_replies": []}"#,
    )
    .await;
    a.graph
        .serve_media("700000000000020", "image/png", crate::media::png(1200, 900));
    let mut voice = b"OggS\x00\x02".to_vec();
    voice.resize(4096, 0);
    a.graph.serve_media("700000000000021", "audio/ogg", voice);
    a.whatsapp_media(
        "wamid.M2",
        "image",
        "700000000000020",
        Some("the crack near the wick"),
    )
    .await;
    a.whatsapp_media("wamid.M3", "audio", "700000000000021", None)
        .await;
    crate::helpers::eventually("both media are kept", || async {
        let (_, thread) = ana.get(&format!("/conversations/{conversation}")).await;
        thread["messages"].as_array().is_some_and(|m| {
            m.iter()
                .filter(|m| m["content"]["kept"]["state"] == "stored")
                .count()
                == 2
        })
    })
    .await;

    let driver = signed_in_at(&chromium, &chromedriver, &a, &ana, &conversation).await;
    driver
        .until(
            "the photo's thumbnail and the audio player in the thread",
            "const img = document.querySelector('#history img.media-image'); \
             const audio = document.querySelector('#history audio.media-player'); \
             return img !== null && img.complete && img.naturalWidth === 320 \
               && audio !== null && audio.src.startsWith('blob:')",
        )
        .await;
    let history = driver
        .script("return document.getElementById('history').textContent")
        .await;
    let history = history.as_str().unwrap_or_default();
    driver
        .until(
            "the thread's end in view once the photo took its height",
            "const h = document.getElementById('history'); \
             return h.scrollHeight - h.scrollTop - h.clientHeight < 8",
        )
        .await;
    driver
        .until(
            "the photo in the handoff brief",
            "const img = document.querySelector('#brief .brief-photos img'); \
             return img !== null && img.complete && img.naturalWidth === 320",
        )
        .await;
    for shown in [
        "the crack near the wick",
        "image/png · 1200×900",
        "audio/ogg",
        "The wick broke the first time I lit it.",
    ] {
        assert!(history.contains(shown), "{shown} not in {history}");
    }
    driver.assert_no_csp_violation().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    driver
        .screenshot(&artifacts.join("console-media.png"))
        .await;

    // Ana drops a photo on the reply box, sees it waiting with its size, writes its caption
    // and sends it: WhatsApp gets an upload, then an image message by its id.
    driver
        .script(
            "const c = document.createElement('canvas'); c.width = 200; c.height = 150; \
             const g = c.getContext('2d'); g.fillStyle = '#c84'; g.fillRect(0, 0, 200, 150); \
             c.toBlob((b) => { const dt = new DataTransfer(); \
               dt.items.add(new File([b], 'replacement.png', { type: 'image/png' })); \
               document.querySelector('.composer').dispatchEvent(new DragEvent('drop', \
                 { dataTransfer: dt, bubbles: true, cancelable: true })); }, 'image/png'); \
             return true",
        )
        .await;
    driver
        .until(
            "the dropped photo waits beside the reply box",
            "const a = document.getElementById('attachment'); \
             return !a.hidden && a.querySelector('img.attachment-preview') !== null \
               && a.textContent.includes('replacement.png')",
        )
        .await;
    driver
        .type_into("#reply", "Here is the replacement we are sending you")
        .await;
    driver
        .screenshot(&artifacts.join("console-attach.png"))
        .await;
    driver.click("#send").await;
    crate::helpers::eventually("the photo reaches WhatsApp", || async {
        a.graph.sends().iter().any(|s| {
            s["type"] == "image"
                && s["image"]["caption"] == "Here is the replacement we are sending you"
                && s["image"]["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("UPLOAD-"))
        })
    })
    .await;
    let uploads = a.graph.uploads();
    let (_, form) = uploads
        .iter()
        .find(|(path, _)| path.ends_with("/media"))
        .expect("an upload to the Graph API");
    assert_eq!(form.files[0].name.as_deref(), Some("replacement.png"));
    assert!(form.files[0].bytes.starts_with(b"\x89PNG"));
    driver
        .until(
            "the box is clear and the sent photo is in the thread",
            "return document.getElementById('attachment').hidden \
               && document.getElementById('reply').value === '' \
               && [...document.querySelectorAll('#history .msg')].some((m) => \
                    m.textContent.includes('Here is the replacement') \
                    && m.querySelector('img.media-image') !== null)",
        )
        .await;
    driver.assert_no_csp_violation().await;
    driver
        .screenshot(&artifacts.join("console-media-sent.png"))
        .await;
    driver.resize(390, 844).await;
    driver
        .screenshot(&artifacts.join("console-media-390.png"))
        .await;
}
