//! Loads and cross-checks the deployment: `concierge.toml`, `channels/<id>.toml` and
//! `prompts/`. Every file is read, every problem collected, before anything starts.

mod checks;
mod model;
mod templates;
mod toml_file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use self::model::{
    AgentsConfig, ConciergeConfig, ConciergeRole, DeliveryConfig, FaqConfig, FileConfig, LlmConfig,
    LlmProvider, MerchantConfig, OrchestratorConfig, PathsConfig, QueueConfig, ResponderConfig,
    ServerConfig, StoreConfig, SyncMode, TeamConfig, ToolConfig,
};
pub use self::toml_file::{Env, TomlFile};
use crate::channels::{ChannelConfig, ChannelKind};
use crate::domain::ChannelId;
pub use crate::domain::{Problem, Problems, Secret, suggest};
use crate::orchestrator::faq::FaqIndex;

/// The prefix of environment variables that override `concierge.toml` values.
pub const OVERRIDE_PREFIX: &str = "CONCIERGE__";

/// A loaded, checked deployment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The concierge.toml that was read.
    pub file: PathBuf,
    pub settings: FileConfig,
    pub bind: SocketAddr,
    /// Where `/metrics` is served on a listener of its own, when `[server] metrics_bind` is set.
    pub metrics_bind: Option<SocketAddr>,
    pub store: StoreLocation,
    pub channels_dir: PathBuf,
    pub prompts_dir: PathBuf,
    /// The template catalogue's folder (`[paths] templates`, `templates/` by default).
    pub templates_dir: PathBuf,
    /// The templates the merchant may send first (empty without a templates folder).
    pub catalogue: std::sync::Arc<crate::channels::templates::Catalogue>,
    /// Where customers' media is kept (`[media] store`, resolved).
    pub media_dir: PathBuf,
    /// Channel instances, sorted by id.
    pub channels: Vec<(ChannelId, ChannelConfig)>,
    /// The team each channel's conversations belong to until a handoff names another (a
    /// channel file's `team`, else `[queue] default_team`).
    pub channel_teams: std::collections::BTreeMap<ChannelId, String>,
    pub faq: FaqIndex,
    /// Agent files found in prompts/ (used once an `[llm]` is configured).
    pub agent_files: Vec<PathBuf>,
    /// The agents, checked against each other and the tools (none without agent files).
    pub agents: Option<std::sync::Arc<crate::agents::AgentSet>>,
    /// The merchant's time zone.
    pub timezone: jiff::tz::TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A Redis URL (`redis://` or `rediss://`), with its settings in `[store]`.
    Redis(String),
}

impl Config {
    /// Loads from the process environment.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let env = |name: &str| std::env::var(name).ok();
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(OVERRIDE_PREFIX))
            .collect();
        Self::load_with(path, &env, &vars)
    }

    /// Loads with an explicit environment (tests).
    pub fn load_with(
        path: &Path,
        env: Env<'_>,
        overrides: &[(String, String)],
    ) -> Result<Config, Problems> {
        let mut problems = Problems::default();
        let root = root_of(path);
        let settings = read_settings(path, env, overrides, &mut problems);
        let main = MainFile::read(path);

        let (listen, found) = checks::server(&settings.server);
        main.place(&mut problems, found);
        let (store, found) = checks::store(&settings.store, &root);
        main.place(&mut problems, found);
        main.place(&mut problems, checks::pipeline(&settings));

        // The channels come after the main file's checks: "no channel is configured" is only
        // worth saying when nothing else is wrong.
        let (channels_dir, prompts_dir) = checks::paths(&settings, &root);
        let media_dir = checks::media_dir(&settings, &root);
        let (channels, channel_teams) =
            load_channel_files(&settings, &channels_dir, env, &mut problems);
        let faq_path = prompts_dir.join(&settings.faq.file);
        let faq = load_faq(&faq_path, &mut problems);
        let agent_files = agent_files(&prompts_dir, &faq_path);
        let templates_dir = checks::templates_dir(&settings, &root);
        let catalogue = templates::load(&templates_dir, &mut problems);
        templates::check_uses(&catalogue, &channels_dir, &channels, &mut problems);

        let timezone = cross_check(&settings, &main, &mut problems);
        let agents = load_agents(&settings, &prompts_dir, &agent_files, &mut problems);

        attribute_overrides(&mut problems, path, overrides, main.table());
        problems.sort(path);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            file: path.to_path_buf(),
            settings,
            bind: listen.bind,
            metrics_bind: listen.metrics_bind,
            store,
            channels_dir,
            prompts_dir,
            templates_dir,
            catalogue: std::sync::Arc::new(catalogue),
            media_dir,
            channels,
            channel_teams,
            faq,
            agent_files,
            agents,
            timezone,
        })
    }
}

/// The folder relative paths are resolved against: the main file's own.
fn root_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Reads the main file: `${VAR}`s, then `CONCIERGE__…` overrides, then the typed settings.
/// Whatever cannot be read leaves the defaults, so the other checks still run.
fn read_settings(
    path: &Path,
    env: Env<'_>,
    overrides: &[(String, String)],
    problems: &mut Problems,
) -> FileConfig {
    let mut file = match TomlFile::read(path) {
        Ok(file) => file,
        Err(p) => {
            problems.push(p);
            return FileConfig::default();
        }
    };
    for p in file.interpolate(env) {
        problems.push(p);
    }
    for p in file.apply_overrides(OVERRIDE_PREFIX, overrides) {
        problems.push(p);
    }
    let table = file.table.clone();
    let (settings, found) = file.deserialize::<FileConfig>(table);
    for p in found {
        problems.push(p);
    }
    settings.unwrap_or_default()
}

/// The main file as written, without overrides: where a refused key's line is, and which
/// keys the file itself sets (see [`attribute_overrides`]).
struct MainFile<'a> {
    path: &'a Path,
    file: Option<TomlFile<'a>>,
}

impl<'a> MainFile<'a> {
    fn read(path: &'a Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Self {
            path,
            file: TomlFile::parse(path, text).ok(),
        }
    }

    fn table(&self) -> Option<&toml::Table> {
        self.file.as_ref().map(|f| &f.table)
    }

    /// Turns refused keys into problems at their line of the main file, in order.
    fn place(&self, problems: &mut Problems, faults: Vec<checks::Fault>) {
        for (key, message) in faults {
            let line = self.file.as_ref().and_then(|f| f.line_of_key(&key));
            problems.push(Problem::new(self.path, message).at_key(key).at_line(line));
        }
    }
}

/// channels/, with every channel's team: its file's `team`, else `[queue] default_team`.
fn load_channel_files(
    settings: &FileConfig,
    dir: &Path,
    env: Env<'_>,
    problems: &mut Problems,
) -> Channels {
    let known_teams = checks::known_teams(settings);
    let (channels, mut channel_teams) = load_channels(dir, env, &known_teams, problems);
    for (id, _) in &channels {
        channel_teams
            .entry(id.clone())
            .or_insert_with(|| settings.queue.default_team.clone());
    }
    (channels, channel_teams)
}

/// The FAQ file, when there is one; an unreadable or malformed one is a problem and no FAQ.
fn load_faq(faq_path: &Path, problems: &mut Problems) -> FaqIndex {
    if !faq_path.exists() {
        return FaqIndex::default();
    }
    match std::fs::read_to_string(faq_path) {
        Ok(text) => match FaqIndex::parse(&text) {
            Ok(index) => index,
            Err(e) => {
                problems.push(Problem::new(faq_path, e.to_string()).at_line(Some(e.line())));
                FaqIndex::default()
            }
        },
        Err(e) => {
            problems.push(Problem::new(faq_path, format!("cannot read the file: {e}")));
            FaqIndex::default()
        }
    }
}

/// Every `.md` in prompts/ but the FAQ is an agent.
fn agent_files(prompts_dir: &Path, faq_path: &Path) -> Vec<PathBuf> {
    list_files(prompts_dir, "md")
        .into_iter()
        .filter(|p| p != faq_path)
        .collect()
}

/// The settings that refer to one another (the LLM, tools, agents' bounds, teams and
/// concierges, the merchant's time zone), each refused key placed in the main file.
fn cross_check(
    settings: &FileConfig,
    main: &MainFile<'_>,
    problems: &mut Problems,
) -> jiff::tz::TimeZone {
    main.place(problems, checks::llm(settings.llm.as_ref()));
    main.place(problems, crate::agents::tools::check(&settings.tools));
    main.place(problems, crate::agents::check_flows(&settings.flows));
    main.place(problems, checks::agents(&settings.agents));
    main.place(problems, crate::webhooks::check(&settings.webhooks));
    main.place(problems, crate::notify::check(&settings.notifications));
    main.place(
        problems,
        crate::handoff::config::check(&settings.queue, &settings.teams, &settings.concierges),
    );
    let (timezone, found) = checks::timezone(&settings.merchant.timezone);
    main.place(problems, found);
    timezone
}

/// The agents, checked against each other and the configured tools. Without agent files
/// there are none, which is only a problem once an `[llm]` would need them.
fn load_agents(
    settings: &FileConfig,
    prompts_dir: &Path,
    agent_files: &[PathBuf],
    problems: &mut Problems,
) -> Option<std::sync::Arc<crate::agents::AgentSet>> {
    if agent_files.is_empty() {
        if settings.llm.is_some() {
            problems.push(Problem::new(
                prompts_dir,
                "[llm] is configured but there is no agent: add an agent file such as front_desk.md with `entry = true`",
            ));
        }
        return None;
    }
    let tool_names = settings.tools.iter().map(|t| t.name.clone()).collect();
    match crate::agents::AgentSet::load(agent_files, &tool_names) {
        Ok(set) => {
            // A form tool needs forms to send.
            let flow_tool = crate::agents::definition::OPEN_FLOW_TOOL;
            for def in set.names().filter_map(|n| set.get(n)) {
                if settings.flows.is_empty() && def.tools.iter().any(|t| t == flow_tool) {
                    problems.push(
                        Problem::new(
                            &def.file,
                            format!(
                                "agent `{}` names tool `{flow_tool}`, but concierge.toml declares no [[flows]]",
                                def.name
                            ),
                        )
                        .at_key("tools"),
                    );
                }
            }
            Some(std::sync::Arc::new(set))
        }
        Err(found) => {
            for p in found {
                problems.push(p);
            }
            None
        }
    }
}

/// Names the `CONCIERGE__…` variable in the problems it caused, instead of a line of the
/// file: a key it sets (or one inside a section it sets), or an unknown key it made up (a
/// misspelt section or key, which the file does not have). A misspelt segment's hint becomes
/// the variable to set instead (`CONCIERGE__SERVR__BIND`: did you mean
/// `CONCIERGE__SERVER__BIND`?).
fn attribute_overrides(
    problems: &mut Problems,
    path: &Path,
    overrides: &[(String, String)],
    file: Option<&toml::Table>,
) {
    let vars: Vec<(&str, Vec<String>)> = overrides
        .iter()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix(OVERRIDE_PREFIX)?;
            Some((
                name.as_str(),
                rest.split("__").map(str::to_ascii_lowercase).collect(),
            ))
        })
        .collect();
    for problem in problems.0.iter_mut().filter(|p| p.file == path) {
        let Some(key) = problem.key.clone() else {
            continue;
        };
        let in_file = file.is_some_and(|table| has_key(table, &key));
        let found = vars.iter().find(|(_, segments)| {
            let set = segments.join(".");
            set == key
                || key.starts_with(&format!("{set}."))
                || (set.starts_with(&format!("{key}.")) && !in_file)
        });
        let Some((var, segments)) = found else {
            continue;
        };
        problem.env = Some((*var).into());
        problem.line = None;
        let depth = key.split('.').count();
        if let Some(hint) = problem.hint.take()
            && depth <= segments.len()
        {
            let mut fixed: Vec<String> = segments.iter().map(|s| s.to_ascii_uppercase()).collect();
            fixed[depth - 1] = hint.to_ascii_uppercase();
            problem.hint = Some(format!("{OVERRIDE_PREFIX}{}", fixed.join("__")).into());
        }
    }
}

/// Whether a dotted key is written in the table.
fn has_key(table: &toml::Table, key: &str) -> bool {
    let mut current = table;
    let segments: Vec<&str> = key.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        match current.get(*segment) {
            Some(toml::Value::Table(inner)) => current = inner,
            Some(_) => return i + 1 == segments.len(),
            None => return false,
        }
    }
    true
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

fn list_files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == extension))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The channels, and the team of those whose file names one.
type Channels = (
    Vec<(ChannelId, ChannelConfig)>,
    std::collections::BTreeMap<ChannelId, String>,
);

fn load_channels(dir: &Path, env: Env<'_>, teams: &[String], problems: &mut Problems) -> Channels {
    let mut channel_teams = std::collections::BTreeMap::new();
    if !dir.is_dir() {
        problems.push(Problem::new(
            dir,
            "the channels folder does not exist: create it with one <id>.toml per channel",
        ));
        return (Vec::new(), channel_teams);
    }
    let mut channels = Vec::new();
    for path in list_files(dir, "toml") {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = match ChannelId::parse(stem.clone()) {
            Ok(id) => id,
            Err(e) => {
                problems.push(Problem::new(
                    &path,
                    format!("the file name is the channel id, and `{stem}` is not valid: {e} (use lowercase letters, digits, - and _)"),
                ));
                continue;
            }
        };
        let mut file = match TomlFile::read(&path) {
            Ok(file) => file,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let interpolation = file.interpolate(env);
        let mut failed = !interpolation.is_empty();
        for p in interpolation {
            problems.push(p);
        }
        // Every kind takes `team`: whose concierges see its conversations.
        match file.table.remove("team") {
            None => {}
            Some(toml::Value::String(team)) if teams.contains(&team) => {
                channel_teams.insert(id.clone(), team);
            }
            Some(value) => {
                failed = true;
                let why = match value.as_str() {
                    Some(team) => {
                        format!(
                            "`{team}` is not one of the teams ({}){}",
                            teams.join(", "),
                            suggest::did_you_mean(team, teams.iter().map(String::as_str))
                        )
                    }
                    None => "must be a team's name".to_string(),
                };
                problems.push(
                    Problem::new(&path, why)
                        .at_key("team")
                        .at_line(file.line_of_key("team")),
                );
            }
        }
        match channel_config(&file) {
            Ok(config) if !failed => channels.push((id, config)),
            Ok(_) => {}
            Err(found) => {
                for p in found {
                    problems.push(p);
                }
            }
        }
    }
    if channels.is_empty() && problems.is_empty() {
        problems.push(Problem::new(
            dir,
            "no channel is configured: add a file such as web.toml holding kind = \"webchat\"",
        ));
    }
    (channels, channel_teams)
}

/// Reads `kind`, then the rest of the file as that kind's keys (unknown keys refused).
fn channel_config(file: &TomlFile<'_>) -> Result<ChannelConfig, Vec<Problem>> {
    let mut table = file.table.clone();
    let kind = match table.remove("kind") {
        Some(toml::Value::String(kind)) => kind,
        Some(_) => {
            return Err(vec![
                Problem::new(file.path, "must be a string")
                    .at_key("kind")
                    .at_line(file.line_of_key("kind")),
            ]);
        }
        None => {
            return Err(vec![
                Problem::new(file.path, format!("missing; one of: {}", kind_names()))
                    .at_key("kind"),
            ]);
        }
    };
    match ChannelKind::from_name(&kind) {
        Some(ChannelKind::Webchat) => typed(file, table, ChannelConfig::Webchat),
        Some(ChannelKind::Whatsapp) => typed(file, table, ChannelConfig::Whatsapp),
        Some(ChannelKind::TwilioWhatsapp) => typed(file, table, ChannelConfig::TwilioWhatsapp),
        Some(ChannelKind::Bluebubbles) => typed(file, table, ChannelConfig::Bluebubbles),
        Some(ChannelKind::Telegram) => typed(file, table, ChannelConfig::Telegram),
        None => Err(vec![
            Problem::new(
                file.path,
                format!("unknown channel kind `{kind}`; one of: {}", kind_names()),
            )
            .at_key("kind")
            .at_line(file.line_of_key("kind"))
            .with_hint(
                suggest::closest(&kind, ChannelKind::ALL.iter().map(|k| k.name()))
                    .map(str::to_string),
            ),
        ]),
    }
}

/// Reads a channel file's keys into its kind's config; every bad key is a problem.
fn typed<T: serde::de::DeserializeOwned>(
    file: &TomlFile<'_>,
    table: toml::Table,
    wrap: fn(T) -> ChannelConfig,
) -> Result<ChannelConfig, Vec<Problem>> {
    match file.deserialize::<T>(table) {
        (Some(value), problems) if problems.is_empty() => {
            let config = wrap(value);
            let problems: Vec<Problem> = config
                .problems()
                .into_iter()
                .map(|(key, why)| {
                    Problem::new(file.path, why)
                        .at_key(key)
                        .at_line(file.line_of_key(key))
                })
                .collect();
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(problems)
            }
        }
        (_, problems) => Err(problems),
    }
}

fn kind_names() -> String {
    ChannelKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Deployment {
        dir: tempfile::TempDir,
    }

    impl Deployment {
        fn new(main: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("concierge.toml"), main).unwrap();
            std::fs::create_dir(dir.path().join("channels")).unwrap();
            std::fs::create_dir(dir.path().join("prompts")).unwrap();
            Self { dir }
        }

        fn channel(self, name: &str, body: &str) -> Self {
            std::fs::write(self.dir.path().join("channels").join(name), body).unwrap();
            self
        }

        fn load(&self, env: Env<'_>) -> Result<Config, Problems> {
            Config::load_with(&self.dir.path().join("concierge.toml"), env, &[])
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str =
        "[server]\nbind = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite:data/x.db\"\n";

    #[test]
    fn server_and_store_with_one_webchat_is_a_deployment() {
        let d = Deployment::new(MINIMAL).channel("web.toml", "kind = \"webchat\"\n");
        let config = d.load(&no_env).unwrap();
        assert_eq!(config.channels.len(), 1);
        assert_eq!(config.channels[0].0.as_str(), "web");
        assert_eq!(
            config.store,
            StoreLocation::Sqlite(d.dir.path().join("data/x.db"))
        );
        assert!(config.faq.is_empty());
    }

    #[test]
    fn an_unknown_key_in_a_channel_names_file_key_and_line() {
        let d = Deployment::new(MINIMAL).channel(
            "web.toml",
            "kind = \"webchat\"\ntitle = \"Shop\"\nverify_tokn = \"x\"\n",
        );
        let problems = d.load(&no_env).unwrap_err();
        assert_eq!(problems.0.len(), 1, "{problems}");
        let p = &problems.0[0];
        assert!(p.file.ends_with("channels/web.toml"));
        assert_eq!(p.key.as_deref(), Some("verify_tokn"));
        assert_eq!(p.line, Some(3));
    }

    #[test]
    fn a_missing_variable_names_file_and_key() {
        let d = Deployment::new(MINIMAL).channel(
            "web.toml",
            "kind = \"webchat\"\ntitle = \"${SHOP_TITLE}\"\n",
        );
        let problems = d.load(&no_env).unwrap_err();
        let text = problems.to_string();
        assert!(text.contains("web.toml:2: key `title`"), "{text}");
        assert!(text.contains("SHOP_TITLE"), "{text}");
        let env = |name: &str| (name == "SHOP_TITLE").then(|| "Maison".to_string());
        assert!(d.load(&env).is_ok());
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let d = Deployment::new("[server]\nbind = \"nope\"\n[store]\nurl = \"mysql://x\"\n")
            .channel("web.toml", "kind = \"telepathy\"\n")
            .channel("Bad Name.toml", "kind = \"webchat\"\n");
        let problems = d.load(&no_env).unwrap_err();
        let text = problems.to_string();
        assert!(text.contains("server.bind"), "{text}");
        assert!(text.contains("store.url"), "{text}");
        assert!(text.contains("telepathy"), "{text}");
        assert!(text.contains("Bad Name"), "{text}");
    }

    #[test]
    fn unknown_keys_in_the_main_file_are_refused() {
        let d = Deployment::new("[server]\nbind = \"127.0.0.1:0\"\nbnid = 1\n")
            .channel("web.toml", "kind = \"webchat\"\n");
        let problems = d.load(&no_env).unwrap_err();
        assert_eq!(problems.0[0].key.as_deref(), Some("server.bnid"));
        assert_eq!(problems.0[0].line, Some(3));
    }

    #[test]
    fn every_unknown_key_is_reported_and_the_rest_still_applies() {
        let d = Deployment::new(
            "[server]\nbind = \"127.0.0.1:0\"\nbnid = 1\n[paths]\nchannels = \"chans\"\n[store]\nurll = \"x\"\n",
        );
        std::fs::create_dir(d.dir.path().join("chans")).unwrap();
        std::fs::write(
            d.dir.path().join("chans/web.toml"),
            "kind = \"webchat\"\ntitel = \"x\"\ngreting = \"y\"\n",
        )
        .unwrap();
        let problems = d.load(&no_env).unwrap_err();
        let keys: Vec<_> = problems.0.iter().filter_map(|p| p.key.clone()).collect();
        assert_eq!(
            keys,
            ["server.bnid", "store.urll", "titel", "greting"],
            "{problems}"
        );
        // The custom channels folder was honoured despite the bad keys beside it.
        assert!(problems.0[2].file.ends_with("chans/web.toml"));
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let d = Deployment::new(MINIMAL).channel(
            "wa.toml",
            "kind = \"whatsapp\"\nphone_number_id = \"1\"\naccess_token = \"t\"\napp_secret = \"${SECRET:-}\"\nverify_token = \"v\"\n",
        );
        let problems = d.load(&no_env).unwrap_err();
        assert_eq!(problems.0.len(), 1, "{problems}");
        assert_eq!(problems.0[0].key.as_deref(), Some("app_secret"));
        assert_eq!(problems.0[0].line, Some(4));
    }

    #[test]
    fn zero_http_limits_are_refused_with_file_and_key() {
        let d = Deployment::new(
            "[server]\nbind = \"127.0.0.1:0\"\nheader_read_timeout_secs = 0\nbody_read_timeout_secs = 0\nmax_header_bytes = 0\n",
        )
        .channel("web.toml", "kind = \"webchat\"\n");
        let problems = d.load(&no_env).unwrap_err();
        let found: Vec<_> = problems
            .0
            .iter()
            .map(|p| (p.key.clone().unwrap_or_default(), p.line))
            .collect();
        assert_eq!(
            found,
            [
                ("server.header_read_timeout_secs".to_string(), Some(3)),
                ("server.body_read_timeout_secs".to_string(), Some(4)),
                ("server.max_header_bytes".to_string(), Some(5)),
            ],
            "{problems}"
        );
        assert!(
            problems
                .0
                .iter()
                .all(|p| p.file.ends_with("concierge.toml"))
        );
        std::fs::write(d.dir.path().join("concierge.toml"), MINIMAL).unwrap();
        let config = d.load(&no_env).unwrap();
        let server = &config.settings.server;
        assert_eq!(
            (
                server.header_read_timeout_secs,
                server.body_read_timeout_secs,
                server.max_header_bytes
            ),
            (10, 10, 16384)
        );
    }

    #[test]
    fn zero_connection_and_stream_caps_are_refused_with_file_and_key() {
        let d = Deployment::new(
            "[server]\nbind = \"127.0.0.1:0\"\nmax_connections = 0\nwrite_timeout_secs = 0\nmax_streams_per_key = 0\nmax_streams_per_concierge = 0\n",
        )
        .channel("web.toml", "kind = \"webchat\"\n");
        let problems = d.load(&no_env).unwrap_err();
        let found: Vec<_> = problems
            .0
            .iter()
            .map(|p| (p.key.clone().unwrap_or_default(), p.line))
            .collect();
        assert_eq!(
            found,
            [
                ("server.max_connections".to_string(), Some(3)),
                ("server.write_timeout_secs".to_string(), Some(4)),
                ("server.max_streams_per_key".to_string(), Some(5)),
                ("server.max_streams_per_concierge".to_string(), Some(6)),
            ],
            "{problems}"
        );
        std::fs::write(d.dir.path().join("concierge.toml"), MINIMAL).unwrap();
        let server = d.load(&no_env).unwrap().settings.server;
        assert_eq!(
            (
                server.max_connections,
                server.write_timeout_secs,
                server.max_streams_per_key,
                server.max_streams_per_concierge
            ),
            (10_000, 30, 5, 10)
        );
    }

    #[test]
    fn a_misspelt_override_names_the_variable_and_the_one_meant() {
        let d = Deployment::new(MINIMAL).channel("web.toml", "kind = \"webchat\"\n");
        let overrides = vec![
            (
                "CONCIERGE__SERVR__BIND".to_string(),
                "127.0.0.1:1".to_string(),
            ),
            (
                "CONCIERGE__SERVER__BNID".to_string(),
                "127.0.0.1:1".to_string(),
            ),
        ];
        let problems = Config::load_with(&d.dir.path().join("concierge.toml"), &no_env, &overrides)
            .unwrap_err();
        let found: Vec<_> = problems
            .0
            .iter()
            .map(|p| {
                (
                    p.env.as_deref().map(str::to_string),
                    p.line,
                    p.hint.as_deref().map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    Some("CONCIERGE__SERVER__BNID".to_string()),
                    None,
                    Some("CONCIERGE__SERVER__BIND".to_string())
                ),
                (
                    Some("CONCIERGE__SERVR__BIND".to_string()),
                    None,
                    Some("CONCIERGE__SERVER__BIND".to_string())
                ),
            ],
            "{problems}"
        );
        let text = problems.to_string();
        assert!(
            text.starts_with("environment variable CONCIERGE__SERVER__BNID (over "),
            "{text}"
        );
        assert!(
            text.contains("did you mean `CONCIERGE__SERVER__BIND`?"),
            "{text}"
        );
    }

    #[test]
    fn unknown_names_get_the_closest_known_one() {
        let d = Deployment::new("[server]\nbind = \"127.0.0.1:0\"\n[stor]\nurl = \"x\"\n")
            .channel("web.toml", "kind = \"webchat\"\ntitel = \"x\"\n")
            .channel("wa.toml", "kind = \"whatsap\"\n");
        let problems = d.load(&no_env).unwrap_err();
        let hints: Vec<_> = problems
            .0
            .iter()
            .map(|p| {
                (
                    p.key.clone().unwrap_or_default(),
                    p.hint.as_deref().map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            hints,
            [
                ("stor".to_string(), Some("store".to_string())),
                ("kind".to_string(), Some("whatsapp".to_string())),
                ("titel".to_string(), Some("title".to_string())),
            ],
            "{problems}"
        );
        assert!(problems.to_string().contains("did you mean `whatsapp`?"));
    }

    #[test]
    fn problems_are_listed_by_file_then_line() {
        let d = Deployment::new(
            "[server]\nbind = \"127.0.0.1:0\"\nmax_connections = 0\n\n[faq]\nthreshold = 2.0\n\n[server2]\n",
        )
        .channel("a.toml", "kind = \"webchat\"\n\nzz = 1\naa = 2\n");
        let problems = d.load(&no_env).unwrap_err();
        let found: Vec<_> = problems
            .0
            .iter()
            .map(|p| {
                (
                    p.file.file_name().unwrap().to_string_lossy().into_owned(),
                    p.line,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("concierge.toml".to_string(), Some(3)),
                ("concierge.toml".to_string(), Some(6)),
                ("concierge.toml".to_string(), Some(8)),
                ("a.toml".to_string(), Some(3)),
                ("a.toml".to_string(), Some(4)),
            ],
            "{problems}"
        );
    }

    #[test]
    fn overrides_win_over_the_file() {
        let d = Deployment::new(MINIMAL).channel("web.toml", "kind = \"webchat\"\n");
        let overrides = vec![(
            "CONCIERGE__SERVER__BIND".to_string(),
            "127.0.0.1:9999".to_string(),
        )];
        let config =
            Config::load_with(&d.dir.path().join("concierge.toml"), &no_env, &overrides).unwrap();
        assert_eq!(config.bind.port(), 9999);
    }
}
