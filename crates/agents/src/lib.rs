//! The agents: definitions read from `prompts/`, the LLM client behind a small trait, the
//! merchant's HTTP tools, and the runner that works a customer turn with them.

mod config;
pub mod definition;
pub mod genai_client;
pub mod llm;
pub mod redact;
pub mod runner;
pub mod tools;

pub use self::config::{AgentsConfig, LlmConfig, LlmProvider, ToolConfig};
pub use self::definition::{AgentDef, AgentSet, ChannelContext, CustomerContext, PromptContext};
pub use self::llm::{
    LlmClient, LlmError, LlmMedia, LlmMessage, LlmReply, LlmRequest, Retrying, UserPart,
};
pub use self::redact::Redactor;
pub use self::runner::{
    AgentFailure, AgentReply, AgentRuntime, BriefDraft, HandoffRequest, Limits, TurnInput,
    TurnResult,
};
pub use self::tools::{Identity, MerchantTools};
