//! What a chaos run shows: from the customers' acknowledged messages and what the platform
//! accepted, the lost, the processed twice, the sent twice and the out of order, per store.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::Options;
use crate::bench::StoreKind;
use concierge_testkit::platform::Accepted;
use concierge_testkit::tokens::tokens;

/// One store's run.
#[derive(Debug, Clone)]
pub struct Row {
    pub store: &'static str,
    /// Webhooks sent, duplicates included (each counted once however often it was retried).
    pub webhooks: usize,
    pub duplicates: usize,
    /// Distinct customer messages the gateway acknowledged.
    pub accepted: usize,
    /// Acknowledged messages no reply ever answered.
    pub lost: usize,
    /// Messages answered by more than one reply.
    pub processed_twice: usize,
    /// Extra copies of replies the platform accepted.
    pub sent_twice: usize,
    /// Messages answered after a later message of the same customer.
    pub out_of_order: usize,
    pub kills: usize,
    /// Sends the platform failed on purpose.
    pub faults: usize,
    /// Sends whose answer was lost, confirmed by the platform's status instead of resent.
    pub reconciled: usize,
    pub replies: usize,
    pub llm_calls: u64,
    /// Requests made, retries after a kill included.
    pub attempts: u64,
    /// How long the kills went on (until the last acknowledgement, or `--kill-for-secs`).
    pub kill_secs: f64,
    pub drained_secs: f64,
    /// Distinct customer messages that were photos, and their downloads (again after a kill
    /// mid-download).
    pub photos: usize,
    pub photo_downloads: usize,
}

impl Row {
    /// Whether every column of the bar is zero.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.processed_twice == 0
            && self.sent_twice == 0
            && self.out_of_order == 0
    }

    pub fn json(&self) -> String {
        json!({
            "store": self.store, "webhooks": self.webhooks, "duplicates": self.duplicates,
            "accepted": self.accepted, "lost": self.lost, "processed_twice": self.processed_twice,
            "sent_twice": self.sent_twice, "out_of_order": self.out_of_order, "kills": self.kills,
            "faults": self.faults, "reconciled": self.reconciled, "replies": self.replies,
            "llm_calls": self.llm_calls, "attempts": self.attempts,
            "kill_secs": self.kill_secs, "drained_secs": self.drained_secs,
            "photos": self.photos, "photo_downloads": self.photo_downloads,
        })
        .to_string()
    }
}

pub struct Inputs<'a> {
    pub store: StoreKind,
    pub options: &'a Options,
    pub unique: usize,
    pub lists: &'a [Vec<usize>],
    pub acked: &'a [usize],
    pub attempts: u64,
    pub accepted: &'a [Accepted],
    pub faults: &'a [&'static str],
    pub logs: &'a [PathBuf],
    pub kills: usize,
    pub llm_calls: u64,
    pub sent_in: Duration,
    pub drained_in: Duration,
    pub photos: usize,
    pub photo_downloads: usize,
}

/// Lines of the gateway's logs containing `needle`.
fn count_in_logs(logs: &[PathBuf], needle: &str) -> usize {
    logs.iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

pub fn analyse(inputs: Inputs<'_>) -> Row {
    let conversations = inputs.options.conversations.max(1);
    let webhooks: usize = inputs.lists.iter().map(Vec::len).sum();
    // Replies as the customer's phone shows them; a copy of one (same reply id) is counted
    // and set aside.
    let mut seen_replies = HashSet::new();
    let mut sent_twice = 0;
    let mut replies_by_conversation: HashMap<usize, Vec<Vec<usize>>> = HashMap::new();
    for accepted in inputs.accepted {
        let id = accepted
            .callback
            .clone()
            .unwrap_or_else(|| accepted.wamid.clone());
        if !seen_replies.insert(id) {
            sent_twice += 1;
            continue;
        }
        let Some(c) = super::conversation_of(&accepted.to, conversations) else {
            continue;
        };
        replies_by_conversation
            .entry(c)
            .or_default()
            .push(tokens(&accepted.text));
    }
    let first = super::first_sends(inputs.lists);
    let mut answered: HashMap<usize, usize> = HashMap::new();
    let mut out_of_order = 0;
    for (c, replies) in &replies_by_conversation {
        let Some(position) = first.get(c) else {
            continue;
        };
        let mut furthest: Option<usize> = None;
        for reply in replies {
            for token in reply {
                *answered.entry(*token).or_default() += 1;
                let Some(&at) = position.get(token) else {
                    continue;
                };
                if furthest.is_some_and(|f| at < f) {
                    out_of_order += 1;
                }
                furthest = Some(furthest.map_or(at, |f| f.max(at)));
            }
        }
    }
    let lost = inputs
        .acked
        .iter()
        .filter(|i| !answered.contains_key(i))
        .count();
    let processed_twice = answered.values().filter(|&&n| n > 1).count();
    Row {
        store: match inputs.store {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Redis => "redis",
        },
        webhooks,
        duplicates: webhooks.saturating_sub(inputs.unique),
        accepted: inputs.acked.len(),
        lost,
        processed_twice,
        sent_twice,
        out_of_order,
        kills: inputs.kills,
        faults: inputs.faults.len(),
        reconciled: count_in_logs(inputs.logs, "confirmed by the platform's status"),
        replies: seen_replies.len(),
        llm_calls: inputs.llm_calls,
        attempts: inputs.attempts,
        kill_secs: inputs.sent_in.as_secs_f64(),
        drained_secs: inputs.drained_in.as_secs_f64(),
        photos: inputs.photos,
        photo_downloads: inputs.photo_downloads,
    }
}

/// The table: the bar's columns first, then what the run did.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| store | webhooks | duplicates | accepted | lost | processed twice | replies sent twice | out of order | kills | faults | reconciled | replies | LLM calls | killed for | done in | photos (downloads) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {} ({}) |\n",
            r.store,
            r.webhooks,
            r.duplicates,
            r.accepted,
            r.lost,
            r.processed_twice,
            r.sent_twice,
            r.out_of_order,
            r.kills,
            r.faults,
            r.reconciled,
            r.replies,
            r.llm_calls,
            r.kill_secs,
            r.drained_secs,
            r.photos,
            r.photo_downloads,
        ));
    }
    out
}
