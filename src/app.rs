//! Builds every part from a loaded configuration and runs them until shutdown: the HTTP
//! server, the orchestrator and the delivery worker, each with only the handles it needs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::genai_client::GenaiClient;
use crate::agents::llm::Metered;
use crate::agents::{AgentRuntime, Limits, MerchantTools, Retrying};
use crate::channels::telegram::{self, poll::EventSink};
use crate::channels::{ChannelAdapter, ChannelConfig, Registry};
use crate::config::{Config, StoreLocation};
use crate::delivery::DeliveryWorker;
use crate::domain::{ChannelId, InboundEvent, PlatformMessageId};
use crate::handoff::keywords::Keywords;
use crate::handoff::{Bus, Desk, DeskSettings};
use crate::http::server::HeadLimits;
use crate::http::visitors::VisitorBudgets;
use crate::http::welcome::{MetricsAt, Welcome};
use crate::http::{AppState, HttpLimits, MetricsPage, StreamCaps, metrics_router, router};
use crate::orchestrator::{
    AgentResponder, AgentSettings, BudgetSettings, Budgets, ChannelHints, ChannelProfile,
    FaqResponder, HoldingResponder, Orchestrator, Responder, ResponderChain, TriggerResponder,
};
use crate::store::SharedStore;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::telemetry::Metrics;

/// Parts a caller may supply instead of having them built from the configuration: a store
/// shared with the caller, or another responder chain (tests, embedding).
#[derive(Default)]
pub struct Parts {
    pub store: Option<SharedStore>,
    pub responder: Option<Arc<dyn Responder>>,
    /// Channels added to the ones the configuration describes.
    pub adapters: Vec<Arc<dyn ChannelAdapter>>,
}

/// A running gateway.
pub struct App {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `[server] metrics_bind` gives it a port of its own.
    pub metrics_addr: Option<SocketAddr>,
    /// The addresses to print at start.
    pub welcome: Welcome,
    pub store: SharedStore,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// Opens the store and starts every part on an already bound listener.
    pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<App> {
        Self::start_with(config, listener, Parts::default()).await
    }

    /// Starts with some parts supplied by the caller instead of built from the config.
    pub async fn start_with(
        config: Config,
        listener: TcpListener,
        parts: Parts,
    ) -> anyhow::Result<App> {
        let store = match parts.store {
            Some(store) => store,
            None => open_store(&config).await?,
        };
        let addr = listener.local_addr().context("reading the bound address")?;
        let metrics = Metrics::new();
        let http = reqwest::Client::builder()
            .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(
                config.settings.delivery.send_timeout_secs.max(1),
            ))
            .build()
            .context("building the HTTP client")?;
        let mut channels = Registry::build(&config.channels, &http);
        for adapter in parts.adapters {
            channels.insert(adapter);
        }
        if let Some(fanout) = store.fanout() {
            // Visitors' pages may be connected to any instance.
            for webchat in channels.webchats() {
                webchat.hub().connect(fanout.clone());
            }
        }
        let inbox_wake = Arc::new(Notify::new());
        let outbox_wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let settings = &config.settings;

        let hints: Arc<dyn ChannelHints> = Arc::new(AdapterHints::new(channels.clone()));
        let holding = Arc::new(HoldingResponder::new(
            settings.responder.holding.clone(),
            settings.responder.holding_repeat_secs,
        ));
        let agents = agent_runtime(&config, &metrics)?;
        let desk = Arc::new(
            Desk::new(
                desk_settings(&config),
                store.clone(),
                Bus::shared(store.fanout()),
                agents.clone(),
                metrics.clone(),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let responder: Arc<dyn Responder> = match parts.responder {
            Some(responder) => responder,
            None => {
                let mut steps: Vec<Box<dyn Responder>> = vec![
                    Box::new(TriggerResponder::new(
                        Keywords::new(&settings.queue.keywords),
                        settings.queue.max_bot_turns,
                    )),
                    Box::new(FaqResponder::new(
                        config.faq.clone(),
                        settings.faq.threshold,
                    )),
                ];
                if let Some(runtime) = agents {
                    steps.push(Box::new(
                        AgentResponder::new(
                            runtime,
                            AgentSettings {
                                merchant: settings.merchant.name.clone(),
                                business_hours: settings.merchant.business_hours.clone(),
                                timezone: config.timezone.clone(),
                                history_messages: settings.agents.history_messages,
                                redact_pii: settings.agents.redact_pii,
                                conversation_token_budget: settings
                                    .agents
                                    .conversation_token_budget,
                            },
                            hints.clone(),
                            holding.clone(),
                        )
                        .with_budgets(budgets(&config)),
                    ));
                }
                steps.push(Box::new(SharedResponder(holding.clone())));
                Arc::new(ResponderChain::new(steps))
            }
        };
        let orchestrator = Orchestrator::new(
            store.clone(),
            responder,
            inbox_wake.clone(),
            outbox_wake.clone(),
            settings.orchestrator.max_parallel_lanes,
            hints,
            metrics.clone(),
        )
        .with_burst_window(settings.orchestrator.burst_window_ms)
        .with_contact_rate(
            settings.orchestrator.contact_turns_per_minute,
            settings.orchestrator.contact_turn_burst,
        )
        .with_desk(desk.clone());
        let delivery = DeliveryWorker::new(
            store.clone(),
            channels.clone(),
            outbox_wake.clone(),
            &settings.delivery,
            metrics.clone(),
        )
        .with_events(desk.events.clone());
        let http_limits = HttpLimits {
            body_limit_bytes: settings.server.body_limit_bytes,
            body_read_timeout: Duration::from_secs(settings.server.body_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(settings.server.request_timeout_secs.max(1)),
        };
        let metrics_page = MetricsPage {
            metrics: metrics.clone(),
            token: settings.server.metrics_token.clone(),
        };
        // `/metrics` is on its own port, or on the public one behind a token, or nowhere.
        let (public_metrics, metrics_listener) = match config.metrics_bind {
            Some(at) => {
                let listener = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen for /metrics on {at}"))?;
                (None, Some(listener))
            }
            None => (
                settings
                    .server
                    .metrics_token
                    .is_some()
                    .then(|| metrics_page.clone()),
                None,
            ),
        };
        let app_router = router(
            AppState {
                store: store.clone(),
                channels: channels.clone(),
                inbox_wake: inbox_wake.clone(),
                outbox_wake: outbox_wake.clone(),
                desk: desk.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                max_event_age_ms: match settings.server.max_event_age_secs {
                    0 => None,
                    secs => Some(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
                },
                streams: crate::http::streams::Streams::new(metrics.clone()),
                stream_caps: StreamCaps {
                    per_key: settings.server.max_streams_per_key,
                    per_concierge: settings.server.max_streams_per_concierge,
                },
                visitors: Arc::new(VisitorBudgets::new(config.channels.iter().filter_map(
                    |(id, channel)| match channel {
                        ChannelConfig::Webchat(c) => {
                            Some((id.clone(), c.new_conversations_per_minute_per_ip))
                        }
                        _ => None,
                    },
                ))),
            },
            http_limits,
            public_metrics,
        );
        let head_limits = HeadLimits {
            read_timeout: Duration::from_secs(settings.server.header_read_timeout_secs.max(1)),
            max_bytes: settings.server.max_header_bytes,
            max_connections: settings.server.max_connections,
            write_timeout: Duration::from_secs(settings.server.write_timeout_secs.max(1)),
        };

        tracing::info!(
            %addr,
            channels = config.channels.len(),
            faq_entries = config.faq.entries().len(),
            "Concierge is listening"
        );
        match &settings.llm {
            Some(llm) => tracing::info!(
                provider = ?llm.provider,
                model = %llm.model,
                agents = config.agent_files.len(),
                tools = settings.tools.len(),
                "agents answer what the FAQ tier cannot"
            ),
            None => tracing::info!(
                "no [llm] is configured: answering from the FAQ tier only (add an [llm] section to concierge.toml for the agents)"
            ),
        }
        let paused = settings.orchestrator.paused;
        if paused {
            tracing::warn!(
                "processing is paused ([orchestrator] paused = true): messages are stored and acknowledged, not answered"
            );
        }
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let pollers: Vec<_> = channels
            .telegram_pollers()
            .into_iter()
            .map(|bot| {
                let sink: Arc<dyn EventSink> = Arc::new(InboxSink {
                    store: store.clone(),
                    inbox_wake: inbox_wake.clone(),
                    metrics: metrics.clone(),
                });
                tokio::spawn(telegram::poll::run(bot, sink, shutdown.clone()))
            })
            .collect();
        let queue_clock = tokio::spawn(crate::handoff::worker::run(
            desk.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let mut pollers = pollers;
        pollers.push(queue_clock);
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let at = listener
                    .local_addr()
                    .context("reading the metrics address")?;
                tracing::info!(addr = %at, token = metrics_page.token.is_some(), "/metrics is served on a port of its own");
                pollers.push(tokio::spawn(crate::http::server::serve(
                    listener,
                    metrics_router(metrics_page, http_limits),
                    head_limits,
                    metrics.clone(),
                    shutdown.clone(),
                )));
                Some(at)
            }
            None => {
                if metrics_page.token.is_some() {
                    tracing::info!("/metrics is served on the public port, behind its token");
                } else {
                    tracing::info!(
                        "/metrics is not served: set [server] metrics_bind or metrics_token to scrape it"
                    );
                }
                None
            }
        };
        let welcome = Welcome {
            addr,
            metrics: match (metrics_addr, settings.server.metrics_token.is_some()) {
                (Some(at), token) => MetricsAt::OwnPort { addr: at, token },
                (None, true) => MetricsAt::PublicPort,
                (None, false) => MetricsAt::NotServed,
            },
            webchat: channels.first_webchat().is_some(),
        };
        let task = tokio::spawn(run(
            listener,
            app_router,
            head_limits,
            metrics.clone(),
            orchestrator,
            delivery,
            paused,
            shutdown.clone(),
            grace,
            pollers,
        ));
        Ok(App {
            addr,
            metrics_addr,
            welcome,
            store,
            metrics,
            shutdown,
            task,
        })
    }

    /// Asks every part to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops and waits until every part has finished.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the app stops by itself or is asked to.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the app task panicked")?
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        tokio::select! {
            _ = signal => {
                tracing::info!("shutting down: finishing the work in hand");
                token.cancel();
            }
            _ = token.cancelled() => {}
        }
        self.wait().await
    }
}

/// The desk's part of the deployment.
fn desk_settings(config: &Config) -> DeskSettings {
    let settings = &config.settings;
    DeskSettings {
        queue: settings.queue.clone(),
        teams: settings.teams.clone(),
        concierges: settings.concierges.clone(),
        timezone: config.timezone.clone(),
        entry_agent: config
            .agents
            .as_ref()
            .and_then(|a| a.entry().map(|d| d.name.clone()))
            .unwrap_or_else(|| "front_desk".to_string()),
        redact_pii: settings.agents.redact_pii,
        channel_teams: config.channel_teams.clone(),
    }
}

/// The agents' runtime, when an `[llm]` is configured.
fn agent_runtime(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Arc<AgentRuntime>>> {
    let settings = &config.settings;
    let (Some(llm), Some(agents)) = (&settings.llm, &config.agents) else {
        return Ok(None);
    };
    let client = GenaiClient::new(llm).context("building the LLM client")?;
    // Metered inside Retrying: every request to the provider is measured, retries too.
    let client = Metered::new(client, metrics.clone(), llm.provider.name(), &llm.model);
    let client = Retrying::new(client, llm.max_retries, Duration::from_millis(500));
    Ok(Some(Arc::new(AgentRuntime {
        agents: agents.clone(),
        tools: MerchantTools::new(&settings.tools).context("building the tools' HTTP client")?,
        llm: Arc::new(client),
        limits: Limits {
            max_tool_rounds: settings.agents.max_tool_rounds,
            max_ask_depth: settings.agents.max_ask_depth,
            max_tool_calls_per_turn: settings.agents.max_tool_calls_per_turn,
            turn_token_budget: settings.agents.turn_token_budget,
        },
        metrics: metrics.clone(),
    })))
}

/// The budgets of new conversations and LLM calls a minute, from the configuration.
fn budgets(config: &Config) -> Arc<Budgets> {
    let settings = &config.settings;
    Arc::new(Budgets::new(&BudgetSettings {
        new_conversations_per_minute: settings.orchestrator.new_conversations_per_minute,
        channel_new_conversations_per_minute: config
            .channels
            .iter()
            .map(|(id, channel)| (id.clone(), channel.new_conversations_per_minute()))
            .collect(),
        llm_calls_per_minute: settings.agents.llm_calls_per_minute,
    }))
}

/// A responder shared with another owner (the holding message, also used by the agents).
struct SharedResponder<R>(Arc<R>);

#[async_trait::async_trait]
impl<R: Responder> Responder for SharedResponder<R> {
    async fn respond(
        &self,
        turn: &crate::orchestrator::Turn<'_>,
    ) -> Result<Option<crate::orchestrator::Decision>, crate::orchestrator::ResponderError> {
        self.0.respond(turn).await
    }
}

/// Stores polled events as the webhook handler stores posted ones.
struct InboxSink {
    store: SharedStore,
    inbox_wake: Arc<Notify>,
    metrics: Metrics,
}

#[async_trait::async_trait]
impl EventSink for InboxSink {
    #[tracing::instrument(name = "poll", skip_all, fields(channel = tracing::field::Empty, events = events.len(), seq = tracing::field::Empty, conversation = tracing::field::Empty))]
    async fn accept(&self, events: Vec<InboundEvent>) -> Result<(), String> {
        let channel = events
            .first()
            .map(|e| e.channel.to_string())
            .unwrap_or_default();
        tracing::Span::current().record("channel", channel.as_str());
        let outcome = self
            .store
            .ingest(&events)
            .await
            .map_err(|e| e.to_string())?;
        outcome.trace();
        if outcome.accepted > 0 {
            self.inbox_wake.notify_one();
        }
        for _ in 0..outcome.accepted {
            self.metrics.webhook(&channel, "polled");
        }
        Ok(())
    }
}

/// Read receipts and typing indicators in flight at most. They are best effort: past this
/// (thousands of turns starting at once) they are skipped, rather than each holding a
/// connection and memory while the replies they announce are already on their way.
const INDICATORS_IN_FLIGHT: usize = 64;

/// Answers the lanes' questions from the conversation's channel adapter.
struct AdapterHints {
    channels: Registry,
    indicators: Arc<Semaphore>,
}

impl AdapterHints {
    fn new(channels: Registry) -> Self {
        Self {
            channels,
            indicators: Arc::new(Semaphore::new(INDICATORS_IN_FLIGHT)),
        }
    }

    /// Runs an indicator's send in the background when there is room for it.
    fn indicate(&self, send: impl Future<Output = ()> + Send + 'static) {
        match self.indicators.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    send.await;
                    drop(permit);
                });
            }
            Err(_) => tracing::debug!("too many indicators in flight; this one is skipped"),
        }
    }
}

impl ChannelHints for AdapterHints {
    fn turn_started(&self, event: &InboundEvent, message: &PlatformMessageId) {
        let Some(adapter) = self.channels.adapter(&event.channel).cloned() else {
            return;
        };
        if !adapter.capabilities().typing && !adapter.capabilities().read_receipts {
            return;
        }
        let (contact, message) = (event.contact.clone(), message.clone());
        self.indicate(async move { adapter.turn_started(&contact, &message).await });
    }

    fn received(&self, event: &InboundEvent, message: &PlatformMessageId) {
        let Some(adapter) = self.channels.adapter(&event.channel).cloned() else {
            return;
        };
        let (contact, message) = (event.contact.clone(), message.clone());
        self.indicate(async move { adapter.received(&contact, &message).await });
    }

    fn media_captions(&self, channel: &ChannelId) -> bool {
        self.channels
            .adapter(channel)
            .is_none_or(|adapter| adapter.capabilities().media_captions)
    }

    fn max_text_chars(&self, channel: &ChannelId) -> Option<usize> {
        self.channels
            .adapter(channel)
            .map(|adapter| adapter.capabilities().max_text_chars)
            .filter(|limit| *limit > 0)
    }

    fn profile(&self, channel: &ChannelId) -> ChannelProfile {
        let Some(adapter) = self.channels.adapter(channel) else {
            return ChannelProfile::default();
        };
        let caps = adapter.capabilities();
        ChannelProfile {
            kind: adapter.kind().name().to_string(),
            buttons: caps.max_buttons,
            list_rows: caps.max_list_rows,
            media: !caps.media.is_empty(),
            max_text_chars: Some(caps.max_text_chars).filter(|n| *n > 0),
        }
    }

    fn phone(&self, event: &InboundEvent) -> Option<String> {
        let adapter = self.channels.adapter(&event.channel)?;
        adapter
            .kind()
            .verified_phone(&event.contact, &event.aliases)
    }
}

pub async fn open_store(config: &Config) -> anyhow::Result<SharedStore> {
    match &config.store {
        StoreLocation::Sqlite(path) => {
            let store = SqliteStore::open(path, config.settings.store.sync)
                .await
                .with_context(|| format!("opening the store {}", path.display()))?
                .with_raw_retention(Duration::from_secs(
                    u64::from(config.settings.store.raw_retention_days) * 24 * 3600,
                ));
            tracing::info!(path = %path.display(), "store: SQLite");
            Ok(Arc::new(store))
        }
        StoreLocation::Redis(url) => {
            let settings = &config.settings.store;
            let shown = crate::store::redis::redact(url);
            let store = RedisStore::open(RedisSettings {
                url: url.clone(),
                prefix: settings.prefix.clone(),
                partitions: settings.partitions,
                takeover_ms: settings.takeover_ms,
                dedupe_ttl_secs: settings.dedupe_ttl_secs,
            })
            .await
            .with_context(|| format!("opening the store {shown}"))?;
            tracing::info!(
                url = %shown,
                prefix = %settings.prefix,
                instance = store.instance(),
                "store: Redis"
            );
            Ok(Arc::new(store))
        }
    }
}

/// Shutdown order: the HTTP server stops taking requests and the orchestrator stops taking
/// events; lanes finish what they hold; the delivery worker keeps sending until they are done,
/// then finishes its sends in flight.
#[allow(clippy::too_many_arguments)]
async fn run(
    listener: TcpListener,
    app_router: axum::Router,
    head_limits: HeadLimits,
    metrics: Metrics,
    orchestrator: Orchestrator,
    delivery: DeliveryWorker,
    paused: bool,
    shutdown: CancellationToken,
    grace: Duration,
    pollers: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let delivery_stop = CancellationToken::new();
    let delivery_task = tokio::spawn(delivery.run(delivery_stop.clone()));
    let orchestrator_task = (!paused).then(|| tokio::spawn(orchestrator.run(shutdown.clone())));
    crate::http::server::serve(listener, app_router, head_limits, metrics, shutdown.clone()).await;
    let drained = async {
        for poller in pollers {
            let _ = poller.await;
        }
        if let Some(task) = orchestrator_task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the orchestrator stopped abnormally");
        }
        delivery_stop.cancel();
        if let Err(e) = delivery_task.await {
            tracing::error!(error = %e, "the delivery worker stopped abnormally");
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "work still in hand after the grace period; it resumes at the next start"
        );
    }
    Ok(())
}
