//! The templates of the WhatsApp Business account, read from the Graph API
//! (`GET /{waba_id}/message_templates`), and how they differ from the catalogue.

use serde::Deserialize;

use super::Whatsapp;
use crate::templates::Catalogue;

/// The most pages read (100 templates each).
const MAX_PAGES: usize = 20;

/// A template as the account has it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountTemplate {
    pub name: String,
    pub language: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED…
    pub status: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub quality_score: Option<serde_json::Value>,
    #[serde(default)]
    pub components: Vec<serde_json::Value>,
}

impl AccountTemplate {
    fn body(&self) -> Option<&str> {
        self.components
            .iter()
            .find(|c| c["type"] == "BODY")
            .and_then(|c| c["text"].as_str())
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<AccountTemplate>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    next: Option<String>,
}

impl Whatsapp {
    /// Every template of the channel's Business account (`waba_id`). A next page is read
    /// only from the Graph API's own host.
    pub async fn account_templates(&self) -> Result<Vec<AccountTemplate>, String> {
        let waba = self
            .config
            .waba_id
            .as_deref()
            .ok_or("the channel has no `waba_id` (its WhatsApp Business account's id)")?;
        let base = self.config.api_base.trim_end_matches('/');
        let api = reqwest::Url::parse(base).map_err(|e| format!("api_base: {e}"))?;
        let mut url = format!(
            "{base}/{waba}/message_templates?fields=name,language,status,category,quality_score,components&limit=100"
        );
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .http
                .get(&url)
                .bearer_auth(self.config.access_token.expose())
                .send()
                .await
                .map_err(|e| format!("cannot reach the Graph API: {e}"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!(
                    "the Graph API answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
            let page: Page = serde_json::from_str(&body)
                .map_err(|e| format!("an answer that is not a template list: {e}"))?;
            all.extend(page.data);
            match page.paging.and_then(|p| p.next) {
                Some(next)
                    if reqwest::Url::parse(&next).is_ok_and(|n| {
                        n.host_str() == api.host_str() && n.scheme() == api.scheme()
                    }) =>
                {
                    url = next;
                }
                _ => break,
            }
        }
        Ok(all)
    }
}

/// One way the catalogue and the account differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the catalogue, not in the account: it cannot be sent.
    Missing { template: String },
    /// In the account, not approved (PENDING, REJECTED, PAUSED…).
    NotApproved { template: String, status: String },
    Category {
        template: String,
        ours: String,
        theirs: String,
    },
    /// The approved body is not the catalogue's: the agents and the console would read
    /// another text than the customer.
    Body {
        template: String,
        ours: String,
        theirs: String,
    },
    /// In the account only (sendable, but not by the gateway).
    NotInCatalogue { template: String, status: String },
}

impl Difference {
    /// Whether it stops the catalogue's template from being sent as written.
    pub fn blocks(&self) -> bool {
        !matches!(self, Difference::NotInCatalogue { .. })
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { template } => {
                write!(
                    f,
                    "{template}: not in the WhatsApp Business account: submit it for review"
                )
            }
            Difference::NotApproved { template, status } => {
                write!(f, "{template}: {status} in the account, not sendable")
            }
            Difference::Category {
                template,
                ours,
                theirs,
            } => write!(
                f,
                "{template}: category {ours} here, {theirs} in the account"
            ),
            Difference::Body {
                template,
                ours,
                theirs,
            } => write!(
                f,
                "{template}: the body differs\n  here:    {ours}\n  account: {theirs}"
            ),
            Difference::NotInCatalogue { template, status } => {
                write!(f, "{template}: {status} in the account, not in templates/")
            }
        }
    }
}

/// How the catalogue and the account's templates differ; empty when they agree.
pub fn differences(catalogue: &Catalogue, account: &[AccountTemplate]) -> Vec<Difference> {
    let mut found = Vec::new();
    for spec in catalogue.iter() {
        let template = spec.key();
        let Some(theirs) = account
            .iter()
            .find(|t| t.name == spec.name && t.language == spec.language)
        else {
            found.push(Difference::Missing { template });
            continue;
        };
        if theirs.status != "APPROVED" {
            found.push(Difference::NotApproved {
                template: template.clone(),
                status: theirs.status.clone(),
            });
        }
        if let Some(category) = &theirs.category
            && !category.eq_ignore_ascii_case(spec.category.name())
        {
            found.push(Difference::Category {
                template: template.clone(),
                ours: spec.category.name().to_string(),
                theirs: category.to_lowercase(),
            });
        }
        if let Some(body) = theirs.body()
            && body.trim() != spec.body.trim()
        {
            found.push(Difference::Body {
                template,
                ours: spec.body.trim().to_string(),
                theirs: body.trim().to_string(),
            });
        }
    }
    for theirs in account {
        if catalogue.get(&theirs.name, &theirs.language).is_none() {
            found.push(Difference::NotInCatalogue {
                template: format!("{}.{}", theirs.name, theirs.language),
                status: theirs.status.clone(),
            });
        }
    }
    found
}
