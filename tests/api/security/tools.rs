//! Attacks through the merchant tools, end to end (a fake LLM obeying the attacker, a fake
//! merchant recording each request target as it arrived on the wire):
//! - path traversal: a path argument of `.`, `..`, empty, blank-padded dots or fullwidth dots
//!   is refused as an invalid call (the model is told, nothing is requested); `%2e%2e`, `./x`,
//!   `../../admin`, `/`, `\`, `?`, `#` and CRLF are encoded into one segment, and a query
//!   placeholder is encoded as one query value: `..` never reaches `/api/`;
//! - redirects: a merchant's 302 to another origin is never followed (the other server
//!   receives nothing, neither the identity headers nor the tool's `Authorization`) and the
//!   model gets an error, not a body; `follow_redirects = "same-origin"` follows a redirect
//!   to the same origin only;
//! - a placeholder in a tool URL's scheme, userinfo, host or port, and the other new tool and
//!   agent keys' bad values, fail `concierge check` with file, line and key;
//! - tool-call floods: one reply asking for 40 calls, many rounds of calls, or calls nested
//!   in `ask_agent` stop at `max_tool_calls_per_turn` (16): the merchant receives at most
//!   16 calls and the thread goes to the queue with the reason "tool call limit" (on SQLite
//!   and on Redis).

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use concierge::domain::{ConversationId, ThreadState};
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Step, text};
use crate::helpers::{Deployment, TestApp, eventually, http_client, spawn_in, visitor_key};
use crate::redis_server::{TestRedis, redis};

/// What a fake merchant answers to a path: status, headers, body.
type Answer = (u16, Vec<(String, String)>, String);
type Behaviour = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// One request as the merchant received it.
#[derive(Clone, Debug)]
struct Received {
    /// The request target exactly as sent: path and query, nothing decoded or normalized.
    target: String,
    headers: HeaderMap,
}

struct MerchantState {
    received: Mutex<Vec<Received>>,
    behaviour: Behaviour,
}

/// A merchant backend that records every request target it receives.
#[derive(Clone)]
struct Merchant {
    url: String,
    state: Arc<MerchantState>,
}

impl Merchant {
    async fn start(behaviour: Behaviour) -> Merchant {
        let state = Arc::new(MerchantState {
            received: Mutex::new(Vec::new()),
            behaviour,
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Merchant { url, state }
    }

    /// Answers 200 with the target it received.
    async fn echoing() -> Merchant {
        Merchant::start(Arc::new(|target: &str| {
            (200, Vec::new(), json!({ "seen": target }).to_string())
        }))
        .await
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.target).collect()
    }
}

async fn answer(State(state): State<Arc<MerchantState>>, request: Request) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    state.received.lock().unwrap().push(Received {
        target: target.clone(),
        headers: request.headers().clone(),
    });
    let (status, headers, body) = (state.behaviour)(&target);
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response();
    for (name, value) in headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

const ORDERS: &str = "+++\ndescription = \"Knows the stock.\"\ntools = [\"product_stock\"]\n+++\nYou are the stock desk.\n";

/// A gateway whose front desk may call `tools` (declared in `tools_toml`) and ask the stock
/// desk, which may call `product_stock`.
async fn gateway(llm: &FakeLlm, tools: &[&str], tools_toml: &str, extra: &str) -> TestApp {
    gateway_on(None, llm, tools, tools_toml, extra).await
}

/// [`gateway`], its store on `redis` when given (SQLite otherwise).
async fn gateway_on(
    redis: Option<&TestRedis>,
    llm: &FakeLlm,
    tools: &[&str],
    tools_toml: &str,
    extra: &str,
) -> TestApp {
    let main = format!(
        "[llm]\nprovider = \"openai\"\nmodel = \"test-model\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\ntimeout_secs = 5\nmax_retries = 0\n\n[faq]\nthreshold = 0.99\n\n{extra}\n\n{tools_toml}\n",
        llm.url
    );
    let deployment = Deployment::new(&main);
    let list: Vec<String> = tools.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        deployment.path().join("prompts/front_desk.md"),
        format!(
            "+++\ndescription = \"The front desk.\"\nentry = true\ntools = [{}]\nask = [\"orders\"]\n+++\nYou are the front desk.\n",
            list.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(deployment.path().join("prompts/orders.md"), ORDERS).unwrap();
    let Some(redis) = redis else {
        return spawn_in(deployment, concierge::app::Parts::default()).await;
    };
    let client = http_client();
    let overrides = [
        ("CONCIERGE__STORE__URL", redis.url.as_str()),
        ("CONCIERGE__STORE__PREFIX", redis.prefix.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config =
        concierge::config::Config::load_with(&deployment.config_path(), &|_| None, &overrides)
            .unwrap_or_else(|problems| panic!("test config invalid:\n{problems}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = concierge::app::App::start_with(config, listener, concierge::app::Parts::default())
        .await
        .expect("app starts");
    TestApp {
        addr: app.addr,
        app,
        deployment,
        client,
    }
}

fn tool_toml(name: &str, url: &str, arg: &str, extra: &str) -> String {
    format!(
        "[[tools]]\nname = \"{name}\"\ndescription = \"d\"\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer shop-token\" }}\nparameters = {{ type = \"object\", properties = {{ {arg} = {{ type = \"string\" }} }}, required = [\"{arg}\"] }}\n{extra}\n"
    )
}

fn calls(calls: &[(&str, Value)]) -> Step {
    Step::Tools(
        calls
            .iter()
            .map(|(name, args)| (name.to_string(), args.clone()))
            .collect(),
    )
}

/// The tool results the model was given in its `n`th request, in call order.
fn tool_results(llm: &FakeLlm, n: usize) -> Vec<String> {
    llm.calls()[n].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

async fn until_llm_calls(llm: &FakeLlm, n: usize) {
    let llm = llm.clone();
    eventually("the LLM is called again", || {
        let llm = llm.clone();
        async move { llm.calls().len() >= n }
    })
    .await;
}

#[tokio::test]
async fn a_path_argument_never_changes_the_urls_shape() {
    let shop = Merchant::echoing().await;
    let llm = FakeLlm::start().await;
    let tools = [
        tool_toml(
            "product_stock",
            &format!("{}/api/products/{{sku}}", shop.url),
            "sku",
            "",
        ),
        tool_toml(
            "order_detail",
            &format!("{}/api/orders/{{order_id}}/detail", shop.url),
            "order_id",
            "",
        ),
        tool_toml(
            "search",
            &format!("{}/api/search?q={{q}}", shop.url),
            "q",
            "",
        ),
    ]
    .join("\n");
    let app = gateway(
        &llm,
        &["product_stock", "order_detail", "search"],
        &tools,
        "[agents]\nmax_tool_calls_per_turn = 40\n",
    )
    .await;
    // (tool, argument, value, the target the merchant must receive; None: refused).
    let cases: Vec<(&str, &str, &str, Option<&str>)> = vec![
        ("product_stock", "sku", ".", None),
        ("product_stock", "sku", "..", None),
        ("product_stock", "sku", "", None),
        ("product_stock", "sku", " .. ", None),
        ("product_stock", "sku", "\u{FF0E}", None),
        ("product_stock", "sku", "\u{FF0E}\u{FF0E}", None),
        ("order_detail", "order_id", ".", None),
        ("order_detail", "order_id", "..", None),
        (
            "product_stock",
            "sku",
            "%2e%2e",
            Some("/api/products/%252e%252e"),
        ),
        ("product_stock", "sku", "./x", Some("/api/products/%2E%2Fx")),
        (
            "product_stock",
            "sku",
            "../../admin",
            Some("/api/products/%2E%2E%2F%2E%2E%2Fadmin"),
        ),
        ("product_stock", "sku", "/", Some("/api/products/%2F")),
        ("product_stock", "sku", "\\", Some("/api/products/%5C")),
        ("product_stock", "sku", "?", Some("/api/products/%3F")),
        ("product_stock", "sku", "#", Some("/api/products/%23")),
        (
            "product_stock",
            "sku",
            "a\r\nX-Injected: 1",
            Some("/api/products/a%0D%0AX-Injected%3A%201"),
        ),
        (
            "search",
            "q",
            "../a&b=c#d",
            Some("/api/search?q=%2E%2E%2Fa%26b%3Dc%23d"),
        ),
    ];
    let step: Vec<(&str, Value)> = cases
        .iter()
        .map(|(tool, arg, value, _)| (*tool, json!({ *arg: value })))
        .collect();
    llm.script(vec![calls(&step), text("Let me check that for you.")]);
    let key = visitor_key("traversal");
    assert_eq!(
        app.post_text(&key, "t1", "stock of ..?").await.status(),
        200
    );
    until_llm_calls(&llm, 2).await;

    let expected: Vec<&str> = cases.iter().filter_map(|c| c.3).collect();
    let mut targets = shop.targets();
    targets.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(targets, sorted, "only the encoded values are requested");
    for target in &targets {
        let rest = target
            .strip_prefix("/api/products/")
            .or_else(|| target.strip_prefix("/api/search?"));
        assert!(
            rest.is_some_and(|r| !r.is_empty() && !r.contains('/')),
            "{target} left the tool's path"
        );
    }
    // The model is told which calls were refused, and why; the others got the answer.
    let results = tool_results(&llm, 1);
    assert_eq!(results.len(), cases.len());
    for ((tool, _, value, target), result) in cases.iter().zip(&results) {
        match target {
            None => assert!(
                result.contains("must be a real value"),
                "{tool} {value:?}: {result}"
            ),
            Some(target) => assert!(
                result.contains(&json!({ "seen": target }).to_string()),
                "{tool} {value:?}: {result}"
            ),
        }
    }
}

/// A merchant whose `/api/products/away` redirects to `elsewhere`, `/api/products/here` to
/// its own `/api/products/final`.
async fn redirecting_merchant(elsewhere: &Merchant) -> Merchant {
    let stolen = format!("{}/stolen", elsewhere.url);
    Merchant::start(Arc::new(move |target: &str| match target {
        "/api/products/away" => (
            302,
            vec![("location".to_string(), stolen.clone())],
            json!({ "moved": true }).to_string(),
        ),
        "/api/products/here" => (
            302,
            vec![("location".to_string(), "/api/products/final".to_string())],
            json!({ "moved": true }).to_string(),
        ),
        "/api/products/final" => (200, Vec::new(), json!({ "stock": 7 }).to_string()),
        _ => (
            404,
            Vec::new(),
            json!({ "error": "no such product" }).to_string(),
        ),
    }))
    .await
}

fn elsewhere_merchant() -> Behaviour {
    Arc::new(|_: &str| {
        (
            200,
            Vec::new(),
            json!({ "secret": "from-elsewhere" }).to_string(),
        )
    })
}

#[tokio::test]
async fn a_tool_call_follows_no_redirect_by_default() {
    let elsewhere = Merchant::start(elsewhere_merchant()).await;
    let shop = redirecting_merchant(&elsewhere).await;
    let llm = FakeLlm::start().await;
    let tools = tool_toml(
        "product_stock",
        &format!("{}/api/products/{{sku}}", shop.url),
        "sku",
        "",
    );
    let app = gateway(&llm, &["product_stock"], &tools, "").await;
    llm.script(vec![
        calls(&[
            ("product_stock", json!({ "sku": "away" })),
            ("product_stock", json!({ "sku": "here" })),
        ]),
        text("I could not check the stock."),
    ]);
    let key = visitor_key("redirect-none");
    assert_eq!(app.post_text(&key, "r1", "stock?").await.status(), 200);
    until_llm_calls(&llm, 2).await;

    assert!(
        elsewhere.received().is_empty(),
        "another origin got {:?}",
        elsewhere.received()
    );
    assert_eq!(
        shop.targets(),
        vec!["/api/products/away", "/api/products/here"],
        "not even a same-origin redirect is followed"
    );
    for result in tool_results(&llm, 1) {
        assert!(result.contains("redirect (302)"), "{result}");
        assert!(!result.contains("moved"), "the redirect's body: {result}");
        assert!(!result.contains("from-elsewhere"), "{result}");
    }
}

#[tokio::test]
async fn same_origin_redirects_are_followed_only_to_the_same_origin() {
    let elsewhere = Merchant::start(elsewhere_merchant()).await;
    let shop = redirecting_merchant(&elsewhere).await;
    let llm = FakeLlm::start().await;
    let tools = tool_toml(
        "product_stock",
        &format!("{}/api/products/{{sku}}", shop.url),
        "sku",
        "follow_redirects = \"same-origin\"",
    );
    let app = gateway(&llm, &["product_stock"], &tools, "").await;
    llm.script(vec![
        calls(&[
            ("product_stock", json!({ "sku": "away" })),
            ("product_stock", json!({ "sku": "here" })),
        ]),
        text("We have 7."),
    ]);
    let key = visitor_key("redirect-same");
    assert_eq!(app.post_text(&key, "r1", "stock?").await.status(), 200);
    until_llm_calls(&llm, 2).await;

    // Another port is another origin: nothing reaches it, identity headers least of all.
    assert!(
        elsewhere.received().is_empty(),
        "another origin got {:?}",
        elsewhere.received()
    );
    let received = shop.received();
    let targets: Vec<&str> = received.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        vec![
            "/api/products/away",
            "/api/products/here",
            "/api/products/final"
        ]
    );
    let last = &received[2];
    assert_eq!(
        last.headers.get("authorization").unwrap(),
        "Bearer shop-token"
    );
    assert_eq!(last.headers.get("x-concierge-channel").unwrap(), "web");
    let results = tool_results(&llm, 1);
    assert!(results[0].contains("redirect (302)"), "{}", results[0]);
    assert!(!results[0].contains("from-elsewhere"), "{}", results[0]);
    assert_eq!(results[1], json!({ "stock": 7 }).to_string());
}

/// Waits for the conversation's handoff, and checks it is queued with `reason`.
async fn assert_queued_with(app: &TestApp, conversation: &ConversationId, reason: &str) {
    let store = app.store().clone();
    eventually("the thread is handed off", || {
        let store = store.clone();
        let conversation = conversation.clone();
        async move { !store.handoffs(&conversation).await.unwrap().is_empty() }
    })
    .await;
    let handoffs = app.store().handoffs(conversation).await.unwrap();
    assert_eq!(handoffs.len(), 1, "{handoffs:?}");
    assert_eq!(handoffs[0].reason, reason);
    assert_eq!(
        app.store().thread_state(conversation).await.unwrap(),
        ThreadState::Queued {
            handoff: handoffs[0].id.clone()
        }
    );
    let notes = app.store().notes(conversation).await.unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.body.contains("more than the limit of 16")),
        "{notes:?}"
    );
}

async fn flood(name: &str, script: Vec<Step>) -> (TestApp, Merchant, ConversationId) {
    flood_on(None, name, script).await
}

async fn flood_on(
    redis: Option<&TestRedis>,
    name: &str,
    script: Vec<Step>,
) -> (TestApp, Merchant, ConversationId) {
    let shop = Merchant::echoing().await;
    let llm = FakeLlm::start().await;
    let tools = tool_toml(
        "product_stock",
        &format!("{}/api/products/{{sku}}", shop.url),
        "sku",
        "",
    );
    let app = gateway_on(redis, &llm, &["product_stock"], &tools, "").await;
    llm.script(script);
    let key = visitor_key(name);
    assert_eq!(app.post_text(&key, "f1", "stock?").await.status(), 200);
    let conversation = app.visitor_conversation(&key).await;
    assert_queued_with(&app, &conversation, "tool call limit").await;
    (app, shop, conversation)
}

fn stock_calls(from: usize, n: usize) -> Vec<(&'static str, Value)> {
    (from..from + n)
        .map(|i| ("product_stock", json!({ "sku": format!("S{i}") })))
        .collect()
}

#[tokio::test]
async fn forty_tool_calls_in_one_reply_reach_the_merchant_not_at_all() {
    let (_app, shop, _) = flood("forty", vec![calls(&stock_calls(0, 40))]).await;
    assert!(shop.received().is_empty(), "{:?}", shop.targets());
}

#[tokio::test]
async fn forty_tool_calls_in_one_reply_are_refused_on_redis_too() {
    let Some(redis) = redis("forty_tool_calls_in_one_reply_are_refused_on_redis_too") else {
        return;
    };
    let (_app, shop, _) = flood_on(
        Some(&redis),
        "forty-redis",
        vec![calls(&stock_calls(0, 40))],
    )
    .await;
    assert!(shop.received().is_empty(), "{:?}", shop.targets());
}

#[tokio::test]
async fn tool_calls_over_many_rounds_stop_at_the_limit() {
    let rounds: Vec<Step> = (0..6).map(|r| calls(&stock_calls(r * 5, 5))).collect();
    let (_app, shop, _) = flood("rounds", rounds).await;
    // Three rounds of five ran; the fourth would have made 20.
    assert_eq!(shop.received().len(), 15, "{:?}", shop.targets());
}

#[tokio::test]
async fn tool_calls_of_an_agent_asked_count_toward_the_same_limit() {
    let mut front = stock_calls(0, 10);
    front.push((
        "ask_agent",
        json!({ "agent": "orders", "question": "stock of everything?" }),
    ));
    let (_app, shop, _) = flood("nested", vec![calls(&front), calls(&stock_calls(100, 10))]).await;
    assert_eq!(shop.received().len(), 10, "{:?}", shop.targets());
}

fn check(dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_concierge"))
        .arg("check")
        .arg("--config")
        .arg(dir.join("concierge.toml"))
        .output()
        .expect("run concierge check");
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_refuses_a_placeholder_outside_the_path_and_the_query() {
    let bad = [
        ("http://{host}:18094/stolen", "host"),
        ("http://shop:{host}/x", "port"),
        ("{host}://shop/x", "scheme"),
        ("http://{host}@shop/x", "userinfo"),
    ];
    let tools: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, (url, _))| tool_toml(&format!("t{i}"), url, "host", ""))
        .collect();
    let deployment = Deployment::new(&tools.join("\n"));
    let text = std::fs::read_to_string(deployment.config_path()).unwrap();
    let stderr = check(deployment.path());
    for (i, (url, part)) in bad.iter().enumerate() {
        let line = text
            .lines()
            .position(|l| l == format!("url = \"{url}\""))
            .unwrap()
            + 1;
        let expected = format!(
            "concierge.toml:{line}: key `tools[{i}].url`: `{url}` has a placeholder in its {part}"
        );
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
}

#[test]
fn check_refuses_bad_redirect_and_tool_call_limit_values() {
    let tool = tool_toml(
        "stock",
        "http://shop/api/{sku}",
        "sku",
        "follow_redirects = \"all\"",
    );
    let deployment = Deployment::new(&format!("[agents]\nmax_tool_calls_per_turn = 0\n\n{tool}"));
    let text = std::fs::read_to_string(deployment.config_path()).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l == needle).unwrap() + 1;
    let stderr = check(deployment.path());
    let redirects = format!(
        "concierge.toml:{}: key `tools[0].follow_redirects`",
        line_of("follow_redirects = \"all\"")
    );
    assert!(stderr.contains(&redirects), "{redirects}\n{stderr}");
    let limit = format!(
        "concierge.toml:{}: key `agents.max_tool_calls_per_turn`: must be above 0",
        line_of("max_tool_calls_per_turn = 0")
    );
    assert!(stderr.contains(&limit), "{limit}\n{stderr}");
}
