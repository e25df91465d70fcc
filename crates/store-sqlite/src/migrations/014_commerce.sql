-- What a conversation holds of buying in the chat: its cart and the forms sent and not
-- answered yet, as one JSON document per conversation.
CREATE TABLE commerce (
    conversation_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
