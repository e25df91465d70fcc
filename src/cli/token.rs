//! `concierge token create|revoke`: concierges' API tokens, and systems' (`--service`, with
//! their scopes), kept in the store as hashes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use concierge::config::Config;

use super::support::{load, with_store};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a concierge of concierge.toml and print it once (the store keeps
    /// only its hash).
    Create {
        /// The concierge's `name` in a [[concierges]] table.
        #[arg(required_unless_present = "service", conflicts_with = "service")]
        name: Option<String>,
        /// A token for a system instead (the order system, a CRM, a partner's agent), by the
        /// name it is known by: it acts as no concierge, only within its scopes.
        #[arg(long)]
        service: Option<String>,
        /// What a service's token may do: notify, events, consent, a2a (repeat the flag).
        #[arg(long = "scope", requires = "service")]
        scopes: Vec<String>,
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
    /// Revoke every token of a concierge (they are signed out at their next request), or of
    /// a service with `--service`.
    Revoke {
        #[arg(required_unless_present = "service", conflicts_with = "service")]
        name: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value = "concierge.toml")]
        config: PathBuf,
    },
}

/// Runs one of the token commands.
pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            service: Some(service),
            scopes,
            config,
            ..
        } => create_service(&config, &service, &scopes),
        TokenCommand::Create {
            name: Some(name),
            config,
            ..
        } => create(&config, &name),
        TokenCommand::Revoke {
            service: Some(service),
            config,
            ..
        } => revoke_service(&config, &service),
        TokenCommand::Revoke {
            name: Some(name),
            config,
            ..
        } => revoke(&config, &name),
        _ => Err(anyhow!("name a concierge, or a service with --service")),
    }
}

/// Issues a token for a system with its scopes and prints it on stdout, once.
fn create_service(path: &Path, service: &str, scopes: &[String]) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    with_store(&config, |store| async move {
        let token = concierge::handoff::access::issue_service(store.as_ref(), service, scopes)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        println!("{token}");
        eprintln!(
            "A token for the service {service} ({}); it is shown only this once (the store keeps its hash).",
            scopes.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Revokes every token of a service.
fn revoke_service(path: &Path, service: &str) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    with_store(&config, |store| async move {
        let n = store
            .revoke_service_tokens(service)
            .await
            .map_err(|e| anyhow!("cannot revoke: {e}"))?;
        println!("revoked {n} token(s) of the service {service}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Issues a token for a configured concierge and prints it on stdout, once.
fn create(path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let known = concierge_names(&config);
    if !known.contains(&name) {
        return Err(anyhow!(
            "{}: no concierge `{name}` in [[concierges]] (known: {})",
            path.display(),
            listed(&known)
        ));
    }
    with_store(&config, |store| async move {
        let token = concierge::handoff::access::issue(store.as_ref(), name)
            .await
            .map_err(|e| anyhow!("cannot keep the token: {e}"))?;
        println!("{token}");
        eprintln!("A token for {name}; it is shown only this once (the store keeps its hash).");
        Ok(ExitCode::SUCCESS)
    })
}

/// Revokes every token of a concierge. The name is not checked against concierge.toml, so
/// the tokens of one removed from it can still be revoked.
fn revoke(path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    with_store(&config, |store| async move {
        let n = concierge::handoff::access::revoke(store.as_ref(), name)
            .await
            .map_err(|e| anyhow!("cannot revoke: {e}"))?;
        println!("revoked {n} token(s) of {name}");
        Ok(ExitCode::SUCCESS)
    })
}

/// The `name`s of the [[concierges]] tables.
fn concierge_names(config: &Config) -> Vec<&str> {
    config
        .settings
        .concierges
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

/// Names for an error message, or `none`.
fn listed(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::listed;

    #[test]
    fn no_concierge_is_listed_as_none() {
        assert_eq!(listed(&[]), "none");
    }

    #[test]
    fn concierges_are_listed_in_order() {
        assert_eq!(listed(&["ana", "ben"]), "ana, ben");
    }
}
