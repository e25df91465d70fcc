-- The consent ledger: every decision of a customer on a purpose of messages (utility,
-- marketing) on one channel, with its source and proof; it only grows. A key (the inbox
-- event of a STOP, a caller's idempotency key) is recorded once.
CREATE TABLE consent_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted INTEGER NOT NULL,
    source TEXT NOT NULL,
    proof TEXT,
    at INTEGER NOT NULL,
    key TEXT UNIQUE
);
CREATE INDEX consent_ledger_by_contact ON consent_ledger (channel_id, contact_id, seq);
