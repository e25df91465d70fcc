-- Internal notes: the agents' audit trail, for concierges; never sent to the customer.
CREATE TABLE notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX notes_by_conversation ON notes (conversation_id, seq);

CREATE TABLE handoffs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    priority TEXT,
    team TEXT,
    requested_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX handoffs_by_conversation ON handoffs (conversation_id, created_at);

-- Tokens spent, one row per turn that called an LLM.
CREATE TABLE llm_usage (
    inbox_seq INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX llm_usage_by_conversation ON llm_usage (conversation_id);

CREATE TABLE summaries (
    conversation_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    upto_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
