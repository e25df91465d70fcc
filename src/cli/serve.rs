//! `concierge serve`: run the gateway until Ctrl-C or SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use concierge::app::App;
use concierge::config::Config;

use super::support::runtime;

/// Runs the gateway; the error says why it did not start or why it stopped.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).map_err(|problems| {
        anyhow!(
            "{problems}\nnot starting: {} configuration problem(s)",
            problems.0.len()
        )
    })?;
    // Logged under the binary's own target, as when this was in main.rs: log filters and
    // readers match on it.
    match runtime()?.block_on(gateway(config)) {
        Ok(()) => {
            tracing::info!(target: "concierge", "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            tracing::error!(target: "concierge", error = format!("{e:#}"), "stopped on an error");
            Err(anyhow!("error: {e:#}"))
        }
    }
}

/// Binds the configured address, starts every part and runs them until a shutdown signal.
async fn gateway(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow!("cannot listen on {}: {e}", config.bind))?;
    let app = App::start(config, listener).await?;
    println!("{}", app.welcome);
    app.run_until(shutdown_signal()).await
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
