//! Webhooks out: what happens in conversations, pushed to the merchant's other systems.
//! Each event is kept in the store's webhook outbox once per subscribed webhook (so a crash
//! loses nothing and instances share the work), then POSTed, signed the Standard Webhooks
//! way, retried with backoff and jitter until the receiver takes it or `retry_for_secs` pass.

mod config;
mod emit;
mod sign;
mod worker;

pub use self::config::{EVENTS, WebhookConfig, check};
pub use self::emit::{OutEvent, Webhooks};
pub use self::sign::signature;
pub use self::worker::WebhookWorker;
