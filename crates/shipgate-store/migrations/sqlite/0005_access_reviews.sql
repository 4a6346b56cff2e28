-- Access reviews: who granted each token and when it was last used, and the reviews themselves.
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
-- Emergency privileges need a second admin: such a token works only once confirmed.
ALTER TABLE api_tokens ADD COLUMN confirmed_by TEXT;
CREATE TABLE access_reviews (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    period TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    items TEXT NOT NULL,
    completed_at BIGINT NOT NULL
);
CREATE INDEX access_reviews_tenant ON access_reviews (tenant, completed_at);
