-- The transactional outbox: one row per published event, written in the same transaction as the
-- change and its audit entry (seq = that entry's audit sequence number, one total order).
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    env_tier TEXT,
    event_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    body TEXT NOT NULL
);
-- How far each sink (nats, kafka) has delivered.
CREATE TABLE outbox_cursors (
    sink TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
