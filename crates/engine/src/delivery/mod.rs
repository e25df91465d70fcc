//! The delivery worker: takes due outbox entries, sends each through its channel's adapter,
//! and records the outcome. Transient failures are retried with exponential backoff and
//! jitter, a platform's retry-after is honoured, and a reply still not accepted after a
//! bounded time is marked failed with the reason. Replies of one conversation leave in order.

mod backoff;
mod config;
mod worker;

pub use self::backoff::Backoff;
pub use self::config::DeliveryConfig;
pub use self::worker::DeliveryWorker;
