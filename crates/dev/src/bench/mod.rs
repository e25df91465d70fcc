//! `cargo dev bench`: loads a real gateway process with signed WhatsApp webhooks, with a fake
//! Graph API and a fake LLM in this process, and the same load on a plain axum handler in the
//! same run, then prints what each side did and the ratio. BENCHMARKS.md tells how to read it.

mod process;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_testkit::llm::{self, FakeLlm};
use concierge_testkit::load::{self, Shape};
use concierge_testkit::platform::FakeApi as Graph;
pub use process::{Served, free_port};
pub use report::{Outcome, Side, Turns};

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    NotReady(String),
    #[error("Redis at {0}: {1}")]
    Redis(String, String),
    #[error(transparent)]
    Fake(#[from] concierge_testkit::KitError),
    #[error("{0}")]
    Gateway(String),
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Webhooks stored and acknowledged, processing paused: signature, parse, dedupe, append.
    Ingest,
    /// Full turns on a 0 ms LLM: webhook in, LLM called, reply accepted by the Graph API.
    Turns,
    /// Many conversations waiting at once on a slow (2 s) LLM.
    SlowLlm,
    /// Questions the FAQ answers: full turns with no LLM call.
    Faq,
    /// Full turns on a 0 ms LLM, each message a photo (2000×1500 JPEG, a different one for
    /// each message): downloaded from the Graph API, kept, fitted, and sent to the LLM.
    Media,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Ingest,
        Scenario::Turns,
        Scenario::SlowLlm,
        Scenario::Faq,
        Scenario::Media,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Turns => "turns",
            Scenario::SlowLlm => "slow-llm",
            Scenario::Faq => "faq",
            Scenario::Media => "media",
        }
    }
}

/// The gateway's store in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Redis,
}

/// The options of `concierge bench`; what is not given takes the scenario's default.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The gateway binary (default: `CONCIERGE_BIN`, else `concierge` beside this tool, built
    /// first when missing).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// What to measure (repeatable; default: every scenario).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// The gateway's store (repeatable; default: sqlite).
    #[arg(long = "store", value_enum)]
    pub stores: Vec<StoreKind>,
    /// SQLite's sync mode: full (fsync at every commit) or normal.
    #[arg(long, default_value = "full")]
    pub sync: String,
    /// The Redis server for `--store redis`; the run's keys are deleted afterwards.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Webhooks to send.
    #[arg(long)]
    pub requests: Option<usize>,
    /// Customers they come from, round-robin.
    #[arg(long)]
    pub conversations: Option<usize>,
    /// Requests in flight at once (closed loop; the default, 64).
    #[arg(long, conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Requests a second instead (open loop: a late answer does not slow the sender down).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long the fake LLM takes to answer.
    #[arg(long)]
    pub llm_latency_ms: Option<u64>,
    /// The gateway's `orchestrator.max_parallel_lanes`.
    #[arg(long)]
    pub lanes: Option<usize>,
    /// Give the gateway a `[[webhooks]]` taking every event, POSTed to a receiver in the
    /// bench process that answers 204: the cost of telling the merchant's systems.
    #[arg(long)]
    pub webhooks: bool,
    /// With `--webhooks`: the events it takes, comma-separated (every event by default).
    #[arg(long, default_value = "*")]
    pub webhook_events: String,
    /// Skip the plain axum baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Keep the gateway's folder (config, database, log) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Also print each result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// One run's settings, from the options and the scenario's defaults.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub store: StoreKind,
    pub requests: usize,
    pub conversations: usize,
    pub shape: Shape,
    pub llm_latency: Duration,
    pub lanes: usize,
}

impl Plan {
    pub fn new(options: &Options, scenario: Scenario, store: StoreKind) -> Plan {
        let (requests, conversations, latency_ms, lanes) = match scenario {
            Scenario::Ingest => (20_000, 1_000, 0, 256),
            Scenario::Turns => (20_000, 1_000, 0, 256),
            Scenario::SlowLlm => (10_000, 10_000, 2_000, 10_000),
            Scenario::Faq => (20_000, 1_000, 0, 256),
            Scenario::Media => (500, 50, 0, 256),
        };
        let shape = match (options.rate, options.concurrency) {
            (Some(rate), _) => Shape::Rate(rate),
            (None, Some(n)) => Shape::Concurrency(n),
            (None, None) => Shape::Concurrency(64),
        };
        Plan {
            scenario,
            store,
            requests: options.requests.unwrap_or(requests).max(1),
            conversations: options.conversations.unwrap_or(conversations).max(1),
            shape,
            llm_latency: Duration::from_millis(options.llm_latency_ms.unwrap_or(latency_ms)),
            lanes: options.lanes.unwrap_or(lanes).max(1),
        }
    }

    fn answers(&self) -> bool {
        self.scenario != Scenario::Ingest
    }
}

const SECRET: &str = "bench-app-secret";
/// The budgets of new conversations and LLM calls a minute: far above any load the bench
/// makes, so every turn pays for the check (0 would skip it) and none is refused.
const BUDGET: u32 = 1_000_000_000;

/// The agent every LLM turn runs: one prompt, no tools.
const FRONT_DESK: &str = "+++\ndescription = \"Answers every message.\"\nentry = true\n+++\nYou are the front desk of {{ merchant }}. Answer briefly.\n";

/// The shipped FAQ, so FAQ-tier turns match what a deployment answers.
const FAQ: &str = include_str!("../../../../prompts/faq.md");

/// Runs every scenario on every store the options name, printing each result as it comes.
pub async fn run(options: &Options) -> Result<Vec<Outcome>, BenchError> {
    let binary = crate::gateway::binary(options.gateway.as_deref()).map_err(BenchError::Gateway)?;
    let scenarios = if options.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        options.scenarios.clone()
    };
    let stores = if options.stores.is_empty() {
        vec![StoreKind::Sqlite]
    } else {
        options.stores.clone()
    };
    println!("{}", report::machine());
    let mut outcomes = Vec::new();
    for &scenario in &scenarios {
        for &store in &stores {
            let plan = Plan::new(options, scenario, store);
            let outcome = run_one(&binary, options, &plan).await?;
            println!("{}", outcome.render());
            if options.json {
                println!("{}", outcome.json());
            }
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// One scenario on one store: the baseline, then the gateway, under the same load.
pub async fn run_one(binary: &Path, options: &Options, plan: &Plan) -> Result<Outcome, BenchError> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let texts = texts(plan.scenario);
    let carries = match plan.scenario {
        Scenario::Media => load::Carries::Photo {
            photos: plan.requests,
        },
        _ => load::Carries::Text,
    };
    let shots = Arc::new(load::shots_of(
        carries,
        plan.requests,
        plan.conversations,
        SECRET,
        &run_id,
        texts,
    ));
    let concurrency = match plan.shape {
        Shape::Concurrency(n) => n,
        Shape::Rate(_) => 256,
    };
    let client = load::client(concurrency);

    let plain = if options.no_baseline {
        None
    } else {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("concierge-bench-plain-{run_id}.log"));
        let bind = format!("127.0.0.1:{port}");
        let tool = std::env::current_exe()
            .map_err(|e| BenchError::Io("find this tool's path".into(), e))?;
        let served = Served::start(
            &tool,
            &["bench-plain", "--bind", &bind],
            &[],
            port,
            "/healthz",
            log.clone(),
        )
        .await?;
        let result = load::drive(
            &client,
            &format!("{}/webhooks/whatsapp", served.base),
            shots.clone(),
            plan.shape,
        )
        .await;
        let memory = served.memory();
        served.stop();
        let _ = std::fs::remove_file(&log);
        Some(Side::from_load(&result, memory))
    };

    let graph = Graph::start().await?;
    if let load::Carries::Photo { photos } = carries {
        for n in 0..photos {
            graph.serve_media(&load::photo_id(n), "image/jpeg", photo(n, 2000, 1500));
        }
    }
    let graph_url = graph.graph_api_base();
    let llm = FakeLlm::with(llm::Options {
        latency: llm::Latency::Fixed(plan.llm_latency),
        record: false,
        fallback: Arc::new(|request| format!("echo: {}", llm::last_user_text(request))),
    })
    .await?;
    let llm_url = llm.url.clone();
    let folder = std::env::temp_dir().join(format!("concierge-bench-{run_id}"));
    let port = free_port()?;
    write_deployment(&folder, plan, &options.sync, port, &graph_url, &llm_url)?;
    if options.webhooks {
        let receiver = concierge_testkit::serve(
            axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .await
        .map_err(|e| {
            BenchError::Io(
                "start the webhook receiver".into(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let config = folder.join("concierge.toml");
        let mut text = std::fs::read_to_string(&config)
            .map_err(|e| BenchError::Io(format!("read {}", config.display()), e))?;
        let events: Vec<String> = options
            .webhook_events
            .split(',')
            .map(|e| format!("\"{}\"", e.trim()))
            .collect();
        text.push_str(&format!(
            "\n[[webhooks]]\nname = \"bench\"\nurl = \"{receiver}/hooks\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=\"\nevents = [{}]\n",
            events.join(", ")
        ));
        std::fs::write(&config, text)
            .map_err(|e| BenchError::Io(format!("write {}", config.display()), e))?;
    }
    let prefix = format!("bench-{run_id}");
    let mut env = vec![("RUST_LOG".to_string(), "warn".to_string())];
    if plan.store == StoreKind::Redis {
        env.push(("CONCIERGE__STORE__URL".into(), options.redis_url.clone()));
        env.push(("CONCIERGE__STORE__PREFIX".into(), prefix.clone()));
    }
    let config = folder.join("concierge.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let gateway = Served::start(
        binary,
        &["serve", "--config", &config_arg],
        &env,
        port,
        "/readyz",
        folder.join("gateway.log"),
    )
    .await?;
    // Idle: started, connected, nothing asked yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = gateway.memory();

    let result = load::drive(
        &client,
        &format!("{}/webhooks/whatsapp", gateway.base),
        shots.clone(),
        plan.shape,
    )
    .await;
    let turns = if plan.answers() {
        Some(wait_for_turns(&graph, &llm, &shots, &result, plan).await)
    } else {
        None
    };
    let memory = gateway.memory();
    gateway.stop();
    if plan.store == StoreKind::Redis {
        forget_redis(&options.redis_url, &prefix).await?;
    }
    if options.keep {
        println!("(kept {})", folder.display());
    } else {
        let _ = std::fs::remove_dir_all(&folder);
    }
    Ok(Outcome {
        plan: plan.clone(),
        sync: options.sync.clone(),
        plain,
        gateway: Side::from_load(&result, memory),
        idle_rss: idle.rss,
        turns,
        llm_calls: llm.count(),
        indicators: graph.indicators(),
        unknown_graph_calls: graph.unknown(),
    })
}

/// Photo `n`: a `width`×`height` JPEG (2000×1500 as a phone sends one in the media
/// scenario), a gradient with `n` in it, so no two are the same bytes and each is kept and
/// fitted anew.
pub(crate) fn photo(n: usize, width: u32, height: u32) -> Vec<u8> {
    let seed = n as u32;
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            ((x + seed) % 256) as u8,
            ((y * 3 + seed) % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    let encoded =
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&picture);
    if encoded.is_err() {
        out.clear();
    }
    out
}

/// The text of message `i`: an id the echo LLM hands back, or one of the FAQ's questions.
fn texts(scenario: Scenario) -> impl Fn(usize) -> String {
    let questions: Vec<String> = match scenario {
        Scenario::Faq => concierge::orchestrator::faq::FaqIndex::parse(FAQ)
            .map(|index| index.entries().iter().map(|e| e.question.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    move |i| {
        if questions.is_empty() {
            format!("message {i}")
        } else {
            questions[i % questions.len()].clone()
        }
    }
}

/// Waits until every acknowledged message has its reply, or nothing has moved for 30 s, and
/// pairs the replies with the messages (per customer, in order: each turn answers one).
async fn wait_for_turns(
    graph: &Graph,
    llm: &FakeLlm,
    shots: &[load::Shot],
    result: &load::LoadResult,
    plan: &Plan,
) -> Turns {
    let expected = result.ok() as u64;
    let mut last = ((graph.accepted_count() as u64), llm.count(), Instant::now());
    let stall = Duration::from_secs(30).max(plan.llm_latency * 3);
    while (graph.accepted_count() as u64) < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = ((graph.accepted_count() as u64), llm.count());
        if now != (last.0, last.1) {
            last = (now.0, now.1, Instant::now());
        } else if last.2.elapsed() > stall {
            break;
        }
    }
    let mut latencies = Vec::with_capacity(shots.len());
    let mut extra = 0u64;
    let mut last_reply = result.started;
    for c in 0..plan.conversations {
        let replies = graph.accepted_at(&load::phone(c));
        let sent: Vec<&load::Sent> = result
            .sent
            .iter()
            .filter(|s| shots[s.index].conversation == c && (200..300).contains(&s.status))
            .collect();
        extra += replies.len().saturating_sub(sent.len()) as u64;
        for (reply, sent) in replies.iter().zip(sent) {
            latencies.push(reply.saturating_duration_since(sent.due));
            last_reply = last_reply.max(*reply);
        }
    }
    Turns::new(
        expected,
        graph.accepted_count() as u64,
        extra,
        latencies,
        last_reply - result.started,
    )
}

/// Writes the gateway's folder: concierge.toml, the WhatsApp channel pointing at the fake
/// Graph API, the agent and the FAQ.
fn write_deployment(
    folder: &Path,
    plan: &Plan,
    sync: &str,
    port: u16,
    graph_url: &str,
    llm_url: &str,
) -> Result<(), BenchError> {
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text)
            .map_err(|e| BenchError::Io(format!("write {}", path.display()), e))
    };
    for sub in ["channels", "prompts", "data"] {
        std::fs::create_dir_all(folder.join(sub))
            .map_err(|e| BenchError::Io(format!("create {}", folder.join(sub).display()), e))?;
    }
    let paused = plan.scenario == Scenario::Ingest;
    // Only the FAQ scenario lets the FAQ answer; the others go to the LLM every time.
    let threshold = if plan.scenario == Scenario::Faq {
        0.5
    } else {
        1.0
    };
    let timeout = (plan.llm_latency.as_secs() + 30).max(30);
    write(
        folder.join("concierge.toml"),
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 5\n\n\
             [store]\nurl = \"sqlite:data/bench.db\"\nsync = \"{sync}\"\n\n\
             [orchestrator]\npaused = {paused}\nburst_window_ms = 0\ncontact_turns_per_minute = 0\nnew_conversations_per_minute = {BUDGET}\nmax_parallel_lanes = {lanes}\n\n\
             [faq]\nthreshold = {threshold}\n\n\
             [llm]\nprovider = \"openai_compatible\"\nmodel = \"bench\"\nbase_url = \"{llm_url}/v1\"\napi_key = \"bench-key\"\ntimeout_secs = {timeout}\nmax_retries = 0\n\n\
             [agents]\nllm_calls_per_minute = {BUDGET}\n\n\
             [merchant]\nname = \"Maison Bench\"\ntimezone = \"Europe/Paris\"\n",
            lanes = plan.lanes,
        ),
    )?;
    write(
        folder.join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"bench-token\"\napp_secret = \"{SECRET}\"\nverify_token = \"bench-verify\"\napi_base = \"{graph_url}\"\nmessages_per_second = 100000\nnew_conversations_per_minute = {BUDGET}\n",
            load::PHONE_NUMBER_ID
        ),
    )?;
    write(folder.join("prompts/front_desk.md"), FRONT_DESK.to_string())?;
    write(folder.join("prompts/faq.md"), FAQ.to_string())?;
    Ok(())
}

/// Deletes the run's keys from Redis.
pub async fn forget_redis(url: &str, prefix: &str) -> Result<(), BenchError> {
    let fail = |e: redis::RedisError| {
        BenchError::Redis(concierge::store::redis::redact(url), e.to_string())
    };
    let client = redis::Client::open(url).map_err(fail)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(fail)?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The plain baseline: an axum server whose one route reads the body and answers 200, run
/// in its own process (`concierge-dev bench-plain`) like the gateway.
pub fn plain_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/webhooks/{channel}",
            axum::routing::post(|_body: axum::body::Bytes| async { "ok" }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
}
