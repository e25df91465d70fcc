//! `concierge check`: read and cross-check every configuration file, and sum up what was read.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use concierge::config::Config;

/// Prints the summary of a sound configuration; the error lists every problem and their count.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)
        .map_err(|problems| anyhow!("{problems}\n{} problem(s) found", problems.0.len()))?;
    println!("{}", summary(path, &config));
    Ok(ExitCode::SUCCESS)
}

/// The line `check` prints for a configuration that has no problem.
fn summary(path: &Path, config: &Config) -> String {
    let agents: Vec<&str> = config
        .agents
        .as_ref()
        .map(|a| a.names().collect())
        .unwrap_or_default();
    format!(
        "{}: ok ({} channel(s), {} FAQ entries, {} agent(s){}, {} tool(s), {}, {} team(s), {} concierge(s), {} template(s))",
        path.display(),
        config.channels.len(),
        config.faq.entries().len(),
        agents.len(),
        if agents.is_empty() {
            String::new()
        } else {
            format!(": {}", agents.join(", "))
        },
        config.settings.tools.len(),
        match &config.settings.llm {
            Some(llm) => format!("LLM {:?} {}", llm.provider, llm.model),
            None => "no [llm]: FAQ only".to_string(),
        },
        config.settings.teams.len().max(1),
        config.settings.concierges.len(),
        config.catalogue.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deployment with one web chat channel, read with no environment.
    fn config_in(dir: &Path, main: &str) -> Config {
        std::fs::create_dir_all(dir.join("channels")).expect("channels dir");
        std::fs::write(
            dir.join("channels/web.toml"),
            "kind = \"webchat\"\ntitle = \"Shop\"\n",
        )
        .expect("channel file");
        std::fs::write(dir.join("concierge.toml"), main).expect("concierge.toml");
        Config::load_with(&dir.join("concierge.toml"), &|_| None, &[]).expect("a sound config")
    }

    #[test]
    fn the_summary_counts_what_was_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_in(dir.path(), "[store]\nurl = \"sqlite:data/test.db\"\n");
        assert_eq!(
            summary(Path::new("concierge.toml"), &config),
            "concierge.toml: ok (1 channel(s), 0 FAQ entries, 0 agent(s), 0 tool(s), \
             no [llm]: FAQ only, 1 team(s), 0 concierge(s), 0 template(s))"
        );
    }
}
