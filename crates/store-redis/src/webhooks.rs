//! The webhook outbox on Redis: a hash a delivery, a due set read by leases, done ones kept
//! a week (Lua scripts: each step is one atomic operation).

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{RedisStore, corrupt, status};
use concierge_domain::Millis;
use concierge_store::{DeliveryState, NewDelivery, StoreError, WebhookDelivery, WebhookOutbox};

fn parse(item: &str) -> Result<WebhookDelivery, StoreError> {
    let v: Value =
        serde_json::from_str(item).map_err(|e| corrupt(format!("a webhook delivery: {e}")))?;
    let text = |name: &str| {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| corrupt(format!("a webhook delivery without its {name}")))
    };
    let state = text("state")?;
    Ok(WebhookDelivery {
        id: v["id"].as_i64().unwrap_or_default(),
        webhook: text("webhook")?,
        event_id: text("event_id")?,
        event_type: text("event_type")?,
        payload: text("payload")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(format!("a webhook delivery state `{state}`")))?,
        attempts: v["attempts"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_default(),
        created_at: v["created_at"].as_i64().unwrap_or_default(),
        next_at: v["next_at"].as_i64().unwrap_or_default(),
        last_error: v["last_error"].as_str().map(str::to_string),
        last_status: v["last_status"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok()),
        done_at: v["done_at"].as_i64(),
    })
}

#[async_trait]
impl WebhookOutbox for RedisStore {
    async fn enqueue_webhooks(&self, deliveries: &[NewDelivery]) -> Result<usize, StoreError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let deliveries: Vec<Value> = deliveries
            .iter()
            .map(|d| {
                json!({
                    "webhook": d.webhook, "event_id": d.event_id, "event_type": d.event_type,
                    "payload": d.payload, "at": d.at,
                })
            })
            .collect();
        let answer = self
            .op("webhook_enqueue", json!({ "deliveries": deliveries }))
            .await?;
        status(&answer).parse().map_err(corrupt)
    }

    async fn claim_webhooks(
        &self,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let answer = self
            .op(
                "webhook_claim",
                json!({ "now": now, "limit": limit, "lease_ms": lease_ms }),
            )
            .await?;
        answer.iter().map(|item| parse(item)).collect()
    }

    async fn webhook_delivered(&self, id: i64, status: u16, now: Millis) -> Result<(), StoreError> {
        self.op(
            "webhook_finish",
            json!({ "id": id, "outcome": "delivered", "status": status, "now": now }),
        )
        .await?;
        Ok(())
    }

    async fn webhook_attempt_failed(
        &self,
        id: i64,
        at: Option<Millis>,
        error: &str,
        status: Option<u16>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let outcome = if at.is_some() { "retry" } else { "failed" };
        self.op(
            "webhook_finish",
            json!({ "id": id, "outcome": outcome, "at": at, "error": error, "status": status, "now": now }),
        )
        .await?;
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let answer = self
            .op(
                "webhook_list",
                json!({ "state": state.name(), "limit": limit.max(1) }),
            )
            .await?;
        answer.iter().map(|item| parse(item)).collect()
    }

    async fn retry_webhook(&self, id: i64, now: Millis) -> Result<bool, StoreError> {
        let answer = self
            .op("webhook_retry", json!({ "id": id, "now": now }))
            .await?;
        Ok(status(&answer) == "1")
    }
}
