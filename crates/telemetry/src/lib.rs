//! Logs and metrics: the tracing subscriber, and the counters `/metrics` exposes in the
//! Prometheus text format. Message bodies are never logged at info level or above.
//!
//! Every label value is bounded: channel ids, provider and model names and tool names come
//! from the configuration, outcomes are fixed words. No conversation, contact or message id
//! is ever a label; those go into the spans (`webhook`, `receipt`, `turn`, `llm`, `tool`,
//! `deliver`), so one message can be followed in the logs.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; `RUST_LOG` refines the default `info` level.
///
/// When `RUST_LOG` asks for debug (`RUST_LOG=concierge=debug`), closing spans are logged too,
/// with their busy and idle times: one message's webhook, turn, LLM and tool calls and
/// delivery each show how long they took. At the default level they are not: one line per
/// span and message would double the log for no one.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let span_events = if filter
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG)
    {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    // Colours only for a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // The JSON lines carry the current span and the list of spans above it (`span`,
    // `spans`), with their fields: the conversation id is on every line of a turn.
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
    /// accepted, duplicate, unauthorized, unparsed, unknown_channel, store_error, ignored,
    /// polled
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub channel: String,
    /// The platform's error code (`130429`), `none` when it gave none.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaLabels {
    pub channel: String,
    /// `kept`, or why not: `too_large`, `not_allowed`, `unreadable`, `gone`, `refused`,
    /// `failed`, `unsupported`, `store_error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// Which budget (the engine's budgets: new conversations, LLM calls).
    pub budget: &'static str,
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    /// The responder that decided (faq, agent, holding, …), silent (a human holds the
    /// thread), none
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    /// sent, retried, failed, resent_after_crash
    pub outcome: &'static str,
}

/// One LLM: the configured provider and the model asked for (the `[llm]` model or an
/// agent's override).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    pub provider: &'static str,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmTokenLabels {
    pub provider: &'static str,
    pub model: String,
    /// prompt, completion
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmErrorLabels {
    pub provider: &'static str,
    pub model: String,
    /// timeout, rate_limited, server_error, client_error, transport, malformed
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// A merchant tool from `[[tools]]`, a built-in one, or `unknown` (a tool the model was
    /// not given: its name is the model's words, never a label).
    pub tool: String,
    /// ok, http_error, timeout, unreachable, cut_off, invalid_arguments, refused, error,
    /// unknown_tool
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// header_timeout (disconnected), headers_too_large (431), malformed (400),
    /// body_timeout (408), body_too_large (413), request_timeout (408: the whole request,
    /// its handler included, went past `request_timeout_secs`), too_many_connections (503:
    /// `max_connections` were open)
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// `chat` (a web chat page) or `api` (a concierge's `/api/v1/events`).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamClosedLabels {
    pub kind: &'static str,
    /// replaced (a newer stream of the same key past its cap), revoked (the concierge's token
    /// or their place in the configuration is gone)
    pub reason: &'static str,
}

/// A histogram family's constructor: a plain function, so the family has a nameable type.
type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// From instant FAQ answers (a store write, about a millisecond) to agents that call tools
/// and ask each other (tens of seconds).
const TURN_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0,
];
/// One LLM call: a small local model to a large one writing at length, up to the timeout.
const LLM_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0,
];
/// From a concierge watching the queue to one who comes back the next morning.
const HANDOFF_WAIT_BUCKETS: [f64; 14] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];

fn llm_histogram() -> Histogram {
    Histogram::new(LLM_BUCKETS)
}

/// Registers one metric and hands back the handle the gateway counts with: the registry
/// keeps a clone, and both count into the same value.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Customers' media, fetched from the platforms.
struct Media {
    downloads: Family<MediaLabels, Counter>,
    bytes: Family<ChannelLabels, Counter>,
    late: Counter,
    swept: Counter,
    links: Family<TurnLabels, Counter>,
    transcriptions: Family<TurnLabels, Counter>,
    transcription_seconds: Histogram,
}

impl Media {
    fn register(registry: &mut Registry) -> Self {
        Self {
            downloads: register(
                registry,
                "media_downloads",
                "Media fetched from the platforms for a turn, by channel and outcome",
                Family::default(),
            ),
            bytes: register(
                registry,
                "media_bytes",
                "Bytes of media kept, by channel",
                Family::default(),
            ),
            late: register(
                registry,
                "media_late",
                "Turns that began before their media was downloaded (past `[media] wait_ms`)",
                Counter::default(),
            ),
            swept: register(
                registry,
                "media_swept",
                "Kept files deleted past `[media] retention_days`",
                Counter::default(),
            ),
            links: register(
                registry,
                "media_links",
                "Signed links to replies' files asked for by a platform, by outcome (served, refused)",
                Family::default(),
            ),
            transcriptions: register(
                registry,
                "transcriptions",
                "Voice notes sent to the transcription server, by outcome (ok, timeout, status, transport, malformed)",
                Family::default(),
            ),
            transcription_seconds: register(
                registry,
                "transcription_seconds",
                "Time the transcription server took for one voice note",
                Histogram::new(TURN_BUCKETS),
            ),
        }
    }
}

/// Webhooks and the inbox events they become.
/// What the gateway sends on its own: notifications and webhooks out.
struct Outreach {
    notifications: Family<TurnLabels, Counter>,
    webhooks: Family<TurnLabels, Counter>,
    webhooks_queued: Counter,
    merchant_events: Family<TurnLabels, Counter>,
    commerce: Family<TurnLabels, Counter>,
}

impl Outreach {
    fn register(registry: &mut Registry) -> Self {
        Self {
            notifications: register(
                registry,
                "notifications",
                "Notification requests, by outcome (queued, replayed, opted_out, no_consent, unknown_template, invalid, unknown_channel, store_unavailable)",
                Family::default(),
            ),
            webhooks: register(
                registry,
                "webhook_deliveries",
                "Attempts to deliver an event to a webhook, by outcome (delivered, retry, failed)",
                Family::default(),
            ),
            webhooks_queued: register(
                registry,
                "webhook_events",
                "Events queued for the webhooks that subscribe to them (one a webhook)",
                Counter::default(),
            ),
            merchant_events: register(
                registry,
                "merchant_events",
                "Events the merchant's systems posted to conversations, by outcome (taken, duplicate)",
                Family::default(),
            ),
            commerce: register(
                registry,
                "commerce",
                "What buying in the chat did, by outcome (products_shown, payment_link, cart_add, cart_remove, cart_view, cart_unknown_product)",
                Family::default(),
            ),
        }
    }
}

struct Ingest {
    webhooks: Family<WebhookLabels, Counter>,
    channel_faults: Family<FaultLabels, Counter>,
    turns: Family<TurnLabels, Counter>,
    turn_seconds: Histogram,
}

impl Ingest {
    fn register(registry: &mut Registry) -> Self {
        Self {
            webhooks: register(
                registry,
                "webhooks",
                "Webhook requests by channel and outcome",
                Family::default(),
            ),
            channel_faults: register(
                registry,
                "channel_faults",
                "Faults the platforms reported about a channel itself, by error code",
                Family::default(),
            ),
            turns: register(
                registry,
                "turns",
                "Inbox events processed, by outcome",
                Family::default(),
            ),
            turn_seconds: register(
                registry,
                "turn_seconds",
                "Time to process one inbox event",
                Histogram::new(TURN_BUCKETS),
            ),
        }
    }
}

/// Replies sent to the platforms.
struct Delivery {
    deliveries: Family<DeliveryLabels, Counter>,
}

impl Delivery {
    fn register(registry: &mut Registry) -> Self {
        Self {
            deliveries: register(
                registry,
                "deliveries",
                "Delivery attempts by channel and outcome (retried: a retry is scheduled)",
                Family::default(),
            ),
        }
    }
}

/// The per-conversation lanes that process inbox events.
struct Lanes {
    inbox_lag_seconds: Histogram,
    lanes_active: Gauge,
    lane_queue_depth: Gauge,
    replies_refused: Counter,
}

impl Lanes {
    fn register(registry: &mut Registry) -> Self {
        Self {
            inbox_lag_seconds: register(
                registry,
                "inbox_lag_seconds",
                "Time from ingest to the start of processing",
                Histogram::new(TURN_BUCKETS),
            ),
            lanes_active: register(
                registry,
                "lanes_active",
                "Conversations with events being processed",
                Gauge::default(),
            ),
            lane_queue_depth: register(
                registry,
                "lane_queue_depth",
                "Inbox events handed to their conversation's lane and waiting for their turn",
                Gauge::default(),
            ),
            replies_refused: register(
                registry,
                "replies_refused",
                "Automated replies refused because a human or the queue holds the thread",
                Counter::default(),
            ),
        }
    }
}

/// The human side: the queue, handoffs and their SLA.
struct Handoff {
    queue_waiting: Gauge,
    queue_owned: Gauge,
    handoffs: Counter,
    handoff_wait_seconds: Histogram,
    sla_breaches: Counter,
}

impl Handoff {
    fn register(registry: &mut Registry) -> Self {
        Self {
            queue_waiting: register(
                registry,
                "queue_waiting",
                "Threads waiting in the handoff queue",
                Gauge::default(),
            ),
            queue_owned: register(
                registry,
                "queue_owned",
                "Threads owned by a concierge",
                Gauge::default(),
            ),
            handoffs: register(
                registry,
                "handoffs",
                "Threads handed to the queue",
                Counter::default(),
            ),
            handoff_wait_seconds: register(
                registry,
                "handoff_wait_seconds",
                "Time from a handoff to its first claim by a concierge",
                Histogram::new(HANDOFF_WAIT_BUCKETS),
            ),
            sla_breaches: register(
                registry,
                "sla_breaches",
                "Handoffs whose first-response SLA ran out",
                Counter::default(),
            ),
        }
    }
}

/// Requests to the LLM provider.
struct Llm {
    llm_calls: Family<LlmLabels, Counter>,
    llm_call_seconds: HistogramFamily<LlmLabels>,
    llm_tokens: Family<LlmTokenLabels, Counter>,
    llm_errors: Family<LlmErrorLabels, Counter>,
    llm_retries: Family<LlmLabels, Counter>,
}

impl Llm {
    fn register(registry: &mut Registry) -> Self {
        Self {
            llm_calls: register(
                registry,
                "llm_calls",
                "Requests to the LLM provider (each retry is one more)",
                Family::default(),
            ),
            llm_call_seconds: register(
                registry,
                "llm_call_seconds",
                "Time one request to the LLM provider took, failed ones included",
                Family::new_with_constructor(llm_histogram),
            ),
            llm_tokens: register(
                registry,
                "llm_tokens",
                "Tokens the LLM provider counted, prompt and completion",
                Family::default(),
            ),
            llm_errors: register(
                registry,
                "llm_errors",
                "Requests to the LLM provider that failed, by kind",
                Family::default(),
            ),
            llm_retries: register(
                registry,
                "llm_retries",
                "LLM requests tried again after a rate limit, a server error or a lost connection",
                Family::default(),
            ),
        }
    }
}

/// The agents' tool calls.
struct Tools {
    tool_calls: Family<ToolLabels, Counter>,
}

impl Tools {
    fn register(registry: &mut Registry) -> Self {
        Self {
            tool_calls: register(
                registry,
                "tool_calls",
                "Tool calls made by the agents, by tool and outcome",
                Family::default(),
            ),
        }
    }
}

/// Work turned away or held back before it ran: requests, throttled and over-budget turns.
struct Refusals {
    http_refused: Family<RefusedLabels, Counter>,
    throttled: Family<ChannelLabels, Counter>,
    llm_budget_exhausted: Counter,
}

impl Refusals {
    fn register(registry: &mut Registry) -> Self {
        Self {
            http_refused: register(
                registry,
                "http_refused",
                "HTTP requests refused before reaching a handler (a head or body too slow or too large, a malformed head, a request over its time), by reason",
                Family::default(),
            ),
            throttled: register(
                registry,
                "throttled",
                "Customer messages whose turn waited for the contact's turn rate limit (answered together in the next turn), by channel",
                Family::default(),
            ),
            llm_budget_exhausted: register(
                registry,
                "llm_budget_exhausted",
                "Turns that did not call the LLM because the conversation had spent its token budget (handed to a person instead)",
                Counter::default(),
            ),
        }
    }
}

/// HTTP connections and the live event streams they carry.
struct Connections {
    connections_open: Gauge,
    write_timeouts: Counter,
    streams_open: Family<StreamLabels, Gauge>,
    streams_closed: Family<StreamClosedLabels, Counter>,
}

impl Connections {
    fn register(registry: &mut Registry) -> Self {
        Self {
            connections_open: register(
                registry,
                "connections_open",
                "HTTP connections open",
                Gauge::default(),
            ),
            write_timeouts: register(
                registry,
                "write_timeouts",
                "Connections closed because the client stopped reading (a write waited past `write_timeout_secs`)",
                Counter::default(),
            ),
            streams_open: register(
                registry,
                "streams_open",
                "Live event streams open, by kind (chat, api)",
                Family::default(),
            ),
            streams_closed: register(
                registry,
                "streams_closed",
                "Live event streams closed by the gateway, by kind and reason (replaced, revoked)",
                Family::default(),
            ),
        }
    }
}

/// The budgets of new conversations and LLM calls a minute.
struct Budgets {
    budget_exceeded: Family<BudgetLabels, Counter>,
}

impl Budgets {
    fn register(registry: &mut Registry) -> Self {
        Self {
            budget_exceeded: register(
                registry,
                "budget_exceeded",
                "Turns not given to the agents because a budget of new conversations or LLM calls a minute was spent (the customer got the holding reply), by budget and channel",
                Family::default(),
            ),
        }
    }
}

/// The gateway's counters. Cheap to clone; every part holds the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    ingest: Ingest,
    delivery: Delivery,
    lanes: Lanes,
    handoff: Handoff,
    llm: Llm,
    tools: Tools,
    refusals: Refusals,
    connections: Connections,
    budgets: Budgets,
    media: Media,
    outreach: Outreach,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Registration order is the order of `/metrics`: the groups follow it.
        let mut registry = Registry::with_prefix("concierge");
        let ingest = Ingest::register(&mut registry);
        let delivery = Delivery::register(&mut registry);
        let lanes = Lanes::register(&mut registry);
        let handoff = Handoff::register(&mut registry);
        let llm = Llm::register(&mut registry);
        let tools = Tools::register(&mut registry);
        let refusals = Refusals::register(&mut registry);
        let connections = Connections::register(&mut registry);
        let budgets = Budgets::register(&mut registry);
        let media = Media::register(&mut registry);
        let outreach = Outreach::register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                registry,
                ingest,
                delivery,
                lanes,
                handoff,
                llm,
                tools,
                refusals,
                connections,
                budgets,
                media,
                outreach,
            }),
        }
    }

    pub fn webhook(&self, channel: &str, outcome: &'static str) {
        self.inner
            .ingest
            .webhooks
            .get_or_create(&WebhookLabels {
                channel: channel.to_string(),
                outcome,
            })
            .inc();
    }

    /// One media download for a turn ended: `kept` with its size, or why not.
    pub fn media_download(&self, channel: &str, outcome: &'static str, bytes: u64) {
        let media = &self.inner.media;
        media
            .downloads
            .get_or_create(&MediaLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if bytes > 0 {
            media
                .bytes
                .get_or_create(&ChannelLabels {
                    channel: channel.to_string(),
                })
                .inc_by(bytes);
        }
    }

    /// One voice note transcribed (`ok`) or not (the error's kind), in `seconds`.
    pub fn transcription(&self, outcome: &'static str, seconds: f64) {
        let media = &self.inner.media;
        media
            .transcriptions
            .get_or_create(&TurnLabels { outcome })
            .inc();
        media.transcription_seconds.observe(seconds);
    }

    /// A notification request's outcome (see `concierge_notifications_total`).
    pub fn notification(&self, outcome: &'static str) {
        self.inner
            .outreach
            .notifications
            .get_or_create(&TurnLabels { outcome })
            .inc();
    }

    /// One attempt to deliver to a webhook: `delivered`, `retry` or `failed`.
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.inner
            .outreach
            .webhooks
            .get_or_create(&TurnLabels { outcome })
            .inc();
    }

    /// An event the merchant's systems posted: `taken` or `duplicate` (its type is theirs:
    /// never a label).
    pub fn merchant_event(&self, duplicate: bool) {
        let outcome = if duplicate { "duplicate" } else { "taken" };
        self.inner
            .outreach
            .merchant_events
            .get_or_create(&TurnLabels { outcome })
            .inc();
    }

    /// One step of buying in the chat (`products_shown`, `payment_link`, `cart_add`, …).
    pub fn commerce(&self, outcome: &'static str) {
        self.inner
            .outreach
            .commerce
            .get_or_create(&TurnLabels { outcome })
            .inc();
    }

    /// `n` deliveries queued for webhooks.
    pub fn webhook_events(&self, n: u64) {
        self.inner.outreach.webhooks_queued.inc_by(n);
    }

    /// A platform asked for a reply's file by its signed link: `served` or `refused`.
    pub fn media_links(&self, outcome: &'static str) {
        self.inner
            .media
            .links
            .get_or_create(&TurnLabels { outcome })
            .inc();
    }

    /// `n` kept files deleted past their retention.
    pub fn media_swept(&self, n: u64) {
        self.inner.media.swept.inc_by(n);
    }

    /// A turn began before its media was downloaded.
    pub fn media_late(&self) {
        self.inner.media.late.inc();
    }

    pub fn media_download_count(&self, channel: &str, outcome: &str) -> u64 {
        self.inner
            .media
            .downloads
            .get_or_create(&MediaLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }

    /// A fault the platform reported about the channel itself (stored once).
    pub fn channel_fault(&self, channel: &str, code: Option<&str>) {
        self.inner
            .ingest
            .channel_faults
            .get_or_create(&FaultLabels {
                channel: channel.to_string(),
                code: code.unwrap_or("none").chars().take(40).collect(),
            })
            .inc();
    }

    pub fn webhook_count(&self, channel: &str, outcome: &'static str) -> u64 {
        self.inner
            .ingest
            .webhooks
            .get_or_create(&WebhookLabels {
                channel: channel.to_string(),
                outcome,
            })
            .get()
    }

    pub fn turn(&self, outcome: &'static str, seconds: f64) {
        self.inner
            .ingest
            .turns
            .get_or_create(&TurnLabels { outcome })
            .inc();
        self.inner.ingest.turn_seconds.observe(seconds);
    }

    pub fn inbox_lag(&self, seconds: f64) {
        self.inner.lanes.inbox_lag_seconds.observe(seconds.max(0.0));
    }

    pub fn delivery(&self, channel: &str, outcome: &'static str) {
        self.inner
            .delivery
            .deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn lanes_active(&self, delta: i64) {
        self.inner.lanes.lanes_active.inc_by(delta);
    }

    /// One inbox event now waits in a lane; it stops counting when the guard drops.
    pub fn lane_event_waiting(&self) -> Waiting {
        self.inner.lanes.lane_queue_depth.inc();
        Waiting(self.inner.lanes.lane_queue_depth.clone())
    }

    pub fn replies_refused(&self, n: u64) {
        self.inner.lanes.replies_refused.inc_by(n);
    }

    pub fn queue_sizes(&self, waiting: i64, owned: i64) {
        self.inner.handoff.queue_waiting.set(waiting);
        self.inner.handoff.queue_owned.set(owned);
    }

    pub fn handoff(&self) {
        self.inner.handoff.handoffs.inc();
    }

    /// A concierge claimed a handoff for the first time, `seconds` after it was made.
    pub fn handoff_claimed(&self, seconds: f64) {
        self.inner
            .handoff
            .handoff_wait_seconds
            .observe(seconds.max(0.0));
    }

    pub fn sla_breached(&self) {
        self.inner.handoff.sla_breaches.inc();
    }

    /// One request to the LLM provider: its time, and its tokens or the kind of its failure.
    pub fn llm_call(&self, labels: &LlmLabels, seconds: f64, result: LlmCallResult) {
        self.inner.llm.llm_calls.get_or_create(labels).inc();
        self.inner
            .llm
            .llm_call_seconds
            .get_or_create(labels)
            .observe(seconds.max(0.0));
        match result {
            LlmCallResult::Answered {
                prompt_tokens,
                completion_tokens,
            } => {
                for (kind, tokens) in [("prompt", prompt_tokens), ("completion", completion_tokens)]
                {
                    self.inner
                        .llm
                        .llm_tokens
                        .get_or_create(&LlmTokenLabels {
                            provider: labels.provider,
                            model: labels.model.clone(),
                            kind,
                        })
                        .inc_by(tokens);
                }
            }
            LlmCallResult::Failed(error) => {
                self.inner
                    .llm
                    .llm_errors
                    .get_or_create(&LlmErrorLabels {
                        provider: labels.provider,
                        model: labels.model.clone(),
                        error,
                    })
                    .inc();
            }
        }
    }

    pub fn llm_retry(&self, labels: &LlmLabels) {
        self.inner.llm.llm_retries.get_or_create(labels).inc();
    }

    /// `tool` must be a configured or built-in tool's name, never one the model made up.
    pub fn tool_call(&self, tool: &str, outcome: &'static str) {
        self.inner
            .tools
            .tool_calls
            .get_or_create(&ToolLabels {
                tool: tool.to_string(),
                outcome,
            })
            .inc();
    }

    /// A request refused before any handler saw it; `reason` is a fixed word.
    pub fn http_refused(&self, reason: &'static str) {
        self.inner
            .refusals
            .http_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    /// `n` customer messages of `channel` waited for the contact's turn rate limit.
    pub fn throttled(&self, channel: &str, n: u64) {
        self.inner
            .refusals
            .throttled
            .get_or_create(&ChannelLabels {
                channel: channel.to_string(),
            })
            .inc_by(n);
    }

    /// A turn did not call the LLM: the conversation had spent its token budget.
    pub fn llm_budget_exhausted(&self) {
        self.inner.refusals.llm_budget_exhausted.inc();
    }

    /// A connection opened (`1`) or ended (`-1`).
    pub fn connections_open(&self, delta: i64) {
        self.inner.connections.connections_open.inc_by(delta);
    }

    /// A connection closed because its client stopped reading.
    pub fn write_timeout(&self) {
        self.inner.connections.write_timeouts.inc();
    }

    /// A live stream of `kind` opened (`1`) or ended (`-1`).
    pub fn streams_open(&self, kind: &'static str, delta: i64) {
        self.inner
            .connections
            .streams_open
            .get_or_create(&StreamLabels { kind })
            .inc_by(delta);
    }

    /// A live stream closed by the gateway; `reason` is a fixed word.
    pub fn stream_closed(&self, kind: &'static str, reason: &'static str) {
        self.inner
            .connections
            .streams_closed
            .get_or_create(&StreamClosedLabels { kind, reason })
            .inc();
    }

    /// A turn of `channel` went past `budget` and got the holding reply, not the agents.
    pub fn budget_exceeded(&self, budget: &'static str, channel: &str) {
        self.inner
            .budgets
            .budget_exceeded
            .get_or_create(&BudgetLabels {
                budget,
                channel: channel.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// How one request to the LLM provider ended, for [`Metrics::llm_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmCallResult {
    Answered {
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// The kind of failure: a fixed word.
    Failed(&'static str),
}

/// Counts one inbox event in `lane_queue_depth` while it lives.
#[derive(Debug)]
pub struct Waiting(Gauge);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_register_in_the_order_metrics_has_always_been_rendered_in() {
        // Families without labels render from the start, so their order shows the groups'.
        let text = Metrics::new().render();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP concierge_"))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(
            names,
            [
                "turn_seconds",
                "inbox_lag_seconds",
                "lanes_active",
                "lane_queue_depth",
                "replies_refused",
                "queue_waiting",
                "queue_owned",
                "handoffs",
                "handoff_wait_seconds",
                "sla_breaches",
                "llm_budget_exhausted",
                "connections_open",
                "write_timeouts",
                "media_late",
                "media_swept",
                "transcription_seconds",
                "webhook_events",
            ]
        );
        assert!(text.contains("# HELP concierge_turn_seconds Time to process one inbox event.\n"));
    }

    /// The line of `name` whose labels contain every one of `labels`.
    fn line<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
        text.lines().find(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|p| l.contains(p))
        })
    }

    fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
        line(text, name, labels)
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    }

    #[test]
    fn renders_the_llm_tool_lane_and_handoff_families() {
        let metrics = Metrics::new();
        let gpt = LlmLabels {
            provider: "openai",
            model: "gpt-4o".to_string(),
        };
        metrics.llm_call(
            &gpt,
            1.2,
            LlmCallResult::Answered {
                prompt_tokens: 120,
                completion_tokens: 30,
            },
        );
        metrics.llm_call(
            &gpt,
            0.4,
            LlmCallResult::Answered {
                prompt_tokens: 80,
                completion_tokens: 10,
            },
        );
        metrics.llm_call(&gpt, 0.1, LlmCallResult::Failed("rate_limited"));
        metrics.llm_retry(&gpt);
        metrics.tool_call("order_status", "ok");
        metrics.tool_call("order_status", "timeout");
        metrics.tool_call("unknown", "unknown_tool");
        metrics.handoff_claimed(42.0);
        let first = metrics.lane_event_waiting();
        let second = metrics.lane_event_waiting();
        drop(first);

        let text = metrics.render();
        let model = ["provider=\"openai\"", "model=\"gpt-4o\""];
        assert_eq!(value(&text, "concierge_llm_calls_total", &model), 3.0);
        assert_eq!(value(&text, "concierge_llm_retries_total", &model), 1.0);
        let prompt = [model[0], model[1], "kind=\"prompt\""];
        assert_eq!(value(&text, "concierge_llm_tokens_total", &prompt), 200.0);
        let completion = [model[0], model[1], "kind=\"completion\""];
        assert_eq!(
            value(&text, "concierge_llm_tokens_total", &completion),
            40.0
        );
        let limited = [model[0], model[1], "error=\"rate_limited\""];
        assert_eq!(value(&text, "concierge_llm_errors_total", &limited), 1.0);
        assert_eq!(
            value(&text, "concierge_llm_call_seconds_count", &model),
            3.0
        );
        let under_half = [model[0], model[1], "le=\"0.5\""];
        assert_eq!(
            value(&text, "concierge_llm_call_seconds_bucket", &under_half),
            2.0
        );
        assert!(text.contains("# TYPE concierge_llm_call_seconds histogram"));

        let ok = ["tool=\"order_status\"", "outcome=\"ok\""];
        assert_eq!(value(&text, "concierge_tool_calls_total", &ok), 1.0);
        let timeout = ["tool=\"order_status\"", "outcome=\"timeout\""];
        assert_eq!(value(&text, "concierge_tool_calls_total", &timeout), 1.0);
        let unknown = ["tool=\"unknown\"", "outcome=\"unknown_tool\""];
        assert_eq!(value(&text, "concierge_tool_calls_total", &unknown), 1.0);

        assert_eq!(value(&text, "concierge_lane_queue_depth", &[]), 1.0);
        drop(second);
        assert_eq!(
            value(&metrics.render(), "concierge_lane_queue_depth", &[]),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "concierge_handoff_wait_seconds_bucket",
                &["le=\"60.0\""]
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "concierge_handoff_wait_seconds_bucket",
                &["le=\"30.0\""]
            ),
            0.0
        );
        assert_eq!(
            value(&text, "concierge_handoff_wait_seconds_sum", &[]),
            42.0
        );
    }

    #[test]
    fn turn_buckets_tell_instant_answers_from_slow_agents() {
        let metrics = Metrics::new();
        metrics.turn("faq", 0.0004);
        metrics.turn("agent", 45.0);
        metrics.webhook("whatsapp", "accepted");
        metrics.http_refused("header_timeout");
        metrics.http_refused("header_timeout");
        metrics.throttled("whatsapp", 3);
        metrics.llm_budget_exhausted();
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                "concierge_throttled_total",
                &["channel=\"whatsapp\""]
            ),
            3.0
        );
        assert_eq!(
            value(&text, "concierge_llm_budget_exhausted_total", &[]),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "concierge_http_refused_total",
                &["reason=\"header_timeout\""]
            ),
            2.0
        );
        assert_eq!(
            value(&text, "concierge_turn_seconds_bucket", &["le=\"0.001\""]),
            1.0
        );
        assert_eq!(
            value(&text, "concierge_turn_seconds_bucket", &["le=\"30.0\""]),
            1.0
        );
        assert_eq!(
            value(&text, "concierge_turn_seconds_bucket", &["le=\"60.0\""]),
            2.0
        );
        assert_eq!(
            value(
                &text,
                "concierge_webhooks_total",
                &["channel=\"whatsapp\"", "outcome=\"accepted\""]
            ),
            1.0
        );
        assert_eq!(metrics.webhook_count("whatsapp", "accepted"), 1);
    }
}
