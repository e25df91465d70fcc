//! `concierge inbox export`: the raw webhooks the store kept, as JSON lines, oldest first.

use std::io::Write;
use std::path::PathBuf;

use super::Record;
use crate::domain::{ChannelId, ConversationId};
use crate::store::{RawFilter, Store};

/// Webhooks read from the store at a time.
const PAGE: usize = 500;

/// The options of `concierge inbox export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportOptions {
    /// concierge.toml: the store it names is read.
    #[arg(long, default_value = "concierge.toml")]
    pub config: PathBuf,
    /// Only this channel's webhooks (its file name in channels/).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only webhooks that brought events of this conversation.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Only webhooks received at or after this time (RFC 3339, e.g. 2026-03-01T12:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many webhooks (the oldest that match).
    #[arg(long)]
    pub limit: Option<usize>,
}

impl ExportOptions {
    /// The store filter the options describe, or what is wrong with them.
    pub fn filter(&self) -> Result<RawFilter, String> {
        let channel = self
            .channel
            .as_deref()
            .map(|c| ChannelId::parse(c).map_err(|e| format!("--channel `{c}`: {e}")))
            .transpose()?;
        let conversation = self
            .conversation
            .as_deref()
            .map(|c| ConversationId::parse(c).map_err(|e| format!("--conversation `{c}`: {e}")))
            .transpose()?;
        let since = self
            .since
            .as_deref()
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        format!(
                            "--since `{s}` is not an RFC 3339 time like 2026-03-01T12:00:00Z: {e}"
                        )
                    })
            })
            .transpose()?;
        Ok(RawFilter {
            channel,
            conversation,
            since,
            after: None,
            limit: self.limit.unwrap_or(usize::MAX),
        })
    }
}

/// Writes every kept webhook that `filter` selects to `out`, one JSON line each; returns
/// how many.
pub async fn export(
    store: &dyn Store,
    mut filter: RawFilter,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let mut left = filter.limit;
    let mut written = 0;
    while left > 0 {
        filter.limit = left.min(PAGE);
        let page = store.raw_webhooks(filter.clone()).await?;
        let Some(last) = page.last() else {
            break;
        };
        filter.after = Some(last.cursor.clone());
        let full = page.len() == filter.limit;
        for kept in &page {
            serde_json::to_writer(&mut *out, &Record::from_raw(&kept.raw))?;
            out.write_all(b"\n")?;
        }
        written += page.len();
        left -= page.len();
        if !full {
            break;
        }
    }
    out.flush()?;
    Ok(written)
}
