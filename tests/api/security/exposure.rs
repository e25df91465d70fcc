//! What the gateway shows to whoever asks: `/metrics` read anonymously on the public port
//! (it names channels, tools, the provider and the model); `/chat` framed by any site, and
//! the pages running injected inline script (their policy allows only files of their own
//! origin, served `nosniff` and revalidated, so no stale script runs after an upgrade); the
//! handoff brief showing concierges the LLM provider's own error text, internal URL included.

use std::path::Path;
use std::process::Command;

use concierge::handoff::access;
use serde_json::json;

use crate::agents::start;
use crate::console::{Driver, browser};
use crate::fake_llm::Step;
use crate::handoff::Api;
use crate::helpers::{Deployment, METRICS_TOKEN, TestApp, eventually, spawn_in, visitor_key};

/// One team and its concierge.
const ANA: &str =
    "[[teams]]\nname = \"support\"\n\n[[concierges]]\nname = \"ana\"\nteams = [\"support\"]\n";

/// The test deployments serve `/metrics` behind a token; these tests set it up themselves.
fn without_metrics_token(deployment: &Deployment, server_keys: &str) {
    let path = deployment.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let line = format!("metrics_token = \"{METRICS_TOKEN}\"\n");
    assert!(text.contains(&line), "{text}");
    std::fs::write(&path, text.replacen(&line, server_keys, 1)).unwrap();
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_port_by_default() {
    let deployment = Deployment::new("");
    without_metrics_token(&deployment, "");
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    // Something to count, so a served page would name the channel.
    app.post_text(&visitor_key("count"), "c1", "Do you sell gift cards?")
        .await;
    assert_eq!(app.app.metrics_addr, None);
    let (status, body) = get(&app.url("/metrics"), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("concierge_"), "{body}");
    let (status, body) = get(
        &app.url("/metrics"),
        Some(&format!("Bearer {METRICS_TOKEN}")),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(get(&app.url("/healthz"), None).await.0, 200);
}

#[tokio::test]
async fn with_a_token_metrics_need_it_on_the_public_port() {
    // The test deployment sets `metrics_token`.
    let app = crate::helpers::spawn_app().await;
    let url = app.url("/metrics");
    for wrong in [
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some("Bearer wrong-token".to_string()),
        Some(format!(
            "Bearer {}",
            &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]
        )),
        Some(format!("Bearer {METRICS_TOKEN}x")),
        Some(format!("Basic {METRICS_TOKEN}")),
        Some(METRICS_TOKEN.to_string()),
    ] {
        let (status, body) = get(&url, wrong.as_deref()).await;
        assert_eq!(status, 401, "{wrong:?}: {body}");
        assert!(!body.contains("concierge_"), "{body}");
    }
    let (status, body) = get(&url, Some(&format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(status, 200);
    assert!(body.contains("concierge_"), "{body}");
}

/// Two gateways on one machine, each with `/metrics` on a port of its own picked by the
/// system: both start, each serves its metrics there, and neither on its public port.
#[tokio::test]
async fn with_metrics_bind_metrics_are_served_there_and_not_on_the_public_port() {
    let mut apps: Vec<TestApp> = Vec::new();
    for keys in [
        "metrics_bind = \"127.0.0.1:0\"\n",
        &format!("metrics_bind = \"127.0.0.1:0\"\nmetrics_token = \"{METRICS_TOKEN}\"\n"),
    ] {
        let deployment = Deployment::new("");
        without_metrics_token(&deployment, keys);
        apps.push(spawn_in(deployment, concierge::app::Parts::default()).await);
    }
    let (open, guarded) = (&apps[0], &apps[1]);
    let open_at = open.app.metrics_addr.expect("a metrics address");
    let guarded_at = guarded.app.metrics_addr.expect("a metrics address");
    assert_ne!(open_at, guarded_at);
    assert_ne!(open_at.port(), 0);

    for app in &apps {
        let bearer = format!("Bearer {METRICS_TOKEN}");
        for token in [None, Some(bearer.as_str())] {
            let (status, body) = get(&app.url("/metrics"), token).await;
            assert_eq!(status, 404, "{body}");
        }
    }
    let (status, body) = get(&format!("http://{open_at}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("concierge_"), "{body}");
    // Only /metrics there: not the chat, the API or the console.
    for path in ["/chat", "/api/v1/me", "/console", "/webhooks/web"] {
        assert_eq!(get(&format!("http://{open_at}{path}"), None).await.0, 404);
    }
    // A token set as well applies on that port.
    let guarded_url = format!("http://{guarded_at}/metrics");
    assert_eq!(get(&guarded_url, None).await.0, 401);
    assert_eq!(get(&guarded_url, Some("Bearer nope")).await.0, 401);
    let (status, body) = get(&guarded_url, Some(&format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(status, 200);
    assert!(body.contains("concierge_"), "{body}");
}

#[test]
fn check_names_file_line_and_key_of_a_bad_metrics_bind_or_embed_origin() {
    let deployment = Deployment::new("");
    without_metrics_token(
        &deployment,
        "metrics_bind = \"localhost:metrics\"\nmetrics_token = \"\"\n",
    );
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\nembed_origins = [\"https://shop.example\", \"https://shop.example/chat; script-src *\"]\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .arg("check")
        .arg("--config")
        .arg(deployment.config_path())
        .output()
        .expect("run concierge check");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("concierge.toml:4: key `server.metrics_bind`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("concierge.toml:5: key `server.metrics_token`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("web.toml:2: key `embed_origins`"),
        "{stderr}"
    );
    assert!(stderr.contains("https://shop.example/chat"), "{stderr}");
}

/// The page's policy, checked to run only script and style of its own origin and nothing
/// inline (the page has no inline script, style or handler); each file it links is served
/// with its type, `nosniff`, and `no-cache` with an ETag that revalidates to a 304. Returns
/// the directives by name.
async fn strict_policy(app: &TestApp, path: &str) -> std::collections::BTreeMap<String, String> {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response
        .headers()
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"))
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        response.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
    let html = response.text().await.unwrap();
    assert!(!policy.contains("unsafe-"), "{path}: {policy}");
    assert!(!policy.contains("sha256-"), "{path}: {policy}");
    let directives: std::collections::BTreeMap<String, String> = policy
        .split(';')
        .filter_map(|d| d.trim().split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for (name, value) in [
        ("default-src", "'self'"),
        ("script-src", "'self'"),
        ("style-src", "'self'"),
        ("connect-src", "'self'"),
        ("object-src", "'none'"),
        ("base-uri", "'none'"),
    ] {
        assert_eq!(directives[name], value, "{policy}");
    }
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "{html}"
    );
    assert!(
        !html.contains(" style=") && !html.contains(" onclick="),
        "{html}"
    );
    let linked: Vec<&str> = html
        .split("\"/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(linked.len(), 2, "{path} links {linked:?}");
    for name in linked {
        let url = app.url(&format!("/assets/{name}"));
        let asset = app.client.get(&url).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{name}");
        let headers = asset.headers().clone();
        let kind = if name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(headers["content-type"], kind, "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(headers["cache-control"], "no-cache", "{name}");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
        assert!(!asset.text().await.unwrap().is_empty());
        let again = app
            .client
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{name}");
        assert_eq!(again.headers()["etag"], etag.as_str());
    }
    let missing = app
        .client
        .get(app.url("/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    directives
}

#[tokio::test]
async fn the_chat_page_runs_only_its_own_script_and_only_the_configured_sites_frame_it() {
    let app = crate::helpers::spawn_app().await;
    for path in ["/chat", "/chat/web"] {
        let policy = strict_policy(&app, path).await;
        assert_eq!(policy["frame-ancestors"], "'self'");
    }

    let deployment = Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\ntitle = \"Shop\"\nembed_origins = [\"https://shop.example\", \"http://localhost:3000\"]\n",
    )
    .unwrap();
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    let policy = strict_policy(&app, "/chat/web").await;
    assert_eq!(
        policy["frame-ancestors"],
        "'self' https://shop.example http://localhost:3000"
    );
}

#[tokio::test]
async fn the_console_runs_only_its_own_script_and_no_site_frames_it() {
    let app = crate::helpers::spawn_app().await;
    let policy = strict_policy(&app, "/console").await;
    assert_eq!(policy["frame-ancestors"], "'none'");
}

/// The provider's error body names an internal address: concierges are told the kind of
/// failure, through the brief, the notes and the queue, never the provider's words.
#[tokio::test]
async fn an_llm_failure_reaches_the_brief_as_its_kind_not_the_providers_words() {
    let a = start("openai", ANA).await;
    a.llm.script(vec![Step::StatusBody(
        401,
        json!({ "error": { "message": "invalid key for upstream http://10.1.2.3/internal (node gpu-7)", "type": "auth" } }),
    )]);
    let ana = Api::new(&a, "ana").await;
    a.whatsapp("wamid.X1", "Where is my candle?").await;
    let conversation = a.wa_conversation().await;
    let path = format!("/conversations/{conversation}");
    eventually("the thread and its brief", || async {
        let (status, body) = ana.get(&path).await;
        status == 200 && !body["brief"].is_null()
    })
    .await;
    let (_, thread) = ana.get(&path).await;
    let (_, queue) = ana.get("/queue").await;
    let (_, audit) = ana.get("/audit").await;
    for shown in [&thread, &queue, &audit] {
        let text = shown.to_string();
        assert!(!text.contains("10.1.2.3"), "{text}");
        assert!(!text.contains("gpu-7"), "{text}");
        assert!(!text.contains("invalid key"), "{text}");
    }
    let tried = thread["brief"]["tried"].to_string();
    assert!(
        tried.contains("the language model refused the request (HTTP 401)"),
        "{thread}"
    );
}

/// The web chat in a real headless Chromium, under its policy: the page's script runs (the
/// stream connects, the greeting shows), a question typed in gets its answer, and the
/// browser refused nothing. Screenshots of the chat and the console at desktop and phone
/// widths are kept in target/test-artifacts/.
#[tokio::test]
async fn the_chat_and_the_console_work_under_their_policy_in_a_browser() {
    let Some((chromium, chromedriver)) =
        browser("the_chat_and_the_console_work_under_their_policy_in_a_browser")
    else {
        return;
    };
    let deployment = Deployment::new(ANA);
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        "kind = \"webchat\"\ntitle = \"Maison Test\"\ngreeting = \"Hello! How can we help?\"\n",
    )
    .unwrap();
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    let driver = Driver::start(&chromium, &chromedriver).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");

    driver.goto(&app.url("/chat/web")).await;
    driver
        .until(
            "the greeting and the live stream",
            "return document.getElementById('status').textContent === 'online' && document.querySelector('#log .msg.out') !== null && document.querySelector('#log .msg.out').textContent.includes('How can we help')",
        )
        .await;
    driver.type_into("#text", "Do you sell gift cards?").await;
    driver.click("#form button[type=submit]").await;
    driver
        .until(
            "the question and its answer",
            "return document.querySelectorAll('#log .msg.out').length >= 2 && document.querySelector('#log .msg.in') !== null && !document.querySelector('#log .msg.in').classList.contains('failed')",
        )
        .await;
    driver.assert_no_csp_violation().await;
    for (width, height, name) in [(1280, 800, "desktop"), (390, 844, "phone")] {
        driver.resize(width, height).await;
        let shot = artifacts.join(format!("chat-{name}.png"));
        driver.screenshot(&shot).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 5_000);
    }

    // The visitor asks for a person: the thread reaches the console's queue.
    driver.type_into("#text", "Can I talk to a person?").await;
    driver.click("#form button[type=submit]").await;
    let token = access::issue(app.store().as_ref(), "ana").await.unwrap();
    driver.resize(1280, 800).await;
    driver.goto(&app.url("/console")).await;
    driver.type_into("#token", &token).await;
    driver.click("#sign-in").await;
    driver
        .until(
            "signed in and live",
            "return !document.getElementById('app').hidden && document.getElementById('connection').textContent.trim() === 'live'",
        )
        .await;
    driver
        .until(
            "the handoff in the queue",
            "return document.querySelector('.queue-item') !== null",
        )
        .await;
    // The queue re-renders on every live event: find and click it in one step, so the
    // element clicked is never one a re-render just replaced.
    driver
        .until(
            "the thread opened",
            "const item = document.querySelector('.queue-item'); if (!item) return false; item.click(); return true;",
        )
        .await;
    driver
        .until(
            "the thread",
            "return !document.getElementById('thread').hidden && document.getElementById('history').textContent.includes('talk to a person')",
        )
        .await;
    driver.assert_no_csp_violation().await;
    for (width, height, name) in [(1280, 800, "desktop"), (390, 844, "phone")] {
        driver.resize(width, height).await;
        let shot = artifacts.join(format!("console-{name}.png"));
        driver.screenshot(&shot).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 5_000);
    }
}

/// A shop's page on another site frames the chat (its origin is in `embed_origins`): the
/// browser lets it, and the framed chat works, live stream included, although a
/// `SameSite=Strict` cookie is not sent to a cross-site frame.
#[tokio::test]
async fn the_chat_framed_by_an_allowed_site_works_there() {
    let Some((chromium, chromedriver)) = browser("the_chat_framed_by_an_allowed_site_works_there")
    else {
        return;
    };
    // The shop: 127.0.0.1 is another site than localhost, where the chat is opened.
    let shop = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_origin = format!("http://{}", shop.local_addr().unwrap());
    let deployment = Deployment::new("");
    std::fs::write(
        deployment.path().join("channels/web.toml"),
        format!(
            "kind = \"webchat\"\ntitle = \"Maison Test\"\ngreeting = \"Hello! How can we help?\"\nembed_origins = [\"{shop_origin}\"]\n"
        ),
    )
    .unwrap();
    let app = spawn_in(deployment, concierge::app::Parts::default()).await;
    let chat = format!("http://localhost:{}/chat/web", app.addr.port());
    let page = format!(
        "<!doctype html><title>Shop</title><iframe id=\"chat\" src=\"{chat}\" width=\"400\" height=\"600\"></iframe>"
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(shop, router).await });

    let driver = Driver::start(&chromium, &chromedriver).await;
    driver.goto(&format!("{shop_origin}/")).await;
    driver
        .until(
            "the frame",
            "return document.getElementById('chat') !== null",
        )
        .await;
    driver.frame(Some("#chat")).await;
    driver
        .until(
            "the framed chat, live",
            "return document.getElementById('status') !== null && document.getElementById('status').textContent === 'online' && document.querySelector('#log .msg.out') !== null",
        )
        .await;
    driver.type_into("#text", "Do you sell gift cards?").await;
    driver.click("#form button[type=submit]").await;
    driver
        .until(
            "the answer through the live stream",
            "return document.querySelectorAll('#log .msg.out').length >= 2",
        )
        .await;
    driver.frame(None).await;
    driver.assert_no_csp_violation().await;
}

/// A body the API cannot read (not JSON, not the JSON type, a field missing) is answered
/// with axum's status and the API's problem body, as the OpenAPI document says.
#[tokio::test]
async fn a_body_the_api_cannot_read_gets_the_problem_body() {
    let app = spawn_in(
        Deployment::new(super::TEAMS),
        concierge::app::Parts::default(),
    )
    .await;
    let token = concierge::handoff::access::issue(app.store().as_ref(), "ana")
        .await
        .unwrap();
    let url = app.url(&format!(
        "/api/v1/conversations/{}/messages",
        "0".repeat(32)
    ));
    for (content_type, body, status) in [
        ("application/json", "{not json", 400),
        ("application/json", r#"{"text": 42}"#, 422),
        ("application/json", "{}", 422),
        ("text/plain", "hello", 415),
    ] {
        let response = app
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(kind.starts_with("application/json"), "{body}: {kind}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}: {problem}"
        );
    }
}
