//! Logs and metrics: the tracing subscriber, and the counters `/metrics` exposes in the
//! Prometheus text format. Message bodies are never logged at info level or above.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; `RUST_LOG` refines the default `info` level.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests starting several apps) keeps the first subscriber.
    let _ = result;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub channel: String,
    /// accepted, duplicate, unauthorized, unparsed, unknown_channel, store_error, ignored
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    /// faq, holding, silent (a human holds the thread), none
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    /// sent, retried, failed, resent_after_crash
    pub outcome: String,
}

/// The gateway's counters. Cheap to clone; every part holds the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    turns: Family<TurnLabels, Counter>,
    turn_seconds: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    inbox_lag_seconds: Histogram,
    lanes_active: Gauge,
    replies_refused: Counter,
    queue_waiting: Gauge,
    queue_owned: Gauge,
    handoffs: Counter,
    sla_breaches: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("concierge");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Webhook requests by channel and outcome",
            webhooks.clone(),
        );
        let turns = Family::<TurnLabels, Counter>::default();
        registry.register("turns", "Inbox events processed, by outcome", turns.clone());
        let buckets = [
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let turn_seconds = Histogram::new(buckets);
        registry.register(
            "turn_seconds",
            "Time to process one inbox event",
            turn_seconds.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by channel and outcome",
            deliveries.clone(),
        );
        let inbox_lag_seconds = Histogram::new(buckets);
        registry.register(
            "inbox_lag_seconds",
            "Time from ingest to the start of processing",
            inbox_lag_seconds.clone(),
        );
        let lanes_active = Gauge::default();
        registry.register(
            "lanes_active",
            "Conversations with events being processed",
            lanes_active.clone(),
        );
        let replies_refused = Counter::default();
        registry.register(
            "replies_refused",
            "Automated replies refused because a human or the queue holds the thread",
            replies_refused.clone(),
        );
        let queue_waiting = Gauge::default();
        registry.register(
            "queue_waiting",
            "Threads waiting in the handoff queue",
            queue_waiting.clone(),
        );
        let queue_owned = Gauge::default();
        registry.register(
            "queue_owned",
            "Threads owned by a concierge",
            queue_owned.clone(),
        );
        let handoffs = Counter::default();
        registry.register("handoffs", "Threads handed to the queue", handoffs.clone());
        let sla_breaches = Counter::default();
        registry.register(
            "sla_breaches",
            "Handoffs whose first-response SLA ran out",
            sla_breaches.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                queue_waiting,
                queue_owned,
                handoffs,
                sla_breaches,
                registry,
                webhooks,
                turns,
                turn_seconds,
                deliveries,
                inbox_lag_seconds,
                lanes_active,
                replies_refused,
            }),
        }
    }

    pub fn webhook(&self, channel: &str, outcome: &str) {
        self.inner
            .webhooks
            .get_or_create(&WebhookLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn webhook_count(&self, channel: &str, outcome: &str) -> u64 {
        self.inner
            .webhooks
            .get_or_create(&WebhookLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }

    pub fn turn(&self, outcome: &str, seconds: f64) {
        self.inner
            .turns
            .get_or_create(&TurnLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.inner.turn_seconds.observe(seconds);
    }

    pub fn inbox_lag(&self, seconds: f64) {
        self.inner.inbox_lag_seconds.observe(seconds.max(0.0));
    }

    pub fn delivery(&self, channel: &str, outcome: &str) {
        self.inner
            .deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn lanes_active(&self, delta: i64) {
        self.inner.lanes_active.inc_by(delta);
    }

    pub fn replies_refused(&self, n: u64) {
        self.inner.replies_refused.inc_by(n);
    }

    pub fn queue_sizes(&self, waiting: i64, owned: i64) {
        self.inner.queue_waiting.set(waiting);
        self.inner.queue_owned.set(owned);
    }

    pub fn handoff(&self) {
        self.inner.handoffs.inc();
    }

    pub fn sla_breached(&self) {
        self.inner.sla_breaches.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}
