-- The webhook outbox: one delivery per webhook and event, pending until the receiver took it
-- or the gateway gave up; a lease hands it to one sender at a time.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    leased_until INTEGER,
    last_error TEXT,
    last_status INTEGER,
    done_at INTEGER,
    UNIQUE (webhook, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (state, done_at);
