-- Notifications: messages the merchant's systems sent first, one per (service-scoped)
-- idempotency key, each pointing at the outbound message it queued.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    template TEXT,
    batch_id TEXT,
    batch_index INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX notifications_by_conversation ON notifications (conversation_id, created_at);
