//! Sends the webhook outbox: claims what is due, POSTs each delivery signed, and records
//! how it went; a failure is retried with exponential backoff and jitter until the webhook's
//! `retry_for_secs` have passed since the event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{WebhookConfig, signature};
use concierge_domain::{Millis, now_millis};
use concierge_store::{WebhookDelivery, WebhookOutbox};
use concierge_telemetry::Metrics;

/// The longest the worker sleeps without looking at the outbox.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed at once.
const BATCH: usize = 16;
/// The most of a receiver's answer read (for the failure's reason).
const ANSWER_CHARS: usize = 200;

#[derive(Clone)]
pub struct WebhookWorker {
    outbox: Arc<dyn WebhookOutbox>,
    hooks: Arc<HashMap<String, WebhookConfig>>,
    http: reqwest::Client,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl WebhookWorker {
    /// `http` must not follow redirects: a receiver that answers one has not taken the event.
    pub fn new(
        outbox: Arc<dyn WebhookOutbox>,
        hooks: Vec<WebhookConfig>,
        http: reqwest::Client,
        wake: Arc<Notify>,
        metrics: Metrics,
    ) -> Self {
        Self {
            outbox,
            hooks: Arc::new(hooks.into_iter().map(|h| (h.name(), h)).collect()),
            http,
            wake,
            metrics,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let lease_ms = self
            .hooks
            .values()
            .map(|h| h.timeout_secs)
            .max()
            .unwrap_or(10)
            .saturating_add(5)
            .saturating_mul(1000);
        let lease_ms = i64::try_from(lease_ms).unwrap_or(i64::MAX);
        let mut sends = JoinSet::new();
        loop {
            let claimed = match self
                .outbox
                .claim_webhooks(now_millis(), BATCH, lease_ms)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhook outbox");
                    Vec::new()
                }
            };
            let full = claimed.len() == BATCH;
            for delivery in claimed {
                let worker = self.clone();
                sends.spawn(async move { worker.send(delivery).await });
            }
            while sends.try_join_next().is_some() {}
            if full {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
        // Sends in flight finish within their timeout; an unfinished one's lease runs out
        // and it goes again.
        while sends.join_next().await.is_some() {}
    }

    async fn send(&self, delivery: WebhookDelivery) {
        let Some(hook) = self.hooks.get(&delivery.webhook) else {
            // A webhook taken out of the configuration: its deliveries wait, listed as
            // pending, until it comes back or they are given up.
            let later = now_millis() + 3_600_000;
            self.failed(
                &delivery,
                None,
                "the webhook is no longer configured",
                None,
                later,
            )
            .await;
            return;
        };
        let Some(key) = hook.key() else {
            return;
        };
        let timestamp = now_millis() / 1000;
        let body = delivery.payload.clone().into_bytes();
        let sig = signature(&key, &delivery.event_id, timestamp, &body);
        let request = self
            .http
            .post(&hook.url)
            .timeout(Duration::from_secs(hook.timeout_secs))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let status = response.status().as_u16();
                self.metrics.webhook_delivery("delivered");
                if let Err(e) = self
                    .outbox
                    .webhook_delivered(delivery.id, status, now_millis())
                    .await
                {
                    tracing::warn!(error = %e, "a webhook delivery could not be recorded: it will be sent again");
                }
            }
            Ok(response) => {
                let status = response.status();
                let answer: String = response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(ANSWER_CHARS)
                    .collect();
                let why = if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed")
                } else {
                    format!("HTTP {status} {}", answer.trim())
                };
                self.retry(hook, &delivery, &why, Some(status.as_u16()))
                    .await;
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    format!("no answer within {} s", hook.timeout_secs)
                } else {
                    format!("cannot reach the receiver: {e}")
                };
                self.retry(hook, &delivery, &why, None).await;
            }
        }
    }

    /// The next attempt's time, or none once the webhook's `retry_for_secs` are spent.
    async fn retry(
        &self,
        hook: &WebhookConfig,
        delivery: &WebhookDelivery,
        why: &str,
        status: Option<u16>,
    ) {
        let now = now_millis();
        let delay = backoff(hook.backoff_ms, delivery.attempts);
        let give_up = delivery.created_at.saturating_add(
            Millis::try_from(hook.retry_for_secs.saturating_mul(1000)).unwrap_or(Millis::MAX),
        );
        let at = (now + delay <= give_up).then_some(now + delay);
        self.failed(delivery, status, why, at, now).await;
    }

    async fn failed(
        &self,
        delivery: &WebhookDelivery,
        status: Option<u16>,
        why: &str,
        at: Option<Millis>,
        now: Millis,
    ) {
        let outcome = if at.is_some() { "retry" } else { "failed" };
        self.metrics.webhook_delivery(outcome);
        tracing::info!(webhook = %delivery.webhook, event = %delivery.event_id, attempts = delivery.attempts, reason = %why, outcome, "a webhook delivery failed");
        if let Err(e) = self
            .outbox
            .webhook_attempt_failed(delivery.id, at, why, status, now)
            .await
        {
            tracing::warn!(error = %e, "a webhook failure could not be recorded");
        }
    }
}

/// The wait before attempt `attempts + 1`: `base` tripled each time, at most two hours, with
/// a quarter of jitter either way (receivers that failed together are not all retried at once).
fn backoff(base_ms: u64, attempts: u32) -> Millis {
    let base = Millis::try_from(base_ms.max(1)).unwrap_or(5_000);
    let step = base.saturating_mul(3_i64.saturating_pow(attempts.saturating_sub(1).min(20)));
    let capped = step.min(2 * 3_600_000);
    let jitter = rand::rng().random_range(0.75..1.25);
    (capped as f64 * jitter) as Millis
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn the_backoff_grows_threefold_with_jitter_and_stops_at_two_hours() {
        for (attempts, expected) in [(1, 5_000), (2, 15_000), (3, 45_000), (30, 7_200_000)] {
            let wait = backoff(5_000, attempts) as f64;
            assert!(
                wait >= expected as f64 * 0.75 && wait <= expected as f64 * 1.25,
                "{attempts}: {wait}"
            );
        }
    }
}
