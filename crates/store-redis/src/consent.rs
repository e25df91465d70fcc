//! The consent ledger on Redis: a list of JSON records per channel and contact, each key
//! recorded once (a Lua script: the check and the append are one step).

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::{Value, json};

use super::{RedisStore, corrupt, status};
use concierge_domain::{ChannelId, ContactId};
use concierge_store::{ConsentRecord, Consents, NewConsent, Purpose, StoreError};

#[async_trait]
impl Consents for RedisStore {
    async fn record_consent(&self, c: &NewConsent) -> Result<bool, StoreError> {
        let record = json!({
            "purpose": c.purpose.name(), "granted": c.granted, "source": c.source,
            "proof": c.proof, "at": c.at, "key": c.key,
        });
        let answer = self
            .op(
                "record_consent",
                json!({
                    "channel": c.channel.as_str(), "contact": c.contact.as_str(),
                    "key": c.key, "record": record.to_string(),
                }),
            )
            .await?;
        Ok(status(&answer) == "1")
    }

    async fn consents(
        &self,
        channel: &ChannelId,
        contact: &ContactId,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let mut conn = self.conn();
        let items: Vec<String> = conn
            .lrange(
                self.key(&["consents", channel.as_str(), contact.as_str()]),
                0,
                -1,
            )
            .await?;
        items
            .iter()
            .map(|item| {
                let v: Value = serde_json::from_str(item)
                    .map_err(|e| corrupt(format!("a consent record: {e}")))?;
                let purpose = v["purpose"]
                    .as_str()
                    .and_then(Purpose::parse)
                    .ok_or_else(|| {
                        corrupt(format!("a consent record's purpose: {}", v["purpose"]))
                    })?;
                Ok(ConsentRecord {
                    seq: v["seq"].as_i64().unwrap_or_default(),
                    consent: NewConsent {
                        channel: channel.clone(),
                        contact: contact.clone(),
                        purpose,
                        granted: v["granted"].as_bool().unwrap_or(false),
                        source: v["source"].as_str().unwrap_or_default().to_string(),
                        proof: v["proof"].as_str().map(str::to_string),
                        at: v["at"].as_i64().unwrap_or_default(),
                        key: v["key"].as_str().map(str::to_string),
                    },
                })
            })
            .collect()
    }
}
