//! Notification batches: one template to up to 10,000 recipients. The batch is kept whole
//! when accepted; a worker then queues its recipients in order, at `[notifications]
//! batch_per_second` per channel, each as its own notification with a key made of the
//! batch and the recipient's place (so a batch resumed after a crash queues nobody twice and
//! skips nobody), and the cursor moves only past recipients queued or refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::{Notifier, NotifyError, NotifyRequest, Recipient, TemplateUse};
use concierge_domain::now_millis;
use concierge_store::batch::MAX_RECIPIENTS;
use concierge_store::{Batch, BatchStep, Batches, NewBatch, Purpose, StoreError};

/// The longest the worker sleeps without looking at the running batches.
const TICK: Duration = Duration::from_millis(100);
/// How long a worker holds a batch without renewing.
const LEASE_MS: i64 = 10_000;
/// Recipients queued in one step at most.
const STEP: u32 = 200;

/// `[notifications]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Recipients of batches queued per second on one channel: below the channel's own
    /// `messages_per_second`, so customers' replies still find room, and within what the
    /// number's quality tier allows.
    pub batch_per_second: f64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            batch_per_second: 20.0,
        }
    }
}

/// Every mistake in `[notifications]`, with its key.
pub fn check(config: &NotificationsConfig) -> Vec<(String, String)> {
    if config.batch_per_second.is_finite() && config.batch_per_second > 0.0 {
        Vec::new()
    } else {
        vec![(
            "notifications.batch_per_second".to_string(),
            "must be above 0".to_string(),
        )]
    }
}

/// Who a notification goes to, as the API says it: a phone number or a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum To {
    Phone(String),
    Contact {
        /// The contact's id on the channel (a Telegram chat id, a web chat visitor).
        contact: String,
    },
}

impl To {
    pub fn recipient(&self) -> Recipient {
        match self {
            To::Phone(phone) => Recipient::Phone(phone.clone()),
            To::Contact { contact } => Recipient::Contact(contact.clone()),
        }
    }
}

/// Parameters by name (`{"order": "ML-10421"}`), or in order for a numbered template
/// (`["ML-10421", "Colissimo"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Params {
    Named(BTreeMap<String, serde_json::Value>),
    Numbered(Vec<serde_json::Value>),
}

impl Params {
    /// By name; numbered ones as `"1"`, `"2"`…; values that are not strings as JSON.
    pub fn by_name(&self) -> BTreeMap<String, String> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self {
            Params::Named(named) => named.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            Params::Numbered(values) => values
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1).to_string(), text(v)))
                .collect(),
        }
    }
}

/// A template as the API names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateBody {
    /// The template's name in the catalogue (`templates/<name>.<language>.toml`).
    pub name: String,
    pub language: String,
    /// The parameters (for a batch: shared by every recipient, each recipient's own added).
    #[serde(default)]
    pub params: Option<Params>,
}

/// One recipient of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchRecipient {
    #[schema(value_type = Object)]
    pub to: To,
    /// This recipient's parameters, over the batch's.
    #[serde(default)]
    pub params: Option<Params>,
    /// What the agents should know if this customer answers, over the batch's.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

/// A batch as asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchBody {
    pub channel: String,
    pub template: TemplateBody,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// 1 to 10,000 recipients.
    pub recipients: Vec<BatchRecipient>,
}

/// What the batch keeps of the request, for every recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shared {
    template: TemplateBody,
    context: Option<serde_json::Value>,
}

impl Notifier {
    /// Checks a batch (the channel, the template, the number of recipients) and keeps it,
    /// running; the same key again answers the first batch.
    pub async fn start_batch(
        &self,
        batches: &dyn Batches,
        service: &str,
        key: Option<String>,
        body: BatchBody,
    ) -> Result<(Batch, bool), NotifyError> {
        let n = body.recipients.len();
        if n == 0 || n > MAX_RECIPIENTS {
            return Err(NotifyError::Invalid(format!(
                "a batch has 1 to {MAX_RECIPIENTS} recipients, not {n}"
            )));
        }
        let channel = concierge_domain::ChannelId::parse(body.channel.as_str())
            .ok()
            .filter(|c| self.channels.adapter(c).is_some())
            .ok_or_else(|| NotifyError::UnknownChannel(body.channel.clone()))?;
        let wanted = TemplateUse {
            name: body.template.name.clone(),
            language: body.template.language.clone(),
            params: BTreeMap::new(),
        };
        let spec = self.template(&wanted)?;
        let key = super::scoped_key(service, key.as_deref());
        let mut recipients = Vec::with_capacity(n);
        for r in &body.recipients {
            recipients
                .push(serde_json::to_string(r).map_err(|e| NotifyError::Invalid(e.to_string()))?);
        }
        let shared = Shared {
            template: body.template.clone(),
            context: body.context.clone(),
        };
        let batch = NewBatch {
            id: uuid::Uuid::now_v7().simple().to_string(),
            key,
            service: service.to_string(),
            channel,
            template: Some(spec.key()),
            request: serde_json::to_string(&shared)
                .map_err(|e| NotifyError::Invalid(e.to_string()))?,
            recipients,
            at: now_millis(),
        };
        Ok(batches.create_batch(&batch).await?)
    }
}

/// Merges the batch's part with one recipient's into the request of its notification.
fn request_for(batch: &Batch, index: u32, recipient: &str) -> Result<NotifyRequest, String> {
    let shared: Shared =
        serde_json::from_str(&batch.request).map_err(|e| format!("the batch's request: {e}"))?;
    let r: BatchRecipient =
        serde_json::from_str(recipient).map_err(|e| format!("recipient {index}: {e}"))?;
    let mut params = shared
        .template
        .params
        .as_ref()
        .map(Params::by_name)
        .unwrap_or_default();
    params.extend(r.params.as_ref().map(Params::by_name).unwrap_or_default());
    let context = match (shared.context, r.context) {
        (Some(serde_json::Value::Object(mut all)), Some(serde_json::Value::Object(own))) => {
            all.extend(own);
            Some(serde_json::Value::Object(all))
        }
        (shared, own) => own.or(shared),
    };
    Ok(NotifyRequest {
        service: batch.service.clone(),
        key: Some(format!("batch:{}:{index}", batch.id)),
        channel: batch.channel.to_string(),
        to: r.to.recipient(),
        template: Some(TemplateUse {
            name: shared.template.name,
            language: shared.template.language,
            params,
        }),
        text: None,
        purpose: None::<Purpose>,
        context,
    })
}

/// Works the running batches, paced per channel.
pub struct BatchWorker {
    batches: Arc<dyn Batches>,
    notifier: Notifier,
    per_second: f64,
    outbox_wake: Arc<Notify>,
    owner: String,
}

impl BatchWorker {
    pub fn new(
        batches: Arc<dyn Batches>,
        notifier: Notifier,
        config: &NotificationsConfig,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        Self {
            batches,
            notifier,
            per_second: config.batch_per_second,
            outbox_wake,
            owner: uuid::Uuid::now_v7().simple().to_string(),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        // Recipients each channel may still queue now (a bucket of a second's worth).
        let mut allowance: HashMap<String, f64> = HashMap::new();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
            }
            let elapsed = last.elapsed().as_secs_f64();
            last = Instant::now();
            for bucket in allowance.values_mut() {
                *bucket = (*bucket + elapsed * self.per_second).min(self.per_second.max(1.0));
            }
            let running = match self.batches.running_batches().await {
                Ok(running) => running,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the running batches");
                    continue;
                }
            };
            for batch in running {
                if shutdown.is_cancelled() {
                    break;
                }
                let bucket = allowance.entry(batch.channel.to_string()).or_insert(0.0);
                let n = (bucket.floor() as u32).min(STEP);
                if n == 0 {
                    continue;
                }
                match self.step(&batch, n).await {
                    Ok(done) => *bucket -= f64::from(done),
                    Err(e) => {
                        tracing::warn!(error = %e, batch = %batch.id, "a batch step failed; it goes on later")
                    }
                }
            }
        }
    }

    /// Queues up to `n` recipients of `batch`; how many were worked.
    async fn step(&self, batch: &Batch, n: u32) -> Result<u32, StoreError> {
        let now = now_millis();
        if !self
            .batches
            .lease_batch(&batch.id, &self.owner, now, now + LEASE_MS)
            .await?
        {
            return Ok(0);
        }
        let recipients = self
            .batches
            .batch_recipients(&batch.id, batch.next, n)
            .await?;
        let mut queued: u32 = 0;
        let mut skipped: Vec<String> = Vec::new();
        for (i, recipient) in recipients.iter().enumerate() {
            let index = batch.next + i as u32;
            let request = match request_for(batch, index, recipient) {
                Ok(request) => request,
                Err(why) => {
                    tracing::warn!(batch = %batch.id, index, %why, "a batch recipient cannot be read");
                    skipped.push("invalid".to_string());
                    continue;
                }
            };
            match self
                .notifier
                .notify(request, Some((batch.id.clone(), index)))
                .await
            {
                Ok(_) => queued += 1,
                // The store failed: stop here, this recipient goes again next time.
                Err(NotifyError::Store(e)) => {
                    if queued == 0 && skipped.is_empty() {
                        return Err(e);
                    }
                    break;
                }
                Err(e) => skipped.push(e.code().to_string()),
            }
        }
        let worked = queued + skipped.len() as u32;
        if worked > 0 {
            let step = BatchStep {
                from: batch.next,
                to: batch.next + worked,
                queued,
                skipped,
            };
            self.batches
                .advance_batch(&batch.id, &step, now_millis())
                .await?;
            self.outbox_wake.notify_one();
        }
        Ok(worked)
    }
}
