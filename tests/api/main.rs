//! End-to-end tests: the app started on port 0 with a real SQLite file, driven over HTTP.

mod agents;
mod bench;
mod bluebubbles;
mod chat;
mod check;
mod console;
mod delivery;
mod fake_api;
mod fake_llm;
mod handoff;
mod helpers;
mod ingest;
mod kill;
mod lanes;
mod metrics;
mod multi_instance;
mod redis_server;
mod restart;
mod scale;
mod store_redis;
mod store_sqlite;
mod telegram;
mod twilio;
mod whatsapp;
