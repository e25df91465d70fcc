//! Who may use the console API: concierges from `concierge.toml`, tokens kept only as
//! hashes, and team scoping.

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ConciergeConfig, ConciergeRole};

/// The prefix of every concierge token, so one found in a log or a paste is recognisable.
pub const TOKEN_PREFIX: &str = "cct_";

/// A new random token (256 bits) and the hash to store.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token. Tokens are 256 random bits, so a plain SHA-256 cannot be
/// reversed by guessing; a slow password hash would only slow every request.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Creates a token for a concierge, keeps its hash, and returns the token (shown once).
pub async fn issue(
    store: &dyn concierge_store::Queue,
    concierge: &str,
) -> Result<String, concierge_store::StoreError> {
    let (token, hash) = new_token();
    store.add_token(&hash, concierge).await?;
    Ok(token)
}

/// Revokes every token of a concierge and lists them offline at once; returns how many
/// tokens there were. Their open event streams, on every instance, notice within a second
/// and end (see `/api/v1/events`).
pub async fn revoke(
    store: &dyn concierge_store::Queue,
    concierge: &str,
) -> Result<usize, concierge_store::StoreError> {
    let revoked = store.revoke_tokens(concierge).await?;
    store.clear_presence(concierge).await?;
    Ok(revoked)
}

/// What a system's token may do: each scope opens one part of the API to it.
pub const SERVICE_SCOPES: [&str; 4] = [
    // Write first: notifications to customers.
    "notify",  // Hear what happens: conversation events, pushed or posted.
    "events",  // Record customers' consent.
    "consent", // Ask our agents over A2A.
    "a2a",
];

/// Why a service token cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    #[error("`{0}` is not a service name (1 to 64 of a-z, 0-9, - and _)")]
    Name(String),
    #[error("`{scope}` is not a scope ({}){}", SERVICE_SCOPES.join(", "), hint.as_ref().map(|h| format!("; did you mean `{h}`?")).unwrap_or_default())]
    Scope { scope: String, hint: Option<String> },
    #[error("a service token needs at least one --scope ({})", SERVICE_SCOPES.join(", "))]
    NoScope,
    #[error(transparent)]
    Store(#[from] concierge_store::StoreError),
}

/// Creates a token for a system (not a person) with `scopes`, keeps its hash, and returns
/// the token (shown once).
pub async fn issue_service(
    store: &dyn concierge_store::Queue,
    service: &str,
    scopes: &[String],
) -> Result<String, ServiceTokenError> {
    let named = (1..=64).contains(&service.len())
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !named {
        return Err(ServiceTokenError::Name(service.to_string()));
    }
    if scopes.is_empty() {
        return Err(ServiceTokenError::NoScope);
    }
    let mut kept: Vec<String> = Vec::new();
    for scope in scopes {
        if !SERVICE_SCOPES.contains(&scope.as_str()) {
            return Err(ServiceTokenError::Scope {
                scope: scope.clone(),
                hint: concierge_domain::suggest::closest(scope, SERVICE_SCOPES.iter().copied())
                    .map(str::to_string),
            });
        }
        if !kept.contains(scope) {
            kept.push(scope.clone());
        }
    }
    let (token, hash) = new_token();
    store.add_service_token(&hash, service, &kept).await?;
    Ok(token)
}

/// The caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
    /// The teams whose threads they see; for an admin with none listed, every team.
    pub teams: Vec<String>,
    pub capacity: usize,
}

impl Caller {
    pub fn from_config(config: &ConciergeConfig) -> Self {
        Self {
            name: config.name.clone(),
            admin: config.role == ConciergeRole::Admin,
            teams: config.teams.clone(),
            capacity: config.capacity,
        }
    }

    /// Whether they may see and act on a thread of `team`: the team of its latest handoff,
    /// open or closed, else its channel's (`Desk::thread_team`). An admin's `teams`, when
    /// given, narrow what they see.
    pub fn may_see(&self, team: &str) -> bool {
        (self.admin && self.teams.is_empty()) || self.teams.iter().any(|t| t == team)
    }

    pub fn in_team(&self, team: &str) -> bool {
        self.teams.iter().any(|t| t == team) || (self.admin && self.teams.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 64);
        assert_eq!(hash_token(&a), hash_a);
        assert!(!hash_a.contains(&a[4..]));
    }

    #[test]
    fn team_scoping() {
        let ana = Caller {
            name: "ana".into(),
            admin: false,
            teams: vec!["support".into()],
            capacity: 3,
        };
        assert!(ana.may_see("support"));
        assert!(!ana.may_see("billing"));
        let boss = Caller {
            admin: true,
            teams: vec![],
            ..ana.clone()
        };
        assert!(boss.may_see("billing"));
        let narrowed = Caller {
            admin: true,
            teams: vec!["support".into()],
            ..ana.clone()
        };
        assert!(!narrowed.may_see("billing"));
    }
}
