-- shipgate foundation schema. Timestamps are microseconds since the Unix epoch (UTC).
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    correlation_id TEXT,
    service TEXT NOT NULL,
    team TEXT,
    environment TEXT NOT NULL,
    environment_raw TEXT NOT NULL,
    env_tier TEXT,
    region TEXT,
    version TEXT NOT NULL,
    commit_sha TEXT,
    git_ref TEXT,
    repository TEXT,
    artifact_name TEXT,
    artifact_digest TEXT,
    deployer TEXT,
    deployer_type TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    change_ref TEXT,
    labels TEXT NOT NULL,
    targets TEXT NOT NULL,
    corrects TEXT,
    schema_version BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL,
    backfilled BOOLEAN NOT NULL,
    initial_status TEXT NOT NULL,
    initial_finished_at BIGINT,
    recorded_by TEXT NOT NULL,
    -- Projection derived from the status events (not facts; checked by audit verify).
    status TEXT NOT NULL,
    finished_at BIGINT,
    last_event_at BIGINT NOT NULL,
    target_status TEXT NOT NULL
);
CREATE INDEX deployments_tenant_time ON deployments (tenant, started_at DESC, id DESC);
CREATE INDEX deployments_service_time ON deployments (tenant, service, started_at DESC, id DESC);
CREATE INDEX deployments_env_time ON deployments (tenant, environment, started_at DESC, id DESC);
CREATE INDEX deployments_service_env_time ON deployments (tenant, service, environment, started_at DESC, id DESC);
-- The latest succeeded deployment per service and environment (what runs where).
CREATE INDEX deployments_succeeded ON deployments (tenant, service, environment, finished_at DESC, id DESC) WHERE status = 'succeeded';
CREATE INDEX deployments_commit ON deployments (tenant, commit_sha);
CREATE INDEX deployments_digest ON deployments (tenant, artifact_digest);
CREATE INDEX deployments_correlation ON deployments (tenant, correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX deployments_corrects ON deployments (corrects) WHERE corrects IS NOT NULL;

CREATE TABLE deployment_events (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    message TEXT,
    occurred_at BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL,
    late BOOLEAN NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, ingested_at);

CREATE TABLE running (
    tenant TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    deployed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, service, environment)
);

CREATE TABLE services (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    team TEXT,
    declared BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE environments (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    tier TEXT,
    region TEXT,
    declared BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE releases (
    tenant TEXT NOT NULL,
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    commit_sha TEXT,
    artifact_digest TEXT,
    first_seen_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, service, version)
);

CREATE TABLE idempotency_keys (
    scoped_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    result_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    root BOOLEAN NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    format BIGINT NOT NULL,
    at BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
