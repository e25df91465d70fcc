CREATE TABLE raw_webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    query TEXT,
    -- JSON: [[name, value], ...] in the order received.
    headers TEXT NOT NULL,
    body BLOB NOT NULL
);
ALTER TABLE inbox ADD COLUMN raw_id INTEGER;
