//! The handoff desk: teams and their hours, the queue's policy (which team, what priority,
//! when the SLA runs out, the expected wait), the brief written at handoff, the customer's
//! acknowledgement, and the actions concierges take on a thread (claim, release, resolve,
//! transfer, reply, note), each an atomic move in the store.

pub mod access;
pub mod actions;
pub mod brief;
pub mod config;
pub mod events;
pub mod hours;
pub mod keywords;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use self::access::Caller;
pub use self::brief::Brief;
pub use self::config::{ConciergeConfig, ConciergeRole, QueueConfig, TeamConfig};
pub use self::events::{Bus, ConsoleEvent, EventKind};
pub use self::hours::Hours;
use concierge_agents::AgentRuntime;
use concierge_domain::{Author, ChannelId, Content, ConversationId, Millis, Priority, now_millis};
use concierge_faq::{Lang, detect_language};
use concierge_store::{
    Conversations, Journal, NewHandoff, NewNote, Presence, Queue, QueueEntry, SharedStore,
    StoreError, TurnUsage,
};
use concierge_telemetry::Metrics;

/// A concierge whose console has not been connected for this long is offline, whatever
/// their status says.
pub const PRESENCE_TTL_MS: i64 = 90_000;

/// A team, ready to answer questions about its hours.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    pub hours: Hours,
    pub sla_ms: i64,
    pub out_of_hours: BTreeMap<String, String>,
}

/// The desk. Shared by the lanes (handoffs), the API (actions) and the worker (SLA, offers).
pub struct Desk {
    pub teams: Vec<Team>,
    pub concierges: Vec<Caller>,
    pub settings: QueueConfig,
    pub tz: TimeZone,
    /// The queue, presence, tokens and audit: the desk's own part of the store.
    pub queue: Arc<dyn Queue>,
    /// The messages a brief and a concierge's reply read.
    pub conversations: Arc<dyn Conversations>,
    /// The handoffs and notes of a conversation.
    pub journal: Arc<dyn Journal>,
    pub events: Bus,
    /// The LLM that writes the narrative part of briefs, when one is configured.
    briefs: Option<Arc<AgentRuntime>>,
    /// The agent a released thread goes back to.
    pub entry_agent: String,
    /// Mask personal data before the brief's transcript goes to the LLM.
    redact_pii: bool,
    /// Times how long handoffs wait for their first claim.
    metrics: Metrics,
    /// The team each channel's conversations belong to until a handoff names another.
    channel_teams: BTreeMap<ChannelId, String>,
}

/// A handoff being decided in a turn, for the desk to complete.
pub struct Draft<'a> {
    pub conversation: &'a ConversationId,
    /// The conversation's channel: a handoff that names no team goes to the channel's.
    pub channel: &'a ChannelId,
    /// The customer's words in this turn.
    pub text: Option<&'a str>,
    pub handoff: &'a mut NewHandoff,
    pub replies: &'a mut Vec<(Author, Content)>,
    pub notes: &'a mut Vec<NewNote>,
    /// The agents failed this turn: do not ask the LLM for the brief.
    pub llm_down: bool,
    /// The customer was just told a person is coming: no acknowledgement this time.
    pub quiet: bool,
}

/// The longest a handoff turn waits for the brief's LLM part.
const BRIEF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
}

fn lang_of(text: Option<&str>) -> &'static str {
    match text.and_then(detect_language) {
        Some(Lang::Fr) => "fr",
        _ => "en",
    }
}

/// A team's text in the customer's language, else the default one in it, else English.
fn pick2(
    team: &BTreeMap<String, String>,
    default: &BTreeMap<String, String>,
    lang: &str,
) -> String {
    team.get(lang)
        .or_else(|| default.get(lang))
        .or_else(|| team.get("en"))
        .or_else(|| default.get("en"))
        .cloned()
        .unwrap_or_default()
}

fn pick<'a>(map: &'a BTreeMap<String, String>, lang: &str) -> Option<&'a String> {
    map.get(lang)
        .or_else(|| map.get("en"))
        .or_else(|| map.values().next())
}

/// What the desk is built from: the queue's settings, teams and concierges as
/// `concierge.toml` declares them, and the deployment facts the desk needs.
#[derive(Debug, Clone)]
pub struct DeskSettings {
    pub queue: QueueConfig,
    pub teams: Vec<TeamConfig>,
    pub concierges: Vec<ConciergeConfig>,
    /// The merchant's time zone (team hours are in it).
    pub timezone: TimeZone,
    /// The agent a released thread goes back to.
    pub entry_agent: String,
    /// Mask personal data before the brief's transcript goes to the LLM.
    pub redact_pii: bool,
    /// The team each channel's conversations belong to until a handoff names another.
    pub channel_teams: BTreeMap<ChannelId, String>,
}

impl Desk {
    /// The desk, or the first team whose hours do not parse (`concierge check` refuses them
    /// before this, so it is a bug in the caller, named instead of ignored).
    pub fn new(
        config: DeskSettings,
        store: SharedStore,
        events: Bus,
        briefs: Option<Arc<AgentRuntime>>,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let settings = config.queue;
        let mut teams = Vec::with_capacity(config.teams.len() + 1);
        for t in &config.teams {
            teams.push(Team {
                name: t.name.clone(),
                hours: Hours::parse(&t.hours)
                    .map_err(|e| format!("team `{}`: hours: {e}", t.name))?,
                sla_ms: secs_to_ms(t.sla_secs.unwrap_or(settings.sla_secs)),
                out_of_hours: t.out_of_hours.clone(),
            });
        }
        if !teams.iter().any(|t| t.name == settings.default_team) {
            teams.push(Team {
                name: settings.default_team.clone(),
                hours: Hours::default(),
                sla_ms: secs_to_ms(settings.sla_secs),
                out_of_hours: BTreeMap::new(),
            });
        }
        Ok(Self {
            teams,
            concierges: config.concierges.iter().map(Caller::from_config).collect(),
            settings,
            tz: config.timezone,
            queue: store.clone(),
            conversations: store.clone(),
            journal: store,
            events,
            briefs,
            entry_agent: config.entry_agent,
            redact_pii: config.redact_pii,
            metrics,
            channel_teams: config.channel_teams,
        })
    }

    /// The team a handoff goes to: the one named, or the default.
    pub fn team(&self, name: Option<&str>) -> &Team {
        let wanted = name.unwrap_or(&self.settings.default_team);
        self.teams
            .iter()
            .find(|t| t.name == wanted)
            .or_else(|| {
                self.teams
                    .iter()
                    .find(|t| t.name == self.settings.default_team)
            })
            .unwrap_or(&self.teams[0])
    }

    /// The team a channel's conversations belong to until a handoff names another.
    pub fn channel_team(&self, channel: &ChannelId) -> &str {
        self.channel_teams
            .get(channel)
            .map_or(self.settings.default_team.as_str(), String::as_str)
    }

    /// The team a thread belongs to: its latest handoff's, else its channel's.
    pub fn thread_team<'a>(
        &'a self,
        handoff_team: Option<&'a str>,
        channel: &ChannelId,
    ) -> &'a str {
        handoff_team.unwrap_or_else(|| self.channel_team(channel))
    }

    /// Whether a caller may see a live event: of its thread's team (an event that names
    /// none is of a handoff kept before every handoff had a team: the default team's).
    pub fn may_see_event(&self, caller: &Caller, event: &ConsoleEvent) -> bool {
        caller.may_see(
            event
                .team
                .as_deref()
                .unwrap_or(self.settings.default_team.as_str()),
        )
    }

    pub fn caller(&self, name: &str) -> Option<&Caller> {
        self.concierges.iter().find(|c| c.name == name)
    }

    /// Whether a concierge can be offered work now.
    pub fn is_online(presence: &Presence, now: Millis) -> bool {
        presence.status == "online" && now - presence.seen_at < PRESENCE_TTL_MS
    }

    /// Completes a handoff decided in a turn: its team, priority and SLA, its brief, and the
    /// acknowledgement the customer gets (with the expected wait, or the out-of-hours
    /// message). Returns the tokens the brief cost.
    pub async fn prepare(&self, draft: Draft<'_>) -> TurnUsage {
        let now = now_millis();
        let requested = draft.handoff.team.clone();
        let team = self
            .team(
                requested
                    .as_deref()
                    .or(Some(self.channel_team(draft.channel))),
            )
            .clone();
        if let Some(asked) = requested.filter(|t| *t != team.name) {
            draft.notes.push(NewNote {
                author: "gateway".to_string(),
                body: format!(
                    "asked for team `{asked}`, which does not exist: queued for `{}`",
                    team.name
                ),
            });
        }
        draft.handoff.team = Some(team.name.clone());
        let priority = Priority::of(draft.handoff.priority.as_deref());
        draft.handoff.priority = Some(priority.as_str().to_string());
        let opens = self.opens_at(&team, now);
        draft.handoff.sla_due_at = Some(opens.saturating_add(team.sla_ms));

        // The brief never holds the turn up for long, nor fails it: the LLM part has a
        // deadline, and without the store or the LLM the brief keeps what it has.
        let llm = self.briefs.as_deref().filter(|_| !draft.llm_down);
        let written = tokio::time::timeout(
            BRIEF_DEADLINE,
            brief::write(
                self.conversations.as_ref(),
                self.journal.as_ref(),
                llm,
                self.redact_pii,
                draft.conversation,
                &draft.handoff.reason,
                draft.notes,
            ),
        )
        .await;
        let (brief, usage) = match written {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the conversation for the handoff brief");
                (
                    Brief::structured(&draft.handoff.reason, draft.notes),
                    TurnUsage::default(),
                )
            }
            Err(_) => {
                tracing::warn!("the handoff brief took too long; keeping its structured part");
                (
                    Brief::structured(&draft.handoff.reason, draft.notes),
                    TurnUsage::default(),
                )
            }
        };
        draft.handoff.brief = serde_json::to_string(&brief).ok();

        if draft.quiet {
            // The customer heard a person is coming moments ago: no second acknowledgement.
            return usage;
        }
        let lang = lang_of(draft.text);
        if opens > now {
            // Out of hours: the holding text would promise an answer soon; this one says when.
            draft
                .replies
                .retain(|(author, _)| *author != Author::System);
            let template = pick2(&team.out_of_hours, &self.settings.out_of_hours, lang);
            let text = template.replace("{opens}", &self.describe_opening(opens, now, lang));
            if !text.trim().is_empty() {
                draft.replies.push((Author::System, Content::text(text)));
            }
        } else {
            let wait = match self.expected_wait(&team, now).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot estimate the wait; telling the SLA");
                    team.sla_ms
                }
            };
            let wait = describe_wait(wait, lang);
            // A holding reply already says a person will answer: the wait is added to it.
            let holding = draft
                .replies
                .iter_mut()
                .rev()
                .find(|(author, _)| *author == Author::System);
            match holding {
                Some((_, Content::Text { body })) => {
                    let line = pick(&self.settings.expected_wait, lang)
                        .cloned()
                        .unwrap_or_default()
                        .replace("{wait}", &wait);
                    if !line.trim().is_empty() {
                        body.push(' ');
                        body.push_str(&line);
                    }
                }
                _ => {
                    let text = pick(&self.settings.acknowledgement, lang)
                        .cloned()
                        .unwrap_or_default()
                        .replace("{wait}", &wait);
                    if !text.trim().is_empty() {
                        draft.replies.push((Author::System, Content::text(text)));
                    }
                }
            }
        }
        usage
    }

    /// When the team next answers: `now` when open.
    pub fn opens_at(&self, team: &Team, now: Millis) -> Millis {
        let Ok(at) = Timestamp::from_millisecond(now) else {
            return now;
        };
        team.hours.next_open(at, &self.tz).as_millisecond()
    }

    pub fn is_open(&self, team: &Team, now: Millis) -> bool {
        self.opens_at(team, now) <= now
    }

    /// The wait to tell a customer newly queued for `team`, in milliseconds: the threads
    /// ahead shared among the team's online concierges, at `minutes_per_thread` each; the
    /// SLA when nobody is online.
    pub async fn expected_wait(&self, team: &Team, now: Millis) -> Result<i64, StoreError> {
        let queue = self.queue.queue().await?;
        let presence = self.queue.presence().await?;
        let ahead = queue
            .iter()
            .filter(|e| {
                e.conversation.thread.name() == "queued"
                    && self.team(entry_team(e).map(String::as_str)).name == team.name
            })
            .count() as i64;
        let mut online = 0i64;
        let mut free = 0i64;
        for concierge in self.concierges.iter().filter(|c| c.in_team(&team.name)) {
            let Some(p) = presence.iter().find(|p| p.concierge == concierge.name) else {
                continue;
            };
            if !Self::is_online(p, now) {
                continue;
            }
            online += 1;
            let owned = owned_by(&queue, &concierge.name) as i64;
            free += (i64::try_from(concierge.capacity).unwrap_or(i64::MAX / 4) - owned).max(0);
        }
        let per_thread = secs_to_ms(self.settings.minutes_per_thread.saturating_mul(60));
        if online == 0 {
            return Ok(team.sla_ms);
        }
        if free > ahead {
            return Ok(60_000);
        }
        Ok(((ahead - free) / online + 1).saturating_mul(per_thread))
    }

    fn describe_opening(&self, opens: Millis, now: Millis, lang: &str) -> String {
        let (Ok(opens), Ok(now)) = (
            Timestamp::from_millisecond(opens),
            Timestamp::from_millisecond(now),
        ) else {
            return String::new();
        };
        let (opens, now) = (
            opens.to_zoned(self.tz.clone()),
            now.to_zoned(self.tz.clone()),
        );
        let time = opens.strftime("%H:%M").to_string();
        let days = (opens.date() - now.date()).get_days();
        let fr = lang == "fr";
        match days {
            0 if fr => format!("aujourd'hui à {time}"),
            0 => format!("today at {time}"),
            1 if fr => format!("demain à {time}"),
            1 => format!("tomorrow at {time}"),
            _ => {
                let day = opens.weekday().to_monday_zero_offset() as usize;
                let names_en = [
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday",
                ];
                let names_fr = [
                    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
                ];
                if fr {
                    format!("{} à {time}", names_fr[day])
                } else {
                    format!("{} at {time}", names_en[day])
                }
            }
        }
    }
}

/// The team a queue entry is queued for.
pub fn entry_team(entry: &QueueEntry) -> Option<&String> {
    entry.handoff.as_ref().and_then(|h| h.team.as_ref())
}

impl Desk {
    /// The team a queue entry belongs to: its handoff's, else its channel's.
    pub fn entry_team<'a>(&'a self, entry: &'a QueueEntry) -> &'a str {
        self.thread_team(
            entry_team(entry).map(String::as_str),
            &entry.conversation.channel,
        )
    }
}

/// How many threads a concierge owns.
pub fn owned_by(queue: &[QueueEntry], concierge: &str) -> usize {
    queue
        .iter()
        .filter(|e| {
            matches!(&e.conversation.thread, concierge_domain::ThreadState::Human { concierge: c } if c == concierge)
        })
        .count()
}

/// An expected wait in words.
pub fn describe_wait(ms: i64, lang: &str) -> String {
    let minutes = (ms + 59_999) / 60_000;
    let fr = lang == "fr";
    match minutes {
        ..=2 if fr => "une à deux minutes".to_string(),
        ..=2 => "a minute or two".to_string(),
        3..=89 if fr => format!("environ {minutes} minutes"),
        3..=89 => format!("about {minutes} minutes"),
        _ => {
            let hours = (minutes + 30) / 60;
            match (fr, hours) {
                (true, 1) => "environ une heure".to_string(),
                (true, h) => format!("environ {h} heures"),
                (false, 1) => "about an hour".to_string(),
                (false, h) => format!("about {h} hours"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_in_words() {
        assert_eq!(describe_wait(30_000, "en"), "a minute or two");
        assert_eq!(describe_wait(5 * 60_000, "en"), "about 5 minutes");
        assert_eq!(describe_wait(5 * 60_000, "fr"), "environ 5 minutes");
        assert_eq!(describe_wait(100 * 60_000, "en"), "about 2 hours");
    }
}
