-- Token scope: an expiry and an environment tier that writes are limited to.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN env_tier TEXT;
