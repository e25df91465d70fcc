//! The orchestrator's part of `concierge.toml`: `[orchestrator]`.

use serde::Deserialize;

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
