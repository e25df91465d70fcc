//! Concierge: a gateway for conversational commerce. Customers write from a chat app; the
//! gateway stores each message durably, answers it (the FAQ tier, then LLM agents; human
//! concierges later), and delivers each reply once, in order, per conversation.
//!
//! # Layout
//!
//! The layers are crates of their own (`crates/`, mapped in ARCHITECTURE.md); this crate is the
//! composition root: it reads the configuration, wires the layers together and runs them. It
//! re-exports each layer under the name the module had before the split, so a test or a tool
//! names one crate.
//!
//! - [`domain`] (concierge-domain): ids, messages, content, inbound events, thread state. Pure data, no I/O.
//! - [`config`] (here): reads `concierge.toml`, `channels/*.toml` and `prompts/`, interpolates
//!   `${VAR}`, applies `CONCIERGE__SECTION__KEY` overrides, and reports every problem with its
//!   file, line and key.
//! - [`channels`] (concierge-channels): the adapter trait (verify, parse, send, capabilities) and one folder per
//!   platform: `webchat`, `whatsapp` (Meta's Cloud API), `twilio` (WhatsApp through Twilio),
//!   `bluebubbles` (iMessage through a BlueBubbles server), `telegram` (the Bot API, webhook
//!   or polling).
//! - [`store`] (concierge-store, -store-sqlite, -store-redis): the store traits, the SQLite backend (one machine)
//!   and the Redis backend (several instances: partitioned inbox streams, fenced leases, Lua).
//! - [`agents`] (concierge-agents): agent definitions from `prompts/`, the LLM client trait (on `genai`), the
//!   merchant's HTTP tools, PII masking, and the runner that works a turn (tool loop,
//!   `ask_agent`, `offer_choices`, `handoff_to_human`, limits, internal notes).
//! - [`orchestrator`] (concierge-engine; the FAQ is concierge-faq): ordered lanes per conversation fed from the inbox (bursts of messages
//!   answered in one turn, a per-contact turn rate limit), and the responder chain (FAQ,
//!   agents within a per-conversation token budget and the budgets of new conversations and
//!   LLM calls a minute, the holding message).
//! - [`handoff`] (concierge-engine): the human side: teams and hours, the queue's policy (team, priority, SLA,
//!   expected wait, offers), the handoff brief, concierges' actions (claim, release,
//!   resolve, transfer, reply, note), tokens and team scoping, live console events.
//! - [`delivery`] (concierge-engine): the outbox worker: send, retry with backoff, give up with a reason.
//! - [`http`] (concierge-http): the router: webhooks, health, metrics, the web chat page and its stream; the
//!   accept loop and the limits that refuse a request before its handler; the web chat's
//!   budget of new visitors per client address.
//! - [`app`] (here): builds the parts from the configuration and runs them until shutdown.
//! - [`replay`] (here): `inbox export` and `replay`: kept raw webhooks out as JSON lines, and into
//!   another gateway, re-signed for its secrets.
//! - [`telemetry`] (concierge-telemetry): logs and the Prometheus metrics.
//! - `fuzzing` (hidden, the `fuzzing` feature): the fuzz targets, one function per target
//!   (see FUZZING.md).
//!
//! The developer's tools (bench, chaos run, demo shop) are `cargo dev …` (crates/dev), and
//! what tests share (fakes, the store suite) is crates/testkit: neither is in this crate.

pub mod app;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod replay;

pub use concierge_agents as agents;
pub use concierge_channels as channels;
pub use concierge_domain as domain;
pub use concierge_engine::{delivery, handoff, notify, webhooks};
pub use concierge_http as http;
pub use concierge_media as media;
pub use concierge_telemetry as telemetry;

/// The orchestrator, with the FAQ tier it asks first.
pub mod orchestrator {
    pub use concierge_engine::orchestrator::*;
    pub use concierge_faq as faq;
}

/// The store's traits and its two backends.
pub mod store {
    pub use concierge_store::*;
    pub use concierge_store_redis as redis;
    pub use concierge_store_sqlite as sqlite;
}
