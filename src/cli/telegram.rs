//! `concierge telegram set-webhook`: register a Telegram channel's webhook with the Bot API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Subcommand;
use concierge::channels::Registry;
use concierge::channels::telegram::Telegram;
use concierge::domain::ChannelId;

use super::support::{load, runtime};

#[derive(Subcommand)]
pub enum TelegramCommand {
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

/// Runs one of the Telegram commands.
pub fn run(command: TelegramCommand) -> anyhow::Result<ExitCode> {
    match command {
        TelegramCommand::SetWebhook {
            config,
            channel,
            url,
        } => set_webhook(&config, &channel, &url),
    }
}

/// Calls setWebhook for the channel and prints Telegram's answer.
fn set_webhook(path: &Path, channel: &str, url: &str) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    runtime()?.block_on(async {
        let http = reqwest::Client::new();
        let registry = Registry::build(&config.channels, &http);
        let bot = bot(&registry, channel).ok_or_else(|| {
            anyhow!(
                "{}: no Telegram channel `{channel}` in {}",
                path.display(),
                config.channels_dir.display()
            )
        })?;
        let answer = bot
            .set_webhook(url)
            .await
            .map_err(|e| anyhow!("Telegram refused: {e}"))?;
        println!("Telegram answered: {answer}");
        Ok(ExitCode::SUCCESS)
    })
}

/// The Telegram channel of that id, if there is one.
fn bot(registry: &Registry, channel: &str) -> Option<Arc<Telegram>> {
    let id = ChannelId::parse(channel).ok()?;
    registry.telegram(&id).cloned()
}
