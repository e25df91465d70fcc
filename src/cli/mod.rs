//! The `concierge` command line: the arguments, and which command runs for them.

mod check;
mod inbox;
mod replay;
mod serve;
mod support;
#[cfg(feature = "telegram")]
mod telegram;
#[cfg(feature = "whatsapp")]
mod templates;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use concierge::telemetry::LogFormat;

pub use inbox::InboxCommand;
#[cfg(feature = "telegram")]
pub use telegram::TelegramCommand;
#[cfg(feature = "whatsapp")]
pub use templates::TemplatesCommand;
pub use token::TokenCommand;

#[derive(Parser)]
#[command(
    name = "concierge",
    version,
    about = "A gateway for conversational commerce"
)]
pub struct Cli {
    /// How logs are written to stderr.
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: Format,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format the flag asks for.
    pub fn log_format(&self) -> LogFormat {
        match self.log_format {
            Format::Human => LogFormat::Human,
            Format::Json => LogFormat::Json,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
    #[cfg(feature = "telegram")]
    Telegram {
        #[command(subcommand)]
        command: TelegramCommand,
    },
    /// The template catalogue against a WhatsApp Business account.
    #[cfg(feature = "whatsapp")]
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
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

impl Command {
    /// Runs the command. An error is what to print on stderr before exiting with 1; an exit
    /// code is the command's own verdict (its output already printed).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve { config } => serve::run(&config),
            Command::Check { config } => check::run(&config),
            #[cfg(feature = "telegram")]
            Command::Telegram { command } => telegram::run(command),
            #[cfg(feature = "whatsapp")]
            Command::Templates { command } => templates::run(command),
            Command::Token { command } => token::run(command),
            Command::Inbox { command } => inbox::run(command),
            Command::Replay(options) => replay::run(&options),
        }
    }
}
