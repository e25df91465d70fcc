-- Notification batches: the batch, its cursor and counts, and its recipients in order.
CREATE TABLE notification_batches (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    template TEXT,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0,
    queued INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    reasons TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX notification_batches_running ON notification_batches (state, created_at);
CREATE TABLE notification_batch_recipients (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
