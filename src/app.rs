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
#[cfg(feature = "telegram")]
use crate::channels::telegram::{self, poll::EventSink};
use crate::channels::{ChannelAdapter, ChannelConfig, Registry};
use crate::config::{Config, DeliveryConfig, ServerConfig, StoreLocation};
use crate::delivery::DeliveryWorker;
use crate::domain::{ChannelId, InboundEvent, PlatformMessageId};
use crate::handoff::keywords::Keywords;
use crate::handoff::{Bus, Desk, DeskSettings};
use crate::http::server::HeadLimits;
use crate::http::visitors::VisitorBudgets;
use crate::http::welcome::{MetricsAt, Welcome};
use crate::http::{AppState, HttpLimits, MetricsPage, StreamCaps, metrics_router, router};
use crate::media::{MediaStore, Transcriber};
use crate::orchestrator::{
    AgentResponder, AgentSettings, BudgetSettings, Budgets, ChannelHints, ChannelProfile,
    FaqResponder, HoldingResponder, MediaIntake, Orchestrator, Responder, ResponderChain,
    TriggerResponder,
};
use crate::store::SharedStore;
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::telemetry::Metrics;
use crate::webhooks::{WebhookWorker, Webhooks};

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
        let store = store_or_open(parts.store, &config).await?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let handles = Handles::new(store, &config);
        let channels = channels(&config, parts.adapters, &handles.store)?;
        let hints: Arc<dyn ChannelHints> = Arc::new(AdapterHints::new(channels.clone()));
        let agents = agent_runtime(&config, &handles.metrics)?;
        let desk = handoff_desk(&config, &handles, agents.clone())?;
        let media = media_store(&config)?;
        let responder = parts
            .responder
            .unwrap_or_else(|| responder_chain(&config, agents, hints.clone(), &media, &handles));
        let orchestrator = orchestrator(&config, &handles, responder, hints, &desk)
            .with_media(media_intake(&config, &handles, &channels, &media)?)
            .with_webhooks(handles.webhooks.clone());
        let delivery =
            delivery_worker(&config, &handles, &channels, &desk).with_media(media.clone());
        let mut http = bind_http(&config, &handles, &channels, &desk, &media).await?;
        let metrics_addr = http.metrics_port.as_ref().map(|port| port.addr);
        log_start(&config, addr);
        let mut workers = spawn_workers(&channels, &handles, &desk);
        if config.settings.media.retention_days > 0 {
            let (shutdown, metrics) = (handles.shutdown.clone(), handles.metrics.clone());
            workers.push(tokio::spawn(crate::media::retention::run(
                media.clone(),
                config.settings.media.retention_days,
                async move { shutdown.cancelled().await },
                move |n| metrics.media_swept(n as u64),
            )));
        }
        workers.extend(http.serve_metrics(&handles));
        let batches = crate::notify::BatchWorker::new(
            handles.store.clone(),
            notifier(&config, &handles, &channels),
            &config.settings.notifications,
            handles.outbox_wake.clone(),
        );
        workers.push(tokio::spawn(batches.run(handles.shutdown.clone())));
        if !config.settings.webhooks.is_empty() {
            let worker = WebhookWorker::new(
                handles.store.clone(),
                config.settings.webhooks.clone(),
                webhook_client()?,
                handles.webhook_wake.clone(),
                handles.metrics.clone(),
            );
            workers.push(tokio::spawn(worker.run(handles.shutdown.clone())));
        }
        let welcome = Welcome {
            addr,
            metrics: metrics_at(metrics_addr, http.metrics_page.token.is_some()),
            webchat: channels.first_webchat().is_some(),
        };
        let runtime = Runtime {
            listener,
            router: http.router,
            head_limits: http.head_limits,
            metrics: handles.metrics.clone(),
            orchestrator,
            delivery,
            paused: config.settings.orchestrator.paused,
            shutdown: handles.shutdown.clone(),
            grace: Duration::from_secs(config.settings.server.shutdown_grace_secs),
            workers,
        };
        Ok(App {
            addr,
            metrics_addr,
            welcome,
            store: handles.store,
            metrics: handles.metrics,
            shutdown: handles.shutdown,
            task: tokio::spawn(runtime.run()),
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

/// The handles most parts share: the store, the counters, the wake-ups between the HTTP
/// handlers, the orchestrator and the delivery worker, and the shutdown signal.
struct Handles {
    store: SharedStore,
    metrics: Metrics,
    /// Rung when an event is stored: the orchestrator looks at the inbox.
    inbox_wake: Arc<Notify>,
    /// Rung when a reply is queued: the delivery worker looks at the outbox.
    outbox_wake: Arc<Notify>,
    /// Rung when an event is queued for the webhooks.
    webhook_wake: Arc<Notify>,
    /// Queues events for `[[webhooks]]`.
    webhooks: Webhooks,
    shutdown: CancellationToken,
}

impl Handles {
    fn new(store: SharedStore, config: &Config) -> Self {
        let metrics = Metrics::new();
        let webhook_wake = Arc::new(Notify::new());
        let webhooks = if config.settings.webhooks.is_empty() {
            Webhooks::none()
        } else {
            Webhooks::new(
                store.clone(),
                config.settings.webhooks.clone(),
                webhook_wake.clone(),
                metrics.clone(),
            )
        };
        Self {
            store,
            metrics,
            inbox_wake: Arc::new(Notify::new()),
            outbox_wake: Arc::new(Notify::new()),
            webhook_wake,
            webhooks,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The store the caller supplied, or the configured one, opened.
async fn store_or_open(
    supplied: Option<SharedStore>,
    config: &Config,
) -> anyhow::Result<SharedStore> {
    match supplied {
        Some(store) => Ok(store),
        None => open_store(config).await,
    }
}

/// The client the channels send with: a send may take `send_timeout_secs` (at least one).
/// Where media is kept: the configured bucket, else the media folder.
fn media_store(config: &Config) -> anyhow::Result<MediaStore> {
    let settings = &config.settings.media;
    match settings.bucket() {
        Some(Ok(bucket)) => {
            let http = reqwest::Client::builder()
                .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .context("building the media bucket's HTTP client")?;
            MediaStore::in_bucket(&bucket, settings.max_bytes, http)
                .with_context(|| format!("opening the media bucket {}", settings.store))
        }
        Some(Err((key, problem))) => anyhow::bail!("[media] {key}: {problem}"),
        None => MediaStore::in_folder(&config.media_dir, settings.max_bytes)
            .with_context(|| format!("opening the media folder {}", config.media_dir.display())),
    }
}

fn http_client(delivery: &DeliveryConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(delivery.send_timeout_secs.max(1)))
        .build()
        .context("building the HTTP client")
}

/// The configured channels and the caller's, with the web chats' live pages connected
/// across instances when the store can fan events out.
fn channels(
    config: &Config,
    adapters: Vec<Arc<dyn ChannelAdapter>>,
    store: &SharedStore,
) -> anyhow::Result<Registry> {
    let http = http_client(&config.settings.delivery)?;
    let mut channels = Registry::build(&config.channels, &http);
    for adapter in adapters {
        channels.insert(adapter);
    }
    if let Some(fanout) = store.fanout() {
        // Visitors' pages may be connected to any instance.
        for webchat in channels.webchats() {
            webchat.hub().connect(fanout.clone());
        }
    }
    Ok(channels)
}

/// The human side: teams, the queue, concierges' actions, and the console's events (shared
/// between instances when the store can fan them out).
fn handoff_desk(
    config: &Config,
    handles: &Handles,
    agents: Option<Arc<AgentRuntime>>,
) -> anyhow::Result<Arc<Desk>> {
    let desk = Desk::new(
        desk_settings(config),
        handles.store.clone(),
        Bus::shared(handles.store.fanout()),
        agents,
        handles.metrics.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(desk))
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

/// The configured responder chain: handoff triggers, the FAQ, the agents when an `[llm]` is
/// configured, and last the holding reply (the thread goes to a person).
fn responder_chain(
    config: &Config,
    agents: Option<Arc<AgentRuntime>>,
    hints: Arc<dyn ChannelHints>,
    media: &MediaStore,
    handles: &Handles,
) -> Arc<dyn Responder> {
    let (webhooks, metrics) = (&handles.webhooks, &handles.metrics);
    let settings = &config.settings;
    // Shared: the agents give the same holding reply when they cannot answer or a budget is
    // spent.
    let holding = Arc::new(HoldingResponder::new(
        settings.responder.holding.clone(),
        settings.responder.holding_repeat_secs,
    ));
    let mut steps: Vec<Box<dyn Responder>> = vec![
        // STOP and START first: an opt-out is honoured whatever else the message could be.
        Box::new(
            crate::orchestrator::ConsentResponder::new(settings.consent.clone())
                .with_webhooks(webhooks.clone()),
        ),
        // A cart button is the gateway's to answer, without the LLM.
        Box::new(crate::orchestrator::CartResponder::new(
            settings.commerce.clone(),
            metrics.clone(),
        )),
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
        let mut agents =
            AgentResponder::new(runtime, agent_settings(config), hints, holding.clone())
                .with_budgets(budgets(config));
        if settings.media.images_to_llm {
            agents = agents.with_images(media.clone());
        }
        match crate::orchestrator::MediaSender::client() {
            Ok(http) => {
                agents =
                    agents.with_sender(crate::orchestrator::MediaSender::new(media.clone(), http));
            }
            Err(e) => tracing::warn!(error = %e, "agents cannot send pictures: no HTTP client"),
        }
        // OpenAI's and Anthropic's own APIs read PDFs; servers that only speak the chat
        // shape (openai_compatible, Ollama) get a document's description.
        if settings.llm.as_ref().is_some_and(|llm| {
            matches!(
                llm.provider,
                crate::agents::LlmProvider::Openai | crate::agents::LlmProvider::Anthropic
            )
        }) {
            agents = agents.with_files();
        }
        steps.push(Box::new(agents));
    }
    steps.push(Box::new(SharedResponder(holding)));
    Arc::new(ResponderChain::new(steps))
}

/// What the agents' responder reads from the configuration.
fn agent_settings(config: &Config) -> AgentSettings {
    let settings = &config.settings;
    AgentSettings {
        merchant: settings.merchant.name.clone(),
        business_hours: settings.merchant.business_hours.clone(),
        timezone: config.timezone.clone(),
        history_messages: settings.agents.history_messages,
        redact_pii: settings.agents.redact_pii,
        conversation_token_budget: settings.agents.conversation_token_budget,
    }
}

/// The lanes: events from the inbox, in order per conversation, answered by `responder`.
fn orchestrator(
    config: &Config,
    handles: &Handles,
    responder: Arc<dyn Responder>,
    hints: Arc<dyn ChannelHints>,
    desk: &Arc<Desk>,
) -> Orchestrator {
    let settings = &config.settings.orchestrator;
    Orchestrator::new(
        handles.store.clone(),
        responder,
        handles.inbox_wake.clone(),
        handles.outbox_wake.clone(),
        settings.max_parallel_lanes,
        hints,
        handles.metrics.clone(),
    )
    .with_burst_window(settings.burst_window_ms)
    .with_contact_rate(
        settings.contact_turns_per_minute,
        settings.contact_turn_burst,
    )
    .with_desk(desk.clone())
    .with_held_responder(Arc::new(
        crate::orchestrator::ConsentResponder::new(config.settings.consent.clone())
            .with_webhooks(handles.webhooks.clone()),
    ))
}

/// The client webhooks are POSTed with: rustls, no redirects (a receiver that answers one
/// has not taken the event), no proxy from the environment.
fn webhook_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Concierge-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the webhooks' HTTP client")
}

/// What fetches customers' media before their turn.
fn media_intake(
    config: &Config,
    handles: &Handles,
    channels: &Registry,
    media: &MediaStore,
) -> anyhow::Result<MediaIntake> {
    let intake = MediaIntake::new(
        channels.clone(),
        media.clone(),
        handles.store.clone(),
        Duration::from_millis(config.settings.media.wait_ms),
        handles.metrics.clone(),
    );
    Ok(match &config.settings.transcription {
        Some(transcription) => intake.with_transcriber(Transcriber::new(
            transcription.clone(),
            http_client(&config.settings.delivery)?,
        )),
        None => intake,
    })
}

/// The outbox worker, publishing to the consoles what became of concierges' replies.
fn delivery_worker(
    config: &Config,
    handles: &Handles,
    channels: &Registry,
    desk: &Desk,
) -> DeliveryWorker {
    DeliveryWorker::new(
        handles.store.clone(),
        handles.store.clone(),
        handles.store.clone(),
        channels.clone(),
        handles.outbox_wake.clone(),
        &config.settings.delivery,
        handles.metrics.clone(),
    )
    .with_events(desk.events.clone())
    .with_webhooks(handles.webhooks.clone())
}

/// The HTTP side, ready to serve: the public router, its limits, and `/metrics`.
struct Http {
    router: axum::Router,
    limits: HttpLimits,
    head_limits: HeadLimits,
    metrics_page: MetricsPage,
    /// `[server] metrics_bind`, bound.
    metrics_port: Option<MetricsPort>,
}

/// `/metrics`'s own port, bound.
struct MetricsPort {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Builds the public router and binds `/metrics`'s own port when one is configured.
async fn bind_http(
    config: &Config,
    handles: &Handles,
    channels: &Registry,
    desk: &Arc<Desk>,
    media: &MediaStore,
) -> anyhow::Result<Http> {
    let server = &config.settings.server;
    let limits = http_limits(server, config.settings.media.max_bytes);
    let metrics_page = MetricsPage {
        metrics: handles.metrics.clone(),
        token: server.metrics_token.clone(),
    };
    let metrics_port = bind_metrics(config.metrics_bind).await?;
    let router = router(
        app_state(config, handles, channels, desk, media),
        limits,
        public_metrics(&metrics_page, metrics_port.is_some()),
    );
    Ok(Http {
        router,
        limits,
        head_limits: head_limits(server),
        metrics_page,
        metrics_port,
    })
}

/// `/metrics`'s own port, when `[server] metrics_bind` gives one (port 0: a free one).
async fn bind_metrics(at: Option<SocketAddr>) -> anyhow::Result<Option<MetricsPort>> {
    let Some(at) = at else {
        return Ok(None);
    };
    let listener = TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen for /metrics on {at}"))?;
    let addr = listener
        .local_addr()
        .context("reading the metrics address")?;
    Ok(Some(MetricsPort { listener, addr }))
}

/// The page the public port serves at `/metrics`: none when it has a port of its own, and
/// none without a token (the counters are not for anyone who asks).
fn public_metrics(page: &MetricsPage, own_port: bool) -> Option<MetricsPage> {
    (!own_port && page.token.is_some()).then(|| page.clone())
}

/// What every request handler shares.
fn app_state(
    config: &Config,
    handles: &Handles,
    channels: &Registry,
    desk: &Arc<Desk>,
    media: &MediaStore,
) -> AppState {
    let server = &config.settings.server;
    AppState {
        store: handles.store.clone(),
        channels: channels.clone(),
        inbox_wake: handles.inbox_wake.clone(),
        outbox_wake: handles.outbox_wake.clone(),
        desk: desk.clone(),
        metrics: handles.metrics.clone(),
        shutdown: handles.shutdown.clone(),
        max_event_age_ms: max_event_age_ms(server.max_event_age_secs),
        streams: crate::http::streams::Streams::new(handles.metrics.clone()),
        stream_caps: StreamCaps {
            per_key: server.max_streams_per_key,
            per_concierge: server.max_streams_per_concierge,
        },
        visitors: Arc::new(VisitorBudgets::new(config.channels.iter().filter_map(
            |(id, channel)| match channel {
                ChannelConfig::Webchat(c) => {
                    Some((id.clone(), c.new_conversations_per_minute_per_ip))
                }
                _ => None,
            },
        ))),
        media: Some(media.clone()),
        webhooks: handles.webhooks.clone(),
        notifier: notifier(config, handles, channels),
    }
}

/// Checks and queues notifications, for the API and the batches.
fn notifier(config: &Config, handles: &Handles, channels: &Registry) -> crate::notify::Notifier {
    crate::notify::Notifier::new(
        handles.store.clone(),
        handles.store.clone(),
        channels.clone(),
        config.catalogue.clone(),
        handles.metrics.clone(),
    )
}

/// `[server] max_event_age_secs` in milliseconds; 0 is no limit.
fn max_event_age_ms(secs: u64) -> Option<i64> {
    match secs {
        0 => None,
        secs => Some(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
    }
}

/// The limits on a request's body and time. A timeout of 0 would refuse every request, so
/// it counts as one second.
fn http_limits(server: &ServerConfig, media_max_bytes: u64) -> HttpLimits {
    HttpLimits {
        body_limit_bytes: server.body_limit_bytes,
        upload_limit_bytes: usize::try_from(media_max_bytes).unwrap_or(usize::MAX),
        body_read_timeout: Duration::from_secs(server.body_read_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(server.request_timeout_secs.max(1)),
    }
}

/// The limits on a connection and a request's head; timeouts of 0 count as one second.
fn head_limits(server: &ServerConfig) -> HeadLimits {
    HeadLimits {
        read_timeout: Duration::from_secs(server.header_read_timeout_secs.max(1)),
        max_bytes: server.max_header_bytes,
        max_connections: server.max_connections,
        write_timeout: Duration::from_secs(server.write_timeout_secs.max(1)),
    }
}

/// Says what is listening and how messages will be answered.
fn log_start(config: &Config, addr: SocketAddr) {
    let settings = &config.settings;
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
    if settings.orchestrator.paused {
        tracing::warn!(
            "processing is paused ([orchestrator] paused = true): messages are stored and acknowledged, not answered"
        );
    }
}

/// Starts the background workers that stop on the shutdown signal: one poller per Telegram
/// channel that polls, and the queue's clock (SLAs, offers).
fn spawn_workers(channels: &Registry, handles: &Handles, desk: &Arc<Desk>) -> Vec<JoinHandle<()>> {
    #[cfg(not(feature = "telegram"))]
    let mut workers: Vec<JoinHandle<()>> = {
        let _ = channels;
        Vec::new()
    };
    #[cfg(feature = "telegram")]
    let mut workers: Vec<_> = channels
        .telegram_pollers()
        .into_iter()
        .map(|bot| {
            let sink: Arc<dyn EventSink> = Arc::new(InboxSink {
                store: handles.store.clone(),
                inbox_wake: handles.inbox_wake.clone(),
                metrics: handles.metrics.clone(),
            });
            tokio::spawn(telegram::poll::run(bot, sink, handles.shutdown.clone()))
        })
        .collect();
    workers.push(tokio::spawn(crate::handoff::worker::run(
        desk.clone(),
        handles.metrics.clone(),
        handles.shutdown.clone(),
    )));
    workers
}

impl Http {
    /// Serves `/metrics` on its own port, when it has one, until the shutdown signal; says
    /// where it is either way.
    fn serve_metrics(&mut self, handles: &Handles) -> Option<JoinHandle<()>> {
        let Some(port) = self.metrics_port.take() else {
            log_metrics_elsewhere(&self.metrics_page);
            return None;
        };
        tracing::info!(addr = %port.addr, token = self.metrics_page.token.is_some(), "/metrics is served on a port of its own");
        Some(tokio::spawn(crate::http::server::serve(
            port.listener,
            metrics_router(self.metrics_page.clone(), self.limits),
            self.head_limits,
            handles.metrics.clone(),
            handles.shutdown.clone(),
        )))
    }
}

/// Says where `/metrics` is when it has no port of its own.
fn log_metrics_elsewhere(page: &MetricsPage) {
    if page.token.is_some() {
        tracing::info!("/metrics is served on the public port, behind its token");
    } else {
        tracing::info!(
            "/metrics is not served: set [server] metrics_bind or metrics_token to scrape it"
        );
    }
}

/// Where `/metrics` is, for the start-up lines.
fn metrics_at(own_port: Option<SocketAddr>, token: bool) -> MetricsAt {
    match (own_port, token) {
        (Some(addr), token) => MetricsAt::OwnPort { addr, token },
        (None, true) => MetricsAt::PublicPort,
        (None, false) => MetricsAt::NotServed,
    }
}

/// The parts the app's task runs until shutdown.
struct Runtime {
    listener: TcpListener,
    router: axum::Router,
    head_limits: HeadLimits,
    metrics: Metrics,
    orchestrator: Orchestrator,
    delivery: DeliveryWorker,
    /// `[orchestrator] paused`: events are stored, not answered.
    paused: bool,
    shutdown: CancellationToken,
    /// How long the work in hand may take to finish after the shutdown signal.
    grace: Duration,
    /// The pollers, the queue's clock and `/metrics`'s own server.
    workers: Vec<JoinHandle<()>>,
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
        media_hosts: settings.media.send_hosts.clone(),
        flows: settings.flows.clone(),
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
#[cfg(feature = "telegram")]
struct InboxSink {
    store: SharedStore,
    inbox_wake: Arc<Notify>,
    metrics: Metrics,
}

#[cfg(feature = "telegram")]
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

impl Runtime {
    /// Shutdown order: the HTTP server stops taking requests and the orchestrator stops
    /// taking events; lanes finish what they hold; the delivery worker keeps sending until
    /// they are done, then finishes its sends in flight.
    async fn run(self) -> anyhow::Result<()> {
        let Runtime {
            listener,
            router,
            head_limits,
            metrics,
            orchestrator,
            delivery,
            paused,
            shutdown,
            grace,
            workers,
        } = self;
        let delivery_stop = CancellationToken::new();
        let delivery_task = tokio::spawn(delivery.run(delivery_stop.clone()));
        let orchestrator_task = (!paused).then(|| tokio::spawn(orchestrator.run(shutdown.clone())));
        crate::http::server::serve(listener, router, head_limits, metrics, shutdown.clone()).await;
        let drained = async {
            for worker in workers {
                let _ = worker.await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_age_of_zero_is_no_limit() {
        assert_eq!(max_event_age_ms(0), None);
        assert_eq!(max_event_age_ms(7 * 24 * 3600), Some(604_800_000));
    }

    #[test]
    fn an_event_age_past_i64_is_capped() {
        assert_eq!(max_event_age_ms(u64::MAX), Some(i64::MAX));
    }

    #[test]
    fn timeouts_of_zero_count_as_one_second() {
        let server = ServerConfig {
            request_timeout_secs: 0,
            header_read_timeout_secs: 0,
            body_read_timeout_secs: 0,
            write_timeout_secs: 0,
            ..ServerConfig::default()
        };
        let limits = http_limits(&server, 1);
        assert_eq!(limits.request_timeout, Duration::from_secs(1));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(1));
        let head = head_limits(&server);
        assert_eq!(head.read_timeout, Duration::from_secs(1));
        assert_eq!(head.write_timeout, Duration::from_secs(1));
    }

    #[test]
    fn limits_come_from_the_server_section() {
        let server = ServerConfig::default();
        let limits = http_limits(&server, 16 << 20);
        assert_eq!(limits.body_limit_bytes, server.body_limit_bytes);
        assert_eq!(limits.upload_limit_bytes, 16 << 20);
        assert_eq!(
            limits.request_timeout,
            Duration::from_secs(server.request_timeout_secs)
        );
        let head = head_limits(&server);
        assert_eq!(head.max_bytes, server.max_header_bytes);
        assert_eq!(head.max_connections, server.max_connections);
    }

    fn page(token: Option<&str>) -> MetricsPage {
        MetricsPage {
            metrics: Metrics::new(),
            token: token.map(crate::config::Secret::new),
        }
    }

    #[test]
    fn the_public_port_serves_metrics_only_behind_a_token_and_without_a_port_of_their_own() {
        assert!(public_metrics(&page(Some("t")), false).is_some());
        assert!(public_metrics(&page(None), false).is_none());
        assert!(public_metrics(&page(Some("t")), true).is_none());
        assert!(public_metrics(&page(None), true).is_none());
    }

    #[test]
    fn the_welcome_says_where_metrics_are() {
        let at = SocketAddr::from(([127, 0, 0, 1], 9090));
        assert_eq!(
            metrics_at(Some(at), true),
            MetricsAt::OwnPort {
                addr: at,
                token: true
            }
        );
        assert_eq!(
            metrics_at(Some(at), false),
            MetricsAt::OwnPort {
                addr: at,
                token: false
            }
        );
        assert_eq!(metrics_at(None, true), MetricsAt::PublicPort);
        assert_eq!(metrics_at(None, false), MetricsAt::NotServed);
    }
}
