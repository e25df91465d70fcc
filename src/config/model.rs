//! The typed sections of `concierge.toml`. Unknown keys are refused; every key has a default
//! so a file with only `[server]` and `[store]` is a whole deployment.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub paths: PathsConfig,
    #[serde(default)]
    pub faq: FaqConfig,
    #[serde(default)]
    pub responder: ResponderConfig,
    #[serde(default)]
    pub orchestrator: OrchestratorConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The LLM provider; without it the gateway answers from the FAQ only.
    pub llm: Option<LlmConfig>,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub merchant: MerchantConfig,
    /// The merchant's HTTP tools the agents may call.
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
    #[serde(default)]
    pub queue: QueueConfig,
    /// The teams (skills) handoffs are queued for; one always-open team when none is given.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    /// The people who take threads over from the console.
    #[serde(default)]
    pub concierges: Vec<ConciergeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the one HTTP port listens on.
    pub bind: String,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a request may take, headers and body included, before it is answered 408.
    pub request_timeout_secs: u64,
    /// How long a client may take to send a request's head (request line and headers); a
    /// slower one (a slow-loris) is disconnected. Also how long an idle connection is kept.
    pub header_read_timeout_secs: u64,
    /// How long a client may take to send a request's body once its head is in; a slower
    /// one gets 408.
    pub body_read_timeout_secs: u64,
    /// The largest request head (request line and headers), in bytes (1024 to 262144); a
    /// larger one, or one with more than 100 headers, gets 431.
    pub max_header_bytes: usize,
    /// How long a graceful shutdown waits for the lanes and deliveries in flight.
    pub shutdown_grace_secs: u64,
    /// A customer's message dated (by the platform) longer ago than this is acknowledged and
    /// counted, not processed: a webhook replayed after its dedupe key expired is not
    /// answered again. 0: no limit.
    pub max_event_age_secs: u64,
    /// An address of its own for `/metrics` (`127.0.0.1:9090`; port 0 picks a free one, and
    /// the bound address is logged). When set, the public port never serves `/metrics`.
    pub metrics_bind: Option<String>,
    /// When set, `/metrics` (on whichever port serves it) requires
    /// `Authorization: Bearer <token>`. With neither this nor `metrics_bind`, `/metrics` is
    /// not served at all.
    pub metrics_token: Option<Secret>,
    /// The most connections open at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a write to a client may wait for the client to read: a client that stopped
    /// reading (its TCP window full) is disconnected, its live stream ended.
    pub write_timeout_secs: u64,
    /// The most live web chat streams of one visitor key on an instance; a new one past it
    /// closes the oldest.
    pub max_streams_per_key: usize,
    /// The most `/api/v1/events` streams of one concierge on an instance; a new one past it
    /// closes the oldest.
    pub max_streams_per_concierge: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            max_header_bytes: 16 * 1024,
            shutdown_grace_secs: 20,
            max_event_age_secs: 7 * 24 * 3600,
            metrics_bind: None,
            metrics_token: None,
            max_connections: 10_000,
            write_timeout_secs: 30,
            max_streams_per_key: 5,
            max_streams_per_concierge: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` (relative to the folder of concierge.toml) for the embedded store;
    /// `redis://HOST:PORT/DB` (or `rediss://` for TLS) for several instances sharing one Redis.
    pub url: String,
    /// SQLite `synchronous`: `full` makes every acknowledged webhook survive a power cut;
    /// `normal` survives a crash of the process (not of the machine) and is faster.
    pub sync: SyncMode,
    /// Redis: every key starts with `PREFIX:`, so several deployments can share a server.
    pub prefix: String,
    /// Redis: how many inbox partitions the conversations are spread over. Each partition is
    /// worked by one instance at a time; fixed for the life of a deployment's keys.
    pub partitions: u16,
    /// Redis: how long an instance's hold on its inbox partitions lasts without renewal. A
    /// dead instance's work is taken over after this long.
    pub takeover_ms: u64,
    /// Redis: how long a webhook's event id is remembered to drop platform retries (and its
    /// raw request kept for `concierge inbox export`).
    pub dedupe_ttl_secs: u64,
    /// SQLite: how many days each accepted webhook's raw request (credentials removed) is
    /// kept for `concierge inbox export` and `concierge replay`.
    pub raw_retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:data/concierge.db".to_string(),
            sync: SyncMode::Full,
            prefix: "concierge".to_string(),
            partitions: 16,
            takeover_ms: 10_000,
            dedupe_ttl_secs: 7 * 24 * 3600,
            raw_retention_days: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// The channel files' folder; `channels/` beside concierge.toml by default.
    pub channels: Option<String>,
    /// The prompts' folder; `prompts/` beside concierge.toml by default.
    pub prompts: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaqConfig {
    /// The FAQ file, inside the prompts folder.
    pub file: String,
    /// The confidence (0 to 1) a match needs before its answer is sent.
    pub threshold: f64,
}

impl Default for FaqConfig {
    fn default() -> Self {
        Self {
            file: "faq.md".to_string(),
            threshold: 0.5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderConfig {
    /// The message sent when nothing can answer, by language code; `en` is the fallback.
    pub holding: BTreeMap<String, String>,
    /// The holding message is not repeated to a customer within this many seconds.
    pub holding_repeat_secs: u64,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        let mut holding = BTreeMap::new();
        holding.insert(
            "en".to_string(),
            "Thank you for your message! I can't answer that one myself, so a member of our team will get back to you here as soon as possible.".to_string(),
        );
        holding.insert(
            "fr".to_string(),
            "Merci pour votre message ! Je ne peux pas y répondre moi-même : un membre de notre équipe vous répondra ici dès que possible.".to_string(),
        );
        Self {
            holding,
            holding_repeat_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// How many conversations are worked on at once (each one stays in order).
    pub max_parallel_lanes: usize,
    /// Start with processing paused: webhooks are stored and acknowledged, nothing is
    /// answered until the gateway is restarted without it (for maintenance and tests).
    pub paused: bool,
    /// Customer messages that arrive within this many milliseconds of the previous one are
    /// answered together, in one turn (customers often write in several short messages).
    /// 0 answers each message on its own.
    pub burst_window_ms: u64,
    /// The most turns one contact (one conversation) may start a minute, after
    /// `contact_turn_burst` back to back. A customer who writes faster loses nothing: every
    /// message is stored at once, and the waiting ones are answered together, in order, in
    /// the next turn the limit allows. Threads a person holds are not held back. Kept in
    /// memory by the instance working the conversation (a restart gives a fresh burst).
    /// 0: no limit.
    pub contact_turns_per_minute: u32,
    /// How many turns a contact may start back to back before `contact_turns_per_minute`
    /// applies (at least 1).
    pub contact_turn_burst: u32,
    /// The most new conversations (ones the agents have not answered yet) the agents take a
    /// minute, every channel together; past it a new customer gets the holding reply, their
    /// message is kept, and a later one within budget is answered. Each channel file has its
    /// own `new_conversations_per_minute` too. In memory, per gateway instance. 0: no limit.
    pub new_conversations_per_minute: u32,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            max_parallel_lanes: 256,
            paused: false,
            burst_window_ms: 1000,
            contact_turns_per_minute: 6,
            contact_turn_burst: 3,
            new_conversations_per_minute: 600,
        }
    }
}

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

/// The merchant, as the agents' prompts speak of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantConfig {
    pub name: String,
    /// An IANA time zone (`Europe/Paris`): the agents' idea of "now".
    pub timezone: String,
    /// Free text the agents may quote.
    pub business_hours: String,
}

impl Default for MerchantConfig {
    fn default() -> Self {
        Self {
            name: "our shop".to_string(),
            timezone: "UTC".to_string(),
            business_hours: String::new(),
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The first retry waits about this long; each next one twice as long, with jitter.
    pub initial_backoff_ms: u64,
    /// No wait between two attempts is longer than this.
    pub max_backoff_secs: u64,
    /// A reply still not accepted this long after its first attempt is marked failed.
    pub give_up_after_secs: u64,
    /// How many sends may be in flight at once (across conversations).
    pub max_in_flight: usize,
    /// One attempt's time limit.
    pub send_timeout_secs: u64,
    /// On a channel whose status reports name our replies (WhatsApp), a send whose answer
    /// was lost waits this long for the platform's status before it is sent again: a status
    /// in that time confirms it, and the customer gets it once.
    pub confirm_wait_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_secs: 300,
            give_up_after_secs: 24 * 3600,
            max_in_flight: 64,
            send_timeout_secs: 30,
            confirm_wait_ms: 10_000,
        }
    }
}

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
