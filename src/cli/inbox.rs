//! `concierge inbox export`: the raw webhooks the store keeps, out as JSON lines.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use concierge::replay::ExportOptions;

use super::support::{load, with_store};

#[derive(Subcommand)]
pub enum InboxCommand {
    /// Print the kept raw webhooks as JSON lines, oldest first: channel, kind, received_at,
    /// query, headers, and body (or body_base64 when it is not UTF-8).
    Export(ExportOptions),
}

/// Runs one of the inbox commands.
pub fn run(command: InboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        InboxCommand::Export(options) => export(&options),
    }
}

/// Writes the webhooks the options select on stdout and their count on stderr.
fn export(options: &ExportOptions) -> anyhow::Result<ExitCode> {
    // A bad flag is reported before the configuration is read, as it needs none.
    let filter = options.filter().map_err(|e| anyhow!(e))?;
    let config = load(&options.config)?;
    with_store(&config, |store| async move {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let n = concierge::replay::export(store.as_ref(), filter, &mut out)
            .await
            .context("inbox export")?;
        eprintln!("{n} webhook(s) exported");
        Ok(ExitCode::SUCCESS)
    })
}
