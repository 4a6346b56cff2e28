-- Delegations of approval authority (who may decide for whom, when, in which group).
CREATE TABLE delegations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    from_subject TEXT NOT NULL,
    to_subject TEXT NOT NULL,
    group_name TEXT,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX delegations_tenant ON delegations (tenant, ends_at);
