//! The pure checks of `concierge.toml`'s settings: each takes a section and returns the
//! values it resolves and the keys it refuses, so the loader only has to place them in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::model::{AgentsConfig, FileConfig, LlmConfig, LlmProvider, ServerConfig, StoreConfig};
use super::{StoreLocation, resolve, to_u64};

/// A refused key of the main file: the dotted key, and why.
pub(super) type Fault = (String, String);

fn fault(key: &str, message: impl Into<String>) -> Fault {
    (key.to_string(), message.into())
}

/// Where the server listens: the API, and `/metrics` on a listener of its own when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listen {
    pub bind: SocketAddr,
    pub metrics_bind: Option<SocketAddr>,
}

/// `[server]`: the addresses, then every limit that must be above 0 or in range.
pub(super) fn server(server: &ServerConfig) -> (Listen, Vec<Fault>) {
    let mut faults = Vec::new();
    let bind = match server.bind.parse::<SocketAddr>() {
        Ok(bind) => bind,
        Err(e) => {
            faults.push(fault(
                "server.bind",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080: {e}",
                    server.bind
                ),
            ));
            // A stand-in so the rest still loads and every other problem is reported too.
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }
    };
    let metrics_bind = match server.metrics_bind.as_deref() {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                faults.push(fault(
                    "server.metrics_bind",
                    format!("`{text}` is not an address like 127.0.0.1:9090: {e}"),
                ));
                None
            }
        },
    };
    if server
        .metrics_token
        .as_ref()
        .is_some_and(|token| token.expose().trim().is_empty())
    {
        faults.push(fault(
            "server.metrics_token",
            "must not be empty (leave it out to serve /metrics without a token on metrics_bind)",
        ));
    }
    if server.body_limit_bytes == 0 {
        faults.push(fault("server.body_limit_bytes", "must be above 0"));
    }
    for (key, value) in [
        (
            "server.header_read_timeout_secs",
            server.header_read_timeout_secs,
        ),
        (
            "server.body_read_timeout_secs",
            server.body_read_timeout_secs,
        ),
        ("server.write_timeout_secs", server.write_timeout_secs),
        ("server.max_connections", to_u64(server.max_connections)),
        (
            "server.max_streams_per_key",
            to_u64(server.max_streams_per_key),
        ),
        (
            "server.max_streams_per_concierge",
            to_u64(server.max_streams_per_concierge),
        ),
    ] {
        if value == 0 {
            faults.push(fault(key, "must be above 0"));
        }
    }
    // Above 256 KiB the connection's read buffer (about 400 KB) would be the limit.
    if !(1024..=256 * 1024).contains(&server.max_header_bytes) {
        faults.push(fault(
            "server.max_header_bytes",
            format!("{} is not between 1024 and 262144", server.max_header_bytes),
        ));
    }
    (Listen { bind, metrics_bind }, faults)
}

/// `[store]`: where it is (a relative sqlite path is under `root`), then its limits.
pub(super) fn store(store: &StoreConfig, root: &Path) -> (StoreLocation, Vec<Fault>) {
    let mut faults = Vec::new();
    let location = match store.url.split_once(':') {
        Some(("sqlite", rest)) if !rest.trim().is_empty() => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            StoreLocation::Sqlite(resolve(root, rest))
        }
        Some(("redis" | "rediss", _)) => {
            if redis::parse_redis_url(&store.url).is_none() {
                faults.push(fault(
                    "store.url",
                    "is not a Redis URL like redis://127.0.0.1:6379/0",
                ));
            }
            StoreLocation::Redis(store.url.clone())
        }
        _ => {
            faults.push(fault(
                "store.url",
                format!(
                    "`{}` is not a store this build supports; use sqlite:PATH or redis://HOST:PORT/DB",
                    store.url
                ),
            ));
            StoreLocation::Sqlite(root.join("data/concierge.db"))
        }
    };
    let prefix_ok = !store.prefix.is_empty()
        && store.prefix.len() <= 64
        && store
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !prefix_ok {
        faults.push(fault(
            "store.prefix",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    if !(1..=1024).contains(&store.partitions) {
        faults.push(fault(
            "store.partitions",
            format!("{} is not between 1 and 1024", store.partitions),
        ));
    }
    if !(1_000..=600_000).contains(&store.takeover_ms) {
        faults.push(fault(
            "store.takeover_ms",
            format!("{} is not between 1000 and 600000", store.takeover_ms),
        ));
    }
    if store.dedupe_ttl_secs < 3600 {
        faults.push(fault(
            "store.dedupe_ttl_secs",
            "must be at least 3600: platforms retry a webhook for hours",
        ));
    }
    if !(1..=3650).contains(&store.raw_retention_days) {
        faults.push(fault(
            "store.raw_retention_days",
            format!("{} is not between 1 and 3650", store.raw_retention_days),
        ));
    }
    (location, faults)
}

/// `[faq]`, `[responder]`, `[orchestrator]` and `[delivery]`: the answering pipeline's knobs.
pub(super) fn pipeline(settings: &FileConfig) -> Vec<Fault> {
    let mut faults = Vec::new();
    if !(0.0..=1.0).contains(&settings.faq.threshold) {
        faults.push(fault(
            "faq.threshold",
            format!("{} is not between 0 and 1", settings.faq.threshold),
        ));
    }
    if !settings.responder.holding.contains_key("en") {
        faults.push(fault(
            "responder.holding",
            "needs an `en` entry, the fallback for every language",
        ));
    }
    if settings.orchestrator.max_parallel_lanes == 0 {
        faults.push(fault("orchestrator.max_parallel_lanes", "must be above 0"));
    }
    if settings.delivery.max_in_flight == 0 {
        faults.push(fault("delivery.max_in_flight", "must be above 0"));
    }
    for (key, problem) in settings.media.check() {
        faults.push(fault(&format!("media.{key}"), problem));
    }
    for (key, problem) in settings.consent.check() {
        faults.push(fault(&format!("consent.{key}"), problem));
    }
    for (key, problem) in settings.commerce.check() {
        faults.push(fault(&format!("commerce.{key}"), &problem));
    }
    if let Some(transcription) = &settings.transcription {
        for (key, problem) in transcription.check() {
            faults.push(fault(&format!("transcription.{key}"), problem));
        }
    }
    faults
}

/// The media folder, relative to the main file's folder.
pub(super) fn media_dir(settings: &FileConfig, root: &Path) -> PathBuf {
    resolve(root, &settings.media.store)
}

/// Where channels/ and prompts/ are: `[paths]`, relative to the main file's folder.
pub(super) fn paths(settings: &FileConfig, root: &Path) -> (PathBuf, PathBuf) {
    let channels = settings.paths.channels.as_deref().unwrap_or("channels");
    let prompts = settings.paths.prompts.as_deref().unwrap_or("prompts");
    (resolve(root, channels), resolve(root, prompts))
}

/// Where templates/ is: `[paths] templates`, relative to the main file's folder.
pub(super) fn templates_dir(settings: &FileConfig, root: &Path) -> PathBuf {
    resolve(
        root,
        settings.paths.templates.as_deref().unwrap_or("templates"),
    )
}

/// The teams a channel file may name; without `[[teams]]`, only the default one.
pub(super) fn known_teams(settings: &FileConfig) -> Vec<String> {
    let mut teams: Vec<String> = settings.teams.iter().map(|t| t.name.clone()).collect();
    if teams.is_empty() {
        teams.push(settings.queue.default_team.clone());
    }
    teams
}

/// `[llm]`, when set: what its provider needs, and a usable model and timeout.
pub(super) fn llm(llm: Option<&LlmConfig>) -> Vec<Fault> {
    let mut faults = Vec::new();
    let Some(llm) = llm else {
        return faults;
    };
    let base = llm.base_url.as_deref().map(str::trim).unwrap_or_default();
    if llm.provider == LlmProvider::OpenaiCompatible && base.is_empty() {
        faults.push(fault(
            "llm.base_url",
            "is required for openai_compatible: the server's URL, like http://localhost:8000/v1",
        ));
    }
    if !base.is_empty()
        && !reqwest::Url::parse(base).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        faults.push(fault(
            "llm.base_url",
            format!("`{base}` is not an http(s) URL"),
        ));
    }
    let needs_key = matches!(llm.provider, LlmProvider::Openai | LlmProvider::Anthropic);
    if needs_key && llm.api_key.as_ref().is_none_or(|k| k.is_empty()) {
        faults.push(fault(
            "llm.api_key",
            "is required for this provider: set it to \"${VAR}\" and export the key",
        ));
    }
    if llm.model.trim().is_empty() {
        faults.push(fault("llm.model", "is empty"));
    }
    if llm.timeout_secs == 0 {
        faults.push(fault("llm.timeout_secs", "must be above 0"));
    }
    faults
}

/// `[agents]`: the tool loop's bounds.
pub(super) fn agents(agents: &AgentsConfig) -> Vec<Fault> {
    [
        ("agents.max_tool_rounds", agents.max_tool_rounds == 0),
        (
            "agents.max_tool_calls_per_turn",
            agents.max_tool_calls_per_turn == 0,
        ),
        ("agents.history_messages", agents.history_messages == 0),
    ]
    .into_iter()
    .filter(|(_, zero)| *zero)
    .map(|(key, _)| fault(key, "must be above 0"))
    .collect()
}

/// `[merchant] timezone`; UTC stands in for an unknown one so the rest still loads.
pub(super) fn timezone(name: &str) -> (jiff::tz::TimeZone, Vec<Fault>) {
    match jiff::tz::TimeZone::get(name) {
        Ok(tz) => (tz, Vec::new()),
        Err(e) => (
            jiff::tz::TimeZone::UTC,
            vec![fault(
                "merchant.timezone",
                format!("`{name}` is not a known time zone (like Europe/Paris): {e}"),
            )],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(faults: &[Fault]) -> Vec<&str> {
        faults.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn the_default_settings_pass_every_check() {
        let settings = FileConfig::default();
        assert!(server(&settings.server).1.is_empty());
        assert!(store(&settings.store, Path::new("/srv")).1.is_empty());
        assert!(pipeline(&settings).is_empty());
        assert!(llm(settings.llm.as_ref()).is_empty());
        assert!(agents(&settings.agents).is_empty());
    }

    #[test]
    fn a_bad_bind_falls_back_and_every_zero_limit_is_named_in_order() {
        let mut settings = FileConfig::default().server;
        settings.bind = "localhost".into();
        settings.metrics_bind = Some("nowhere".into());
        settings.body_limit_bytes = 0;
        settings.write_timeout_secs = 0;
        settings.max_streams_per_key = 0;
        settings.max_header_bytes = 10;
        let (listen, faults) = server(&settings);
        assert_eq!(listen.bind, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(listen.metrics_bind, None);
        assert_eq!(
            keys(&faults),
            [
                "server.bind",
                "server.metrics_bind",
                "server.body_limit_bytes",
                "server.write_timeout_secs",
                "server.max_streams_per_key",
                "server.max_header_bytes",
            ]
        );
        assert_eq!(faults[5].1, "10 is not between 1024 and 262144");
    }

    #[test]
    fn a_relative_sqlite_path_is_under_the_root_and_an_unknown_scheme_is_refused() {
        let mut settings = FileConfig::default().store;
        settings.url = "sqlite://data/x.db".into();
        let (location, faults) = store(&settings, Path::new("/srv"));
        assert_eq!(
            location,
            StoreLocation::Sqlite(PathBuf::from("/srv/data/x.db"))
        );
        assert!(faults.is_empty());

        settings.url = "postgres://db".into();
        settings.prefix = "no spaces".into();
        settings.dedupe_ttl_secs = 60;
        let (location, faults) = store(&settings, Path::new("/srv"));
        assert_eq!(
            location,
            StoreLocation::Sqlite(PathBuf::from("/srv/data/concierge.db"))
        );
        assert_eq!(
            keys(&faults),
            ["store.url", "store.prefix", "store.dedupe_ttl_secs"]
        );
    }

    #[test]
    fn a_malformed_redis_url_is_kept_and_refused() {
        let mut settings = FileConfig::default().store;
        settings.url = "redis://bad host/0".into();
        let (location, faults) = store(&settings, Path::new("."));
        assert_eq!(location, StoreLocation::Redis("redis://bad host/0".into()));
        assert_eq!(keys(&faults), ["store.url"]);
    }

    #[test]
    fn paths_are_relative_to_the_root_unless_absolute() {
        let mut settings = FileConfig::default();
        settings.paths.prompts = Some("/etc/prompts".into());
        assert_eq!(
            paths(&settings, Path::new("/srv")),
            (
                PathBuf::from("/srv/channels"),
                PathBuf::from("/etc/prompts")
            )
        );
    }

    #[test]
    fn without_teams_only_the_default_team_is_known() {
        let settings = FileConfig::default();
        assert_eq!(
            known_teams(&settings),
            std::slice::from_ref(&settings.queue.default_team)
        );
    }

    #[test]
    fn zero_agent_bounds_are_each_named() {
        let mut settings = FileConfig::default().agents;
        settings.max_tool_rounds = 0;
        settings.history_messages = 0;
        assert_eq!(
            keys(&agents(&settings)),
            ["agents.max_tool_rounds", "agents.history_messages"]
        );
    }

    #[test]
    fn an_unknown_time_zone_stands_in_as_utc() {
        let (tz, faults) = timezone("Mars/Olympus");
        assert_eq!(tz, jiff::tz::TimeZone::UTC);
        assert_eq!(keys(&faults), ["merchant.timezone"]);
        assert!(timezone("Europe/Paris").1.is_empty());
    }
}
