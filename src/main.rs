//! The `concierge` command: parse the arguments, start the logs, run the command, and say why
//! it failed.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use concierge::telemetry::init_logs;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logs(cli.log_format());
    // reqwest with rustls needs a process-wide crypto provider before its first client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    cli.command.run().unwrap_or_else(|e| {
        eprintln!("{e:#}");
        ExitCode::FAILURE
    })
}
