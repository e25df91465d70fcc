//! `cargo dev chaos`: signed webhooks from many customers, some sent twice, to a real gateway
//! process that is killed with SIGKILL every few hundred milliseconds and restarted on the
//! same store, with a fake platform (that can also fail sends) and a fake LLM in this
//! process; then a table of what was accepted, lost, processed twice, sent twice and
//! answered out of order. The bar is zero in each column.

mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;

use crate::bench::{BenchError, Served, StoreKind, free_port};
pub use report::Row;

const SECRET: &str = "chaos-app-secret";

/// The options of `concierge chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The gateway binary (default: `CONCIERGE_BIN`, else `concierge` beside this tool, built
    /// first when missing).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// The gateway's store (repeatable; default: sqlite and redis).
    #[arg(long = "store", value_enum)]
    pub stores: Vec<StoreKind>,
    /// Webhooks to send, duplicates included.
    #[arg(long, default_value_t = 30_000)]
    pub webhooks: usize,
    /// Customers they come from.
    #[arg(long, default_value_t = 100)]
    pub conversations: usize,
    /// Share of the webhooks that repeat an earlier one, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub duplicates_percent: f64,
    /// The gateway lives at least this long between kills…
    #[arg(long, default_value_t = 100)]
    pub kill_min_ms: u64,
    /// …and at most this long.
    #[arg(long, default_value_t = 500)]
    pub kill_max_ms: u64,
    /// Keep killing for at least this long from the start, after every webhook was
    /// acknowledged too (0: the kills stop with the last acknowledgement).
    #[arg(long, default_value_t = 0)]
    pub kill_for_secs: u64,
    /// Share of message sends the platform fails (429, 500, a late answer, a connection
    /// closed after or before accepting), in percent.
    #[arg(long, default_value_t = 0.0)]
    pub faults_percent: f64,
    /// The fake LLM answers after 0 to this many milliseconds.
    #[arg(long, default_value_t = 20)]
    pub llm_max_ms: u64,
    /// How long to wait, once the kills stop, for every accepted message to be answered.
    #[arg(long, default_value_t = 300)]
    pub drain_secs: u64,
    /// The Redis server for `--store redis`; the run's keys are deleted afterwards.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Keep the gateway's folder (config, database, logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Also print each row as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// Runs every store asked for, prints the table, and returns the rows.
pub async fn run(options: &Options) -> Result<Vec<Row>, BenchError> {
    let binary = crate::gateway::binary(options.gateway.as_deref()).map_err(BenchError::Gateway)?;
    let stores = if options.stores.is_empty() {
        vec![StoreKind::Sqlite, StoreKind::Redis]
    } else {
        options.stores.clone()
    };
    let mut rows = Vec::new();
    for store in stores {
        let row = run_one(&binary, options, store).await?;
        if options.json {
            println!("{}", row.json());
        }
        rows.push(row);
    }
    println!("{}", report::table(&rows));
    Ok(rows)
}

/// The order in which one customer sends: their message numbers, duplicates repeated.
fn schedule(options: &Options) -> (usize, Vec<Vec<usize>>) {
    let conversations = options.conversations.max(1);
    let duplicates =
        ((options.webhooks as f64) * options.duplicates_percent.clamp(0.0, 100.0) / 100.0) as usize;
    let unique = options.webhooks.saturating_sub(duplicates).max(1);
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); conversations];
    for i in 0..unique {
        lists[i % conversations].push(i);
    }
    let mut rng = rand::rng();
    for _ in 0..duplicates {
        let c = rng.random_range(0..conversations);
        let list = &mut lists[c];
        if list.is_empty() {
            continue;
        }
        // A platform redelivers what it sent before, at some later point.
        let at = rng.random_range(1..=list.len());
        let again = list[rng.random_range(0..at)];
        list.insert(at, again);
    }
    (unique, lists)
}

struct Sending {
    /// Message number → acknowledged.
    acked: Vec<AtomicBool>,
    attempts: AtomicU64,
}

/// Sends one customer's webhooks in order, each until the gateway acknowledges it.
async fn customer(
    client: reqwest::Client,
    url: String,
    shots: Arc<Vec<concierge_testkit::load::Shot>>,
    list: Vec<usize>,
    sending: Arc<Sending>,
) {
    for i in list {
        let shot = &shots[i];
        loop {
            sending.attempts.fetch_add(1, Ordering::Relaxed);
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &shot.signature)
                .body(shot.body.clone())
                .send()
                .await;
            if let Ok(answer) = answer {
                let ok = answer.status().is_success();
                let _ = answer.bytes().await;
                if ok {
                    sending.acked[i].store(true, Ordering::Relaxed);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One customer message in this many is a photo (downloaded, kept and shown to the LLM in
/// its turn), the others text.
const PHOTO_EVERY: usize = 5;

async fn run_one(binary: &Path, options: &Options, store: StoreKind) -> Result<Row, BenchError> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let (unique, lists) = schedule(options);
    let carries = concierge_testkit::load::Carries::Mixed {
        every: PHOTO_EVERY,
        photos: unique.div_ceil(PHOTO_EVERY),
    };
    let shots = Arc::new(concierge_testkit::load::shots_of(
        carries,
        unique,
        options.conversations.max(1),
        SECRET,
        &run_id,
        concierge_testkit::tokens::token,
    ));
    let platform = concierge_testkit::platform::FakeApi::start().await?;
    // Every photo its own bytes, each download slow enough that kills land during some.
    let photos: Vec<usize> = (0..unique).filter_map(|i| carries.photo_of(i)).collect();
    for &n in &photos {
        let id = concierge_testkit::load::photo_id(n);
        platform.serve_media(&id, "image/jpeg", crate::bench::photo(n, 320, 240));
        platform.slow_media(&id, Duration::from_millis(100));
    }
    platform.fail_randomly(options.faults_percent / 100.0);
    // A random wait up to llm_max_ms, so kills land mid-turn; each reply names what it answers.
    let llm = concierge_testkit::llm::FakeLlm::with(concierge_testkit::llm::Options {
        latency: concierge_testkit::llm::Latency::UpTo(Duration::from_millis(options.llm_max_ms)),
        record: false,
        fallback: Arc::new(concierge_testkit::tokens::answer),
    })
    .await?;
    let llm_url = llm.url.clone();
    let folder = std::env::temp_dir().join(format!("concierge-chaos-{run_id}"));
    let port = free_port()?;
    write_deployment(&folder, port, &platform.graph_api_base(), &llm_url)?;
    let prefix = format!("chaos-{run_id}");
    let mut env = vec![("RUST_LOG".to_string(), "info".to_string())];
    if store == StoreKind::Redis {
        env.push(("CONCIERGE__STORE__URL".into(), options.redis_url.clone()));
        env.push(("CONCIERGE__STORE__PREFIX".into(), prefix.clone()));
        // A restarted instance is a new one: it takes the partitions over after this.
        env.push(("CONCIERGE__STORE__TAKEOVER_MS".into(), "1000".into()));
    }
    let config = folder.join("concierge.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let args = ["serve", "--config", config_arg.as_str()];
    let mut starts = 0usize;
    let log = |n: usize| folder.join(format!("gateway-{n:04}.log"));
    let mut gateway = Served::start(binary, &args, &env, port, "/readyz", log(starts)).await?;
    let webhook = format!("{}/webhooks/whatsapp", gateway.base);
    platform.report_statuses_to(&webhook, SECRET);

    let sending = Arc::new(Sending {
        acked: (0..unique).map(|_| AtomicBool::new(false)).collect(),
        attempts: AtomicU64::new(0),
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let mut customers = tokio::task::JoinSet::new();
    let mut order: Vec<Vec<usize>> = lists.clone();
    order.shuffle(&mut rand::rng());
    for list in order {
        customers.spawn(customer(
            client.clone(),
            webhook.clone(),
            shots.clone(),
            list,
            sending.clone(),
        ));
    }

    // Kill and restart until every webhook was acknowledged.
    let mut kills = 0usize;
    let (min, max) = (
        options.kill_min_ms.min(options.kill_max_ms),
        options.kill_max_ms.max(options.kill_min_ms),
    );
    let kill_for = Duration::from_secs(options.kill_for_secs);
    while !customers.is_empty() || started.elapsed() < kill_for {
        let life = Duration::from_millis(rand::rng().random_range(min..=max));
        if customers.is_empty() {
            tokio::time::sleep(life).await;
        } else {
            tokio::select! {
                _ = customers.join_next() => continue,
                _ = tokio::time::sleep(life) => {}
            }
        }
        gateway.kill();
        kills += 1;
        starts += 1;
        gateway = Served::start(binary, &args, &env, port, "/readyz", log(starts)).await?;
    }
    let sent_in = started.elapsed();

    // Let the last gateway answer everything accepted.
    let acked: Vec<usize> = (0..unique)
        .filter(|&i| sending.acked[i].load(Ordering::Relaxed))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(options.drain_secs);
    let mut last_change = (platform.accepted().len(), Instant::now());
    loop {
        let accepted = platform.accepted();
        let covered: HashSet<usize> = accepted
            .iter()
            .flat_map(|a| concierge_testkit::tokens::tokens(&a.text))
            .collect();
        let all = acked.iter().all(|i| covered.contains(i));
        if accepted.len() != last_change.0 {
            last_change = (accepted.len(), Instant::now());
        }
        // Settled: everything answered, nothing new for a while (a duplicate would show up
        // in that time), no status left to report.
        let quiet = last_change.1.elapsed() > Duration::from_secs(3);
        if (all && quiet && platform.statuses_pending() == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = started.elapsed();
    gateway.stop();

    let logs: Vec<PathBuf> = (0..=starts).map(log).collect();
    let row = report::analyse(report::Inputs {
        store,
        options,
        unique,
        lists: &lists,
        acked: &acked,
        attempts: sending.attempts.load(Ordering::Relaxed),
        accepted: &platform.accepted(),
        faults: &platform.faults(),
        logs: &logs,
        kills,
        llm_calls: llm.count(),
        sent_in,
        drained_in,
        photos: photos.len(),
        photo_downloads: photos
            .iter()
            .map(|&n| platform.media_downloads(&concierge_testkit::load::photo_id(n)))
            .sum(),
    });
    if store == StoreKind::Redis {
        crate::bench::forget_redis(&options.redis_url, &prefix).await?;
    }
    if options.keep {
        // What the customers' phones showed, for a look at a failed run.
        let shown: Vec<String> = platform
            .accepted()
            .iter()
            .map(|a| {
                serde_json::json!({"to": a.to, "text": a.text, "callback": a.callback, "wamid": a.wamid})
                    .to_string()
            })
            .collect();
        let _ = std::fs::write(folder.join("platform.jsonl"), shown.join("\n"));
        println!("(kept {})", folder.display());
    } else {
        let _ = std::fs::remove_dir_all(&folder);
    }
    Ok(row)
}

/// Which conversation each recipient phone is.
pub(crate) fn conversation_of(phone: &str, conversations: usize) -> Option<usize> {
    (0..conversations).find(|&c| concierge_testkit::load::phone(c) == phone)
}

/// Message numbers by conversation, in the order each customer first sent them.
pub(crate) fn first_sends(lists: &[Vec<usize>]) -> BTreeMap<usize, HashMap<usize, usize>> {
    let mut out = BTreeMap::new();
    for (c, list) in lists.iter().enumerate() {
        let mut position = HashMap::new();
        for &i in list {
            let next = position.len();
            position.entry(i).or_insert(next);
        }
        out.insert(c, position);
    }
    out
}

fn write_deployment(
    folder: &Path,
    port: u16,
    api_base: &str,
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
    write(
        folder.join("concierge.toml"),
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 5\n\n\
             [store]\nurl = \"sqlite:data/chaos.db\"\n\n\
             [orchestrator]\nburst_window_ms = 0\ncontact_turns_per_minute = 0\nnew_conversations_per_minute = 0\n\n\
             [delivery]\ninitial_backoff_ms = 100\nmax_backoff_secs = 2\nsend_timeout_secs = 2\n\n\
             [faq]\nthreshold = 1.0\n\n\
             [llm]\nprovider = \"openai_compatible\"\nmodel = \"chaos\"\nbase_url = \"{llm_url}/v1\"\napi_key = \"chaos-key\"\ntimeout_secs = 10\nmax_retries = 0\n\n\
             [agents]\nllm_calls_per_minute = 0\n\n\
             [merchant]\nname = \"Maison Chaos\"\ntimezone = \"Europe/Paris\"\n",
        ),
    )?;
    write(
        folder.join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"{}\"\naccess_token = \"chaos-token\"\napp_secret = \"{SECRET}\"\nverify_token = \"chaos-verify\"\napi_base = \"{api_base}\"\nmessages_per_second = 100000\nnew_conversations_per_minute = 0\n",
            concierge_testkit::load::PHONE_NUMBER_ID
        ),
    )?;
    write(
        folder.join("prompts/front_desk.md"),
        "+++\nname = \"front_desk\"\ndescription = \"Answers every message.\"\nentry = true\n+++\nYou are the concierge of {{ merchant }}.\n".to_string(),
    )?;
    Ok(())
}
