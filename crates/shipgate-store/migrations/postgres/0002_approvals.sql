-- Approvals and gates: people, approver groups, versioned policies, change requests with their
-- decisions and evidence, the gate-call log, and root-cause reviews.
CREATE TABLE people (
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT,
    email TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, subject)
);

CREATE TABLE approver_groups (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE policies (
    tenant TEXT NOT NULL,
    version BIGINT NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL,
    pushed_by TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, version)
);

CREATE TABLE changes (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    number BIGINT NOT NULL,
    change_key TEXT NOT NULL,
    change_type TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    team TEXT,
    revision BIGINT NOT NULL,
    rework_count BIGINT NOT NULL,
    policy_hash TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decided_at BIGINT,
    review_due_at BIGINT,
    reviewed_at BIGINT,
    review_escalated_at BIGINT,
    escalated_at BIGINT,
    UNIQUE (tenant, change_key)
);
CREATE INDEX changes_status ON changes (tenant, status, created_at);
CREATE INDEX changes_review_due ON changes (review_due_at) WHERE reviewed_at IS NULL AND review_due_at IS NOT NULL;
CREATE INDEX changes_team_type ON changes (tenant, team, change_type, created_at);

CREATE TABLE change_decisions (
    id TEXT PRIMARY KEY,
    change_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    revision BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    on_behalf_of TEXT,
    group_name TEXT,
    comment TEXT,
    self_approval BOOLEAN NOT NULL,
    policy_hash TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX change_decisions_change ON change_decisions (change_id, at);

CREATE TABLE change_evidence (
    id TEXT PRIMARY KEY,
    change_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    digest TEXT NOT NULL,
    uri TEXT,
    metadata TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE INDEX change_evidence_change ON change_evidence (change_id, added_at);

CREATE TABLE gate_calls (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    change_id TEXT,
    change_key TEXT NOT NULL,
    environment TEXT NOT NULL,
    digest TEXT,
    deployer TEXT,
    caller TEXT NOT NULL,
    state TEXT NOT NULL,
    reasons TEXT NOT NULL,
    policy_hash TEXT,
    waited_ms BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX gate_calls_change ON gate_calls (tenant, change_key, at);

CREATE TABLE root_cause_reviews (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    team TEXT NOT NULL,
    month TEXT NOT NULL,
    changes TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    UNIQUE (tenant, team, month)
);

-- Whether a deployment had a valid approval when it was recorded (a fact at ingest time).
ALTER TABLE deployments ADD COLUMN approval TEXT;
CREATE INDEX deployments_change_ref ON deployments (tenant, change_ref) WHERE change_ref IS NOT NULL;
