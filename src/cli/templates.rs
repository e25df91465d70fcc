//! `concierge templates sync`: the catalogue (`templates/`) against the templates of a
//! WhatsApp channel's Business account.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use concierge::channels::ChannelConfig;
use concierge::channels::whatsapp::Whatsapp;
use concierge::channels::whatsapp::catalogue_sync::differences;
use concierge::domain::ChannelId;

use super::support::{load, runtime};

#[derive(Subcommand)]
pub enum TemplatesCommand {
    /// Read the templates of the channel's WhatsApp Business account (their review status,
    /// category and body) and report how they differ from templates/; exit 1 when a template
    /// of the catalogue cannot be sent as written.
    Sync {
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
        /// The WhatsApp channel (its file name in channels/), with its `waba_id`.
        #[arg(long)]
        channel: String,
    },
}

pub fn run(command: TemplatesCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplatesCommand::Sync { config, channel } => sync(&config, &channel),
    }
}

fn sync(path: &Path, channel: &str) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let found = config.channels.iter().find_map(|(id, c)| match c {
        ChannelConfig::Whatsapp(c) if id.as_str() == channel => Some((id.clone(), c.clone())),
        _ => None,
    });
    let Some((id, whatsapp)) = found else {
        return Err(anyhow!(
            "{}: no WhatsApp channel `{channel}` in {}",
            path.display(),
            config.channels_dir.display()
        ));
    };
    runtime()?.block_on(async {
        let adapter = Whatsapp::new(ChannelId::clone(&id), whatsapp, reqwest::Client::new());
        let account = adapter
            .account_templates()
            .await
            .map_err(|e| anyhow!("channel {id}: {e}"))?;
        let found = differences(&config.catalogue, &account);
        let approved = account.iter().filter(|t| t.status == "APPROVED").count();
        println!(
            "channel {id}: {} template(s) in the account ({approved} approved), {} in {}",
            account.len(),
            config.catalogue.len(),
            config.templates_dir.display()
        );
        for difference in &found {
            println!("  {difference}");
        }
        if found.iter().any(|d| d.blocks()) {
            return Ok(ExitCode::FAILURE);
        }
        println!("every template of the catalogue is approved as written");
        Ok(ExitCode::SUCCESS)
    })
}
