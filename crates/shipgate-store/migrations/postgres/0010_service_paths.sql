-- Monorepos: the path globs a service owns (JSON list); commits are attributed to the services
-- whose paths they touch.
ALTER TABLE services ADD COLUMN paths TEXT;
