//! The human side's part of `concierge.toml`: `[queue]`, `[[teams]]` and `[[concierges]]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use concierge_domain::suggest;

/// The handoff queue: how threads reach a person.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The team a handoff goes to when it names none (or one that does not exist).
    pub default_team: String,
    /// The first-response SLA, in seconds from the handoff (counted from the opening
    /// when queued out of hours); a team may set its own.
    pub sla_secs: u64,
    /// How long a thread offered to a concierge waits for them before it is offered to the
    /// next one.
    pub offer_secs: u64,
    /// How long one thread takes a concierge, for the expected wait told to the customer.
    pub minutes_per_thread: u64,
    /// A thread the bot has answered this many customer turns in a row, with no person
    /// involved, goes to the queue ("no progress"). 0: never.
    pub max_bot_turns: usize,
    /// Words and phrases, per language, with which a customer asks for a person: a safety
    /// net that works without an LLM. Matched on whole words, accents and case ignored.
    pub keywords: BTreeMap<String, Vec<String>>,
    /// The acknowledgement sent when a thread is queued, per language; `{wait}` is the
    /// expected wait.
    pub acknowledgement: BTreeMap<String, String>,
    /// Added to the holding reply when a thread is queued, per language.
    pub expected_wait: BTreeMap<String, String>,
    /// Sent instead when the team is closed; `{opens}` is when it opens next.
    pub out_of_hours: BTreeMap<String, String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let mut keywords = BTreeMap::new();
        keywords.insert(
            "en".to_string(),
            words(&[
                "human",
                "a person",
                "real person",
                "someone real",
                "talk to someone",
                "speak to someone",
                "speak to a person",
                "operator",
                "representative",
                "customer service",
                "live agent",
                "human agent",
                "real agent",
            ]),
        );
        keywords.insert(
            "fr".to_string(),
            words(&[
                "humain",
                "une personne",
                "vraie personne",
                "personne reelle",
                "conseiller",
                "conseillere",
                "parler a quelqu'un",
                "un agent",
                "service client",
                "operateur",
            ]),
        );
        let mut acknowledgement = BTreeMap::new();
        acknowledgement.insert(
            "en".to_string(),
            "Thank you! A member of our team will take over this conversation here. Expected wait: {wait}.".to_string(),
        );
        acknowledgement.insert(
            "fr".to_string(),
            "Merci ! Un membre de notre équipe va reprendre cette conversation ici. Attente estimée : {wait}.".to_string(),
        );
        let mut expected_wait = BTreeMap::new();
        expected_wait.insert("en".to_string(), "Expected wait: {wait}.".to_string());
        expected_wait.insert("fr".to_string(), "Attente estimée : {wait}.".to_string());
        let mut out_of_hours = BTreeMap::new();
        out_of_hours.insert(
            "en".to_string(),
            "Thank you! Our team is away right now; a member of the team will answer here from {opens}.".to_string(),
        );
        out_of_hours.insert(
            "fr".to_string(),
            "Merci ! Notre équipe est absente pour le moment ; un de nos conseillers vous répondra ici à partir de {opens}.".to_string(),
        );
        Self {
            default_team: "support".to_string(),
            sla_secs: 300,
            offer_secs: 30,
            minutes_per_thread: 5,
            max_bot_turns: 0,
            keywords,
            acknowledgement,
            expected_wait,
            out_of_hours,
        }
    }
}

/// A team of concierges (a skill).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub name: String,
    /// When the team answers, in the merchant's time zone: `mon-fri 09:00-18:00; sat
    /// 10:00-13:00`. Empty: always.
    #[serde(default)]
    pub hours: String,
    /// The team's first-response SLA in seconds; `[queue] sla_secs` when not set.
    pub sla_secs: Option<u64>,
    /// The team's own out-of-hours message, per language.
    #[serde(default)]
    pub out_of_hours: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConciergeRole {
    Concierge,
    Admin,
}

/// A person who takes threads over.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConciergeConfig {
    pub name: String,
    /// The teams whose threads they see and take; all of them for an admin when empty.
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default = "default_role")]
    pub role: ConciergeRole,
    /// How many threads they may own at once before no more are offered to them.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

fn default_role() -> ConciergeRole {
    ConciergeRole::Concierge
}

fn default_capacity() -> usize {
    5
}

/// The queue's settings, teams and concierges, checked against each other: each problem as
/// (dotted key, message).
pub fn check(
    queue: &QueueConfig,
    teams_config: &[TeamConfig],
    concierges: &[ConciergeConfig],
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut teams: Vec<&str> = Vec::new();
    for (i, team) in teams_config.iter().enumerate() {
        let key = |k: &str| format!("teams[{i}].{k}");
        if team.name.trim().is_empty() {
            found.push((key("name"), "is empty".to_string()));
        } else if teams.contains(&team.name.as_str()) {
            found.push((
                key("name"),
                format!("team `{}` is declared twice", team.name),
            ));
        }
        teams.push(&team.name);
        if let Err(e) = super::Hours::parse(&team.hours) {
            found.push((key("hours"), e));
        }
        if team.sla_secs == Some(0) || team.sla_secs.is_some_and(|s| s > 7 * 24 * 3600) {
            found.push((
                key("sla_secs"),
                "must be between 1 and 604800 (a week)".to_string(),
            ));
        }
    }
    if !teams_config.is_empty() && !teams.contains(&queue.default_team.as_str()) {
        found.push((
            "queue.default_team".to_string(),
            format!(
                "`{}` is not one of the [[teams]] ({})",
                queue.default_team,
                teams.join(", ")
            ),
        ));
    }
    if teams_config.is_empty() {
        teams.push(&queue.default_team);
    }
    // Bounds keep every deadline computed from these far from overflowing.
    const WEEK: u64 = 7 * 24 * 3600;
    for (key, value, max) in [
        ("queue.sla_secs", queue.sla_secs, WEEK),
        ("queue.offer_secs", queue.offer_secs, 3600),
        (
            "queue.minutes_per_thread",
            queue.minutes_per_thread,
            24 * 60,
        ),
        ("queue.max_bot_turns", queue.max_bot_turns as u64, 1000),
    ] {
        if value > max {
            found.push((key.to_string(), format!("must be at most {max}")));
        }
    }
    if queue.sla_secs == 0 {
        found.push(("queue.sla_secs".to_string(), "must be above 0".to_string()));
    }
    for (name, map) in [
        ("acknowledgement", &queue.acknowledgement),
        ("out_of_hours", &queue.out_of_hours),
    ] {
        if !map.contains_key("en") {
            found.push((
                format!("queue.{name}"),
                "needs an `en` text (the fallback language)".to_string(),
            ));
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, concierge) in concierges.iter().enumerate() {
        let key = |k: &str| format!("concierges[{i}].{k}");
        let valid = !concierge.name.is_empty()
            && concierge
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid {
            found.push((
                key("name"),
                format!("`{}`: use letters, digits, `-`, `_` or `.`", concierge.name),
            ));
        } else if names.contains(&concierge.name.as_str()) {
            found.push((
                key("name"),
                format!("`{}` is declared twice", concierge.name),
            ));
        }
        names.push(&concierge.name);
        for team in &concierge.teams {
            if !teams.contains(&team.as_str()) {
                found.push((
                    key("teams"),
                    format!(
                        "`{team}` is not a team ({}){}",
                        teams.join(", "),
                        suggest::did_you_mean(team, teams.iter().copied())
                    ),
                ));
            }
        }
        if concierge.teams.is_empty() && concierge.role == ConciergeRole::Concierge {
            found.push((
                key("teams"),
                "a concierge needs at least one team (only an admin sees every team)".to_string(),
            ));
        }
        if concierge.capacity == 0 || concierge.capacity > 1000 {
            found.push((key("capacity"), "must be between 1 and 1000".to_string()));
        }
    }
    found
}
