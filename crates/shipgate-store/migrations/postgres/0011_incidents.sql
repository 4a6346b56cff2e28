-- Incidents from monitoring and paging tools, by their own id.
CREATE TABLE incidents (
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    status TEXT NOT NULL,
    service TEXT,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, source, external_id)
);
CREATE INDEX incidents_recent ON incidents (tenant, started_at);
