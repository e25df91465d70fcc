-- API tokens of systems (the merchant's order system, a CRM, a partner's agent), not people:
-- kept as hashes, each with the scopes it may use (space-separated), revoked by service.
CREATE TABLE service_tokens (
    hash TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX service_tokens_by_service ON service_tokens (service);
