-- Record ids are scoped to their tenant: a client-supplied id never collides with, blocks or
-- reveals another tenant's record.
ALTER TABLE deployments DROP CONSTRAINT deployments_pkey;
ALTER TABLE deployments ADD PRIMARY KEY (tenant, id);
CREATE INDEX deployments_id ON deployments (id);
DROP INDEX deployments_corrects;
CREATE INDEX deployments_corrects ON deployments (tenant, corrects) WHERE corrects IS NOT NULL;
ALTER TABLE deployment_events DROP CONSTRAINT deployment_events_pkey;
ALTER TABLE deployment_events ADD PRIMARY KEY (tenant, id);
CREATE INDEX deployment_events_id ON deployment_events (id);
DROP INDEX deployment_events_deployment;
CREATE INDEX deployment_events_deployment ON deployment_events (tenant, deployment_id, ingested_at);
