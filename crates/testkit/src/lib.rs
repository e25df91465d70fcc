//! What Concierge's tests, its bench and its chaos run share, so each fake exists once, over
//! real HTTP in the real wire formats: the fake LLM provider ([`llm`], OpenAI and Anthropic,
//! scripted, with latency and fault modes), the fake platform ([`platform`]: the Graph API,
//! the Bot API, Twilio and BlueBubbles, scripted answers and connection-level faults, status
//! callbacks), the demo merchant backend, signed webhooks ([`load`]), and the store suite
//! every backend runs.

pub mod demo_checkout;
pub mod demo_shop;
pub mod llm;
pub mod load;
pub mod moto;
pub mod platform;
pub mod store_suite;
pub mod tokens;
pub mod transcriber;

/// What can stop a fake from serving.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("cannot {0}: {1}")]
    Io(String, std::io::Error),
}

/// Serves `router` on a free loopback port; its base URL.
pub async fn serve(router: axum::Router) -> Result<String, KitError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| KitError::Io("bind a fake server".into(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| KitError::Io("read a fake server's address".into(), e))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}
