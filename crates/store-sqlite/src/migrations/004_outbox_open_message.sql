CREATE INDEX outbox_open_message ON outbox (message_id) WHERE state IN ('pending', 'sending');
