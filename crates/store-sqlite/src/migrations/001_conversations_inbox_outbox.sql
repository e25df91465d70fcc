CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    thread TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_message_at INTEGER NOT NULL,
    -- Where the conversation came from (a Telegram start parameter), when known.
    source TEXT
);

CREATE TABLE contacts (
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    display_name TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, contact_id)
) WITHOUT ROWID;

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    platform_id TEXT,
    direction TEXT NOT NULL,
    author TEXT NOT NULL,
    content TEXT NOT NULL,
    reply_to TEXT,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE UNIQUE INDEX messages_by_platform_id ON messages (channel_id, platform_id)
    WHERE platform_id IS NOT NULL;

CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event TEXT NOT NULL,
    message_id TEXT,
    received_at INTEGER NOT NULL,
    done_at INTEGER,
    -- Why an entry was set aside without a turn (a duplicate message, an unreadable row).
    note TEXT,
    UNIQUE (channel_id, event_id)
);
CREATE INDEX inbox_pending ON inbox (seq) WHERE done_at IS NULL;

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    first_attempt_at INTEGER,
    maybe_sent INTEGER NOT NULL DEFAULT 0,
    reengage INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX outbox_open ON outbox (conversation_id, id) WHERE state IN ('pending', 'sending');
-- Other ids of a contact (a WhatsApp phone number beside its business-scoped user id).
CREATE TABLE contact_aliases (
    channel_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (channel_id, alias)
) WITHOUT ROWID;

-- Delivery statuses that arrived before the send they describe was recorded.
CREATE TABLE early_statuses (
    channel_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, platform_id, status_rank)
) WITHOUT ROWID;

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('pending', 'sending');
