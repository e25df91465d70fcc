//! The baseline for ingest benchmarks: an axum server whose one handler only answers 200.
//! `cargo run --release --example plain_axum -- 127.0.0.1:8091`

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".to_string());
    let app = axum::Router::new().route(
        "/webhooks/{channel}",
        axum::routing::post(|_body: axum::body::Bytes| async { "ok" }),
    );
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    eprintln!("plain axum on {bind}");
    axum::serve(listener, app).await
}
