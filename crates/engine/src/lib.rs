//! The engine: what happens to a message between the store and the channels. The
//! orchestrator works the inbox in ordered lanes and asks the responder chain (FAQ, agents,
//! holding reply); the handoff desk queues threads for people and carries out their
//! actions; the delivery worker sends the outbox. It sees channels only through the
//! adapter trait and never names a platform.

pub mod delivery;
pub mod handoff;
pub mod notify;
pub mod orchestrator;
pub mod webhooks;
