//! The agents' part of `concierge.toml`: `[llm]`, `[agents]` and the merchant's `[[tools]]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use concierge_domain::Secret;

/// The LLM provider the agents call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: LlmProvider,
    pub model: String,
    /// The API's base URL (`…/v1` for OpenAI and Anthropic, the server root for Ollama), with
    /// or without a trailing slash; required for `openai_compatible`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// One call's time limit, retries not included.
    #[serde(default = "default_llm_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// How many times a call refused with 429 or a 5xx is tried again.
    #[serde(default = "default_llm_retries")]
    pub max_retries: u32,
}

fn default_llm_timeout() -> u64 {
    30
}
fn default_max_tokens() -> u32 {
    1024
}
fn default_llm_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmProvider {
    Openai,
    Anthropic,
    Ollama,
    /// Any server speaking OpenAI's `/chat/completions` (vLLM, llama.cpp, LM Studio…).
    OpenaiCompatible,
}

impl LlmProvider {
    /// The name in `concierge.toml`, also the `provider` label of the LLM metrics.
    pub fn name(self) -> &'static str {
        match self {
            LlmProvider::Openai => "openai",
            LlmProvider::Anthropic => "anthropic",
            LlmProvider::Ollama => "ollama",
            LlmProvider::OpenaiCompatible => "openai_compatible",
        }
    }
}

/// How agents work a turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// How many of the latest messages an agent reads; older ones are folded into a summary.
    pub history_messages: usize,
    /// The most LLM calls one agent makes in a turn (each tool round is one).
    pub max_tool_rounds: usize,
    /// How deep `ask_agent` may nest (the front desk asking orders is depth 1).
    pub max_ask_depth: usize,
    /// The most tool calls the model may ask for in one customer turn, every agent and every
    /// kind of call together (merchant tools, `ask_agent` and the calls of the agent asked,
    /// `handoff_to_human`, `offer_choices`). A reply that would go past it is not run: the
    /// turn fails and the conversation goes to a person with the reason "tool call limit".
    pub max_tool_calls_per_turn: usize,
    /// The most tokens one customer turn may spend, all agents together; past it the
    /// conversation goes to a human.
    pub turn_token_budget: u64,
    /// The most tokens one conversation may spend over a rolling 24 hours, every turn and
    /// summary together, as the store recorded them (a restart does not reset it). Past it, a
    /// turn does not call the LLM: the conversation goes to a person with the reason
    /// "token budget", and the customer gets the holding reply. 0: no limit.
    pub conversation_token_budget: u64,
    /// Mask phone numbers, e-mail addresses and card numbers before text reaches the LLM.
    pub redact_pii: bool,
    /// The most LLM calls a minute, the agents' calls for customer turns together (tool rounds, agents asking agents and
    /// history summaries included); a
    /// turn that would start past it gets the holding reply (nothing lost, the thread stays
    /// with the bot). In memory, per gateway instance. 0: no limit.
    pub llm_calls_per_minute: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            history_messages: 20,
            max_tool_rounds: 6,
            max_ask_depth: 2,
            max_tool_calls_per_turn: 16,
            turn_token_budget: 60_000,
            conversation_token_budget: 200_000,
            redact_pii: false,
            llm_calls_per_minute: 600,
        }
    }
}

/// A form the agents may send (a WhatsApp Flow the business published): `[[flows]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// What the agents call it (`open_flow {flow}`).
    pub name: String,
    /// The flow's id in WhatsApp Manager.
    pub flow_id: String,
    /// What it asks, for the agents: on a chat app without forms, they ask it one question
    /// at a time.
    pub description: String,
    /// The label of the button that opens it (at most 20 characters).
    pub cta: String,
    /// Its first screen, for a flow without the merchant's endpoint; without it, the flow
    /// is opened through its endpoint (`data_exchange`).
    #[serde(default)]
    pub screen: Option<String>,
}

impl FlowConfig {
    /// What is wrong with it, by key.
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            problems.push((
                "name",
                "is 1 to 64 letters, digits, `_` and `-`".to_string(),
            ));
        }
        if self.flow_id.is_empty() || !self.flow_id.chars().all(|c| c.is_ascii_digit()) {
            problems.push((
                "flow_id",
                "is the flow's numeric id in WhatsApp Manager".to_string(),
            ));
        }
        if self.description.trim().is_empty() || self.description.chars().count() > 1000 {
            problems.push(("description", "is 1 to 1,000 characters".to_string()));
        }
        if self.cta.trim().is_empty() || self.cta.chars().count() > 20 {
            problems.push((
                "cta",
                "is 1 to 20 characters (WhatsApp's limit)".to_string(),
            ));
        }
        if self.screen.as_ref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(("screen", "is a screen id when given".to_string()));
        }
        problems
    }
}

/// What is wrong with `[[flows]]`, each by its key (`flows[0].cta`).
pub fn check_flows(flows: &[FlowConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, flow) in flows.iter().enumerate() {
        for (key, problem) in flow.check() {
            problems.push((format!("flows[{i}].{key}"), problem));
        }
        if !seen.insert(flow.name.as_str()) {
            problems.push((
                format!("flows[{i}].name"),
                format!("a second flow named `{}`", flow.name),
            ));
        }
    }
    problems
}

/// A merchant HTTP tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    pub name: String,
    /// What the tool does, for the LLM.
    pub description: String,
    /// The JSON Schema of the arguments (an object schema).
    #[serde(default)]
    pub parameters: Option<toml::Table>,
    #[serde(default = "default_method")]
    pub method: String,
    /// `{name}` placeholders take the argument of that name, URL-encoded (the dot too), in the
    /// path or the query only; a path argument may not be empty, `.` or `..`. Other arguments
    /// go in the query string (GET, DELETE) or a JSON body.
    pub url: String,
    /// Extra headers (credentials as `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_tool_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_tool_max_response")]
    pub max_response_bytes: usize,
    /// `"none"` (the default): a redirect is not followed, and the model is told the call
    /// failed; `"same-origin"`: up to a few redirects to the same scheme, host and port are
    /// followed. A redirect to another origin is never followed.
    #[serde(default = "default_follow_redirects")]
    pub follow_redirects: String,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_tool_timeout() -> u64 {
    10
}
fn default_tool_max_response() -> usize {
    64 * 1024
}
fn default_follow_redirects() -> String {
    "none".to_string()
}
