//! Turns inbox events into decisions: one ordered lane per conversation, lanes in parallel,
//! each event completed in one store transaction with the replies it produced. It knows no
//! platform and no HTTP; it sees the store and the responder chain.

mod agent_step;
pub mod budgets;
mod cart;
mod config;
mod consent;
mod lanes;
mod media;
mod media_out;
mod responder;
mod throttle;
mod triggers;

pub use self::agent_step::{AgentResponder, AgentSettings};
pub use self::budgets::{BudgetSettings, Budgets};
pub use self::cart::{CartResponder, CommerceConfig};
pub use self::config::OrchestratorConfig;
pub use self::consent::{ConsentConfig, ConsentResponder};
pub use self::lanes::{ChannelHints, ChannelProfile, NoHints, Orchestrator};
pub use self::media::MediaIntake;
pub use self::media_out::MediaSender;
pub use self::responder::{
    DecidedBy, Decision, FaqResponder, HoldingResponder, Responder, ResponderChain, ResponderError,
    Turn,
};
pub use self::throttle::ContactRate;
pub use self::triggers::{ASKED_FOR_A_PERSON, TriggerResponder};
