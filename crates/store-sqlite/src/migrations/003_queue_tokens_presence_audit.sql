ALTER TABLE handoffs ADD COLUMN brief TEXT;
ALTER TABLE handoffs ADD COLUMN sla_due_at INTEGER;
ALTER TABLE handoffs ADD COLUMN breached_at INTEGER;
ALTER TABLE handoffs ADD COLUMN claimed_by TEXT;
ALTER TABLE handoffs ADD COLUMN claimed_at INTEGER;
ALTER TABLE handoffs ADD COLUMN first_response_at INTEGER;
ALTER TABLE handoffs ADD COLUMN offered_to TEXT;
ALTER TABLE handoffs ADD COLUMN offer_until INTEGER;
ALTER TABLE handoffs ADD COLUMN closed_at INTEGER;
ALTER TABLE handoffs ADD COLUMN outcome TEXT;
ALTER TABLE handoffs ADD COLUMN release_note TEXT;
-- Handoffs of threads no longer held by the queue or a person are over.
UPDATE handoffs SET closed_at = created_at, outcome = 'released'
 WHERE conversation_id NOT IN (
     SELECT id FROM conversations WHERE json_extract(thread, '$.state') IN ('queued', 'human'));
-- One open handoff per conversation: the newest.
UPDATE handoffs SET closed_at = created_at, outcome = 'superseded'
 WHERE closed_at IS NULL AND EXISTS (
     SELECT 1 FROM handoffs newer
      WHERE newer.conversation_id = handoffs.conversation_id AND newer.closed_at IS NULL
        AND (newer.created_at > handoffs.created_at
             OR (newer.created_at = handoffs.created_at AND newer.rowid > handoffs.rowid)));
CREATE INDEX handoffs_open ON handoffs (conversation_id) WHERE closed_at IS NULL;
CREATE INDEX handoffs_sla ON handoffs (sla_due_at)
    WHERE closed_at IS NULL AND first_response_at IS NULL AND breached_at IS NULL;
CREATE INDEX conversations_held ON conversations (json_extract(thread, '$.state'));

-- Only hashes: a token is shown once, when created.
CREATE TABLE concierge_tokens (
    hash TEXT PRIMARY KEY,
    concierge TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE presence (
    concierge TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    idle_since INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    conversation_id TEXT,
    detail TEXT NOT NULL
);
