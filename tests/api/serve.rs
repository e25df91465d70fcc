//! `concierge serve` as a newcomer starts it: the real binary prints the web chat, the
//! console and `/metrics` (or that it is not served) with the port it really bound, each of
//! those addresses answers, and `/` sends a browser to the chat.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::helpers::{Deployment, METRICS_TOKEN, PATIENCE, http_client, spawn_app};

/// A gateway process, killed when dropped.
struct Served {
    child: Child,
    /// What it printed on stdout before it said where `/metrics` is.
    lines: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(config: &std::path::Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_concierge"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start concierge serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let last = line.trim_start().starts_with("metrics:");
                lines.push(line);
                if last {
                    let _ = tx.send(lines.clone());
                }
            }
            // Ended before the metrics line: hand over what came.
            let _ = tx.send(lines);
        });
        let lines = rx.recv_timeout(PATIENCE).unwrap_or_default();
        Served { child, lines }
    }

    /// The URL on the line starting with `label`.
    fn url(&self, label: &str) -> String {
        let line = self
            .lines
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {:#?}", self.lines));
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line}"))
            .to_string()
    }

    fn line(&self, label: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {:#?}", self.lines))
    }
}

fn no_redirects() -> reqwest::Client {
    http_client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

#[tokio::test]
async fn serve_prints_the_chat_console_and_metrics_addresses_it_really_bound() {
    // Port 0: the printed port is the one the kernel gave, not the configured one.
    let deployment = Deployment::new("");
    let served = Served::start(&deployment.config_path());
    let chat = served.url("web chat:");
    let console = served.url("console:");
    let metrics = served.url("metrics:");
    assert!(chat.ends_with("/chat"), "{chat}");
    assert!(!chat.contains(":0/"), "the bound port, not 0: {chat}");
    assert!(console.ends_with("/console"), "{console}");
    assert!(metrics.ends_with("/metrics"), "{metrics}");
    assert!(
        served.line("metrics:").contains("metrics_token"),
        "{:#?}",
        served.lines
    );

    let client = no_redirects();
    for url in [&chat, &console] {
        let response = client.get(url.as_str()).send().await.expect("GET");
        assert_eq!(response.status(), 200, "{url}");
    }
    let response = client
        .get(metrics.as_str())
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let root = chat.trim_end_matches("/chat").to_string() + "/";
    let response = client.get(root.as_str()).send().await.expect("GET /");
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], "/chat");
}

#[tokio::test]
async fn serve_says_where_metrics_is_on_a_port_of_its_own_or_that_it_is_not_served() {
    let deployment = Deployment::new("");
    let main = "[server]\nbind = \"127.0.0.1:0\"\nmetrics_bind = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite:data/test.db\"\n";
    std::fs::write(deployment.config_path(), main).expect("concierge.toml");
    let served = Served::start(&deployment.config_path());
    let chat = served.url("web chat:");
    let metrics = served.url("metrics:");
    assert!(served.line("metrics:").contains("metrics_bind"));
    assert_ne!(
        chat.trim_end_matches("/chat"),
        metrics.trim_end_matches("/metrics"),
        "its own port"
    );
    let client = no_redirects();
    let response = client.get(metrics.as_str()).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    let public = chat.replace("/chat", "/metrics");
    let response = client.get(public.as_str()).send().await.expect("GET");
    assert_eq!(response.status(), 404, "not on the public port");
    drop(served);

    let main = "[server]\nbind = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite:data/test.db\"\n";
    std::fs::write(deployment.config_path(), main).expect("concierge.toml");
    let served = Served::start(&deployment.config_path());
    let line = served.line("metrics:");
    assert!(line.contains("not served"), "{line}");
    assert!(!line.contains("http://"), "{line}");
    let public = served.url("web chat:").replace("/chat", "/metrics");
    let response = client.get(public.as_str()).send().await.expect("GET");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_root_redirects_to_the_chat() {
    let app = spawn_app().await;
    let client = no_redirects();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let response = client
            .request(method.clone(), app.url("/"))
            .send()
            .await
            .expect("request /");
        assert_eq!(response.status(), 307, "{method}");
        assert_eq!(response.headers()["location"], "/chat", "{method}");
    }
    // Followed, as a browser does, it lands on the chat page.
    let page = app.client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.url().path().ends_with("/chat"));
}
