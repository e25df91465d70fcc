//! The `concierge` command: parse the arguments, start the logs, run the gateway or check the
//! configuration, and say why it stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use concierge::app::App;
use concierge::config::Config;
use concierge::telemetry::{LogFormat, init_logs};

#[derive(Parser)]
#[command(
    name = "concierge",
    version,
    about = "A gateway for conversational commerce"
)]
struct Cli {
    /// How logs are written to stderr.
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// concierge.toml; channels/ and prompts/ are read beside it.
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
    /// Read and cross-check every configuration file; exit 1 on any problem.
    Check {
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
    /// Telegram tools.
    Telegram {
        #[command(subcommand)]
        command: TelegramCommand,
    },
    /// Concierges' API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The raw webhooks the store keeps (credentials removed).
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Post exported webhooks to a gateway, in order, each re-signed for the target's channel
    /// secrets; print each answer and a summary; exit 1 if any was refused or failed.
    Replay(concierge::replay::ReplayOptions),
}

#[derive(Subcommand)]
enum InboxCommand {
    /// Print the kept raw webhooks as JSON lines, oldest first: channel, kind, received_at,
    /// query, headers, and body (or body_base64 when it is not UTF-8).
    Export(concierge::replay::ExportOptions),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a concierge of concierge.toml and print it once (the store keeps
    /// only its hash).
    Create {
        /// The concierge's `name` in a [[concierges]] table.
        name: String,
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
    /// Revoke every token of a concierge (they are signed out at their next request).
    Revoke {
        name: String,
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TelegramCommand {
    /// Register the webhook (setWebhook, with the channel's secret token and the update kinds
    /// the gateway uses) and print what Telegram answered.
    SetWebhook {
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
        /// The channel id (its file name in channels/).
        #[arg(long)]
        channel: String,
        /// The public URL Telegram should call, e.g. https://example.com/webhooks/telegram
        #[arg(long)]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(match cli.log_format {
        Format::Human => LogFormat::Human,
        Format::Json => LogFormat::Json,
    });
    // reqwest with rustls needs a process-wide crypto provider before its first client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::Telegram {
            command:
                TelegramCommand::SetWebhook {
                    config,
                    channel,
                    url,
                },
        } => set_webhook(&config, &channel, &url),
        Command::Token {
            command: TokenCommand::Create { name, config },
        } => create_token(&config, &name),
        Command::Token {
            command: TokenCommand::Revoke { name, config },
        } => revoke_tokens(&config, &name),
        Command::Inbox {
            command: InboxCommand::Export(options),
        } => inbox_export(&options),
        Command::Replay(options) => replay(&options),
    }
}

fn inbox_export(options: &concierge::replay::ExportOptions) -> ExitCode {
    let filter = match options.filter() {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match load(&options.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    with_store(&config, |store| async move {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        match concierge::replay::export(store.as_ref(), filter, &mut out).await {
            Ok(n) => {
                eprintln!("{n} webhook(s) exported");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("inbox export: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn replay(options: &concierge::replay::ReplayOptions) -> ExitCode {
    let config = match load(&options.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    run_tool(
        "replay",
        concierge::replay::replay(options, &config, &mut std::io::stdout()),
        concierge::replay::Summary::all_accepted,
    )
}

/// Runs one of the tools on a fresh runtime: success when `passed` says its result is, its
/// error printed under its name.
fn run_tool<T, E: std::fmt::Display>(
    name: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
    passed: impl FnOnce(&T) -> bool,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(work) {
        Ok(result) if passed(&result) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration, printing every problem.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|problems| {
        for problem in &problems.0 {
            eprintln!("{problem}");
        }
        ExitCode::FAILURE
    })
}

/// Runs a command's work with the configured store, on its own runtime.
fn with_store<F, Fut>(config: &Config, work: F) -> ExitCode
where
    F: FnOnce(concierge::store::SharedStore) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        match concierge::app::open_store(config).await {
            Ok(store) => work(store).await,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn revoke_tokens(path: &std::path::Path, name: &str) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    with_store(&config, |store| async move {
        match concierge::handoff::access::revoke(store.as_ref(), name).await {
            Ok(n) => {
                println!("revoked {n} token(s) of {name}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot revoke: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn create_token(path: &std::path::Path, name: &str) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if !config.settings.concierges.iter().any(|c| c.name == name) {
        let known: Vec<&str> = config
            .settings
            .concierges
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        eprintln!(
            "{}: no concierge `{name}` in [[concierges]] (known: {})",
            path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        return ExitCode::FAILURE;
    }
    with_store(&config, |store| async move {
        match concierge::handoff::access::issue(store.as_ref(), name).await {
            Ok(token) => {
                println!("{token}");
                eprintln!(
                    "A token for {name}; it is shown only this once (the store keeps its hash)."
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot keep the token: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The async runtime a command runs on, or the exit code when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn set_webhook(path: &std::path::Path, channel: &str, url: &str) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let registry = concierge::channels::Registry::build(&config.channels, &http);
        let bot = concierge::domain::ChannelId::parse(channel)
            .ok()
            .and_then(|id| registry.telegram(&id).cloned());
        let Some(bot) = bot else {
            eprintln!(
                "{}: no Telegram channel `{channel}` in {}",
                path.display(),
                config.channels_dir.display()
            );
            return ExitCode::FAILURE;
        };
        match bot.set_webhook(url).await {
            Ok(answer) => {
                println!("Telegram answered: {answer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Telegram refused: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            let agents: Vec<&str> = config
                .agents
                .as_ref()
                .map(|a| a.names().collect())
                .unwrap_or_default();
            println!(
                "{}: ok ({} channel(s), {} FAQ entries, {} agent(s){}, {} tool(s), {}, {} team(s), {} concierge(s))",
                path.display(),
                config.channels.len(),
                config.faq.entries().len(),
                agents.len(),
                if agents.is_empty() {
                    String::new()
                } else {
                    format!(": {}", agents.join(", "))
                },
                config.settings.tools.len(),
                match &config.settings.llm {
                    Some(llm) => format!("LLM {:?} {}", llm.provider, llm.model),
                    None => "no [llm]: FAQ only".to_string(),
                },
                config.settings.teams.len().max(1),
                config.settings.concierges.len(),
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("{problem}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("{problem}");
            }
            eprintln!(
                "not starting: {} configuration problem(s)",
                problems.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let app = App::start(config, listener).await?;
        println!("{}", app.welcome);
        app.run_until(shutdown_signal()).await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stopped on an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
