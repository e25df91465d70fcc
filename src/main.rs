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
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} channel(s), {} FAQ entries)",
                path.display(),
                config.channels.len(),
                config.faq.entries().len()
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let app = App::start(config, listener).await?;
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
