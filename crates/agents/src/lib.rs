//! The agents: definitions read from `prompts/`, the LLM client behind a small trait, the
//! merchant's HTTP tools, and the runner that works a customer turn with them.

pub mod commerce;
mod config;
pub mod definition;
pub mod genai_client;
pub mod llm;
pub mod redact;
pub mod runner;
pub mod tools;

pub use self::commerce::PaymentButton;
pub use self::config::{AgentsConfig, FlowConfig, LlmConfig, LlmProvider, ToolConfig, check_flows};
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
