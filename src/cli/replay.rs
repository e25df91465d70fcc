//! `concierge replay`: post exported webhooks to a gateway, each re-signed for its secrets.

use std::process::ExitCode;

use anyhow::Context;
use concierge::replay::ReplayOptions;

use super::support::{load, runtime};

/// Prints each answer and a summary; exits 1 unless every webhook was accepted.
pub fn run(options: &ReplayOptions) -> anyhow::Result<ExitCode> {
    let config = load(&options.config)?;
    let summary = runtime()?
        .block_on(concierge::replay::replay(
            options,
            &config,
            &mut std::io::stdout(),
        ))
        .context("replay")?;
    Ok(if summary.all_accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
