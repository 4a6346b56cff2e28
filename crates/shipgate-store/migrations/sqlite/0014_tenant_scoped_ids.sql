-- Record ids are scoped to their tenant: a client-supplied id never collides with, blocks or
-- reveals another tenant's record. SQLite cannot change a primary key in place: the two tables
-- are rebuilt with the same columns, in the same order, and their indexes recreated.
CREATE TABLE deployments_scoped (
    id TEXT NOT NULL,
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
    status TEXT NOT NULL,
    finished_at BIGINT,
    last_event_at BIGINT NOT NULL,
    target_status TEXT NOT NULL,
    approval TEXT,
    provenance TEXT,
    PRIMARY KEY (tenant, id)
);
INSERT INTO deployments_scoped (id, tenant, correlation_id, service, team, environment, environment_raw, env_tier, region, version, commit_sha, git_ref, repository, artifact_name, artifact_digest, deployer, deployer_type, kind, trigger_type, change_ref, labels, targets, corrects, schema_version, started_at, ingested_at, backfilled, initial_status, initial_finished_at, recorded_by, status, finished_at, last_event_at, target_status, approval, provenance) SELECT id, tenant, correlation_id, service, team, environment, environment_raw, env_tier, region, version, commit_sha, git_ref, repository, artifact_name, artifact_digest, deployer, deployer_type, kind, trigger_type, change_ref, labels, targets, corrects, schema_version, started_at, ingested_at, backfilled, initial_status, initial_finished_at, recorded_by, status, finished_at, last_event_at, target_status, approval, provenance FROM deployments;
DROP TABLE deployments;
ALTER TABLE deployments_scoped RENAME TO deployments;
CREATE INDEX deployments_tenant_time ON deployments (tenant, started_at DESC, id DESC);
CREATE INDEX deployments_service_time ON deployments (tenant, service, started_at DESC, id DESC);
CREATE INDEX deployments_env_time ON deployments (tenant, environment, started_at DESC, id DESC);
CREATE INDEX deployments_service_env_time ON deployments (tenant, service, environment, started_at DESC, id DESC);
CREATE INDEX deployments_succeeded ON deployments (tenant, service, environment, finished_at DESC, id DESC) WHERE status = 'succeeded';
CREATE INDEX deployments_commit ON deployments (tenant, commit_sha);
CREATE INDEX deployments_digest ON deployments (tenant, artifact_digest);
CREATE INDEX deployments_correlation ON deployments (tenant, correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX deployments_corrects ON deployments (tenant, corrects) WHERE corrects IS NOT NULL;
CREATE INDEX deployments_change_ref ON deployments (tenant, change_ref) WHERE change_ref IS NOT NULL;
CREATE INDEX deployments_id ON deployments (id);

CREATE TABLE deployment_events_scoped (
    id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    message TEXT,
    occurred_at BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL,
    late BOOLEAN NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
INSERT INTO deployment_events_scoped (id, deployment_id, tenant, target, status, message, occurred_at, ingested_at, late, recorded_by) SELECT id, deployment_id, tenant, target, status, message, occurred_at, ingested_at, late, recorded_by FROM deployment_events;
DROP TABLE deployment_events;
ALTER TABLE deployment_events_scoped RENAME TO deployment_events;
CREATE INDEX deployment_events_deployment ON deployment_events (tenant, deployment_id, ingested_at);
CREATE INDEX deployment_events_id ON deployment_events (id);
