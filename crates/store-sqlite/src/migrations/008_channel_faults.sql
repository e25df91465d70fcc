-- Faults the platforms reported about a channel itself (WhatsApp's `value.errors`), for the
-- console's channel health; a redelivered report (same event id) is kept once.
CREATE TABLE channel_faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    code TEXT,
    title TEXT NOT NULL,
    detail TEXT,
    at INTEGER NOT NULL,
    UNIQUE (channel_id, event_id)
);
CREATE INDEX channel_faults_by_at ON channel_faults (at);
