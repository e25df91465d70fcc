//! `cargo dev demo-shop` as the README runs it, on the shipped data: it serves the catalogue
//! behind its bearer token over real HTTP, and refuses a caller without it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_demo_shop_serves_the_shipped_catalogue_behind_its_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo-shop.json");
    let mut shop = Command::new(env!("CARGO_BIN_EXE_concierge-dev"))
        .args(["demo-shop", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--data", data, "--token", "t0ken"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start concierge-dev demo-shop");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the demo shop did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let products = client
        .get(format!("{base}/products?q=fig"))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("products");
    assert_eq!(products.status(), 200);
    let body = products.text().await.unwrap_or_default();
    assert!(body.to_lowercase().contains("fig"), "{body}");
    let refused = client
        .get(format!("{base}/products?q=fig"))
        .send()
        .await
        .expect("products without a token");
    assert_eq!(refused.status(), 401);
    let _ = shop.kill();
    let _ = shop.wait();
}
