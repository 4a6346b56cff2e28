-- Artifact immutability: what builds published, and each deployment's check against it.
ALTER TABLE deployments ADD COLUMN provenance TEXT;
CREATE TABLE artifacts (
    tenant TEXT NOT NULL,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    source TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, digest, name)
);
CREATE INDEX artifacts_name ON artifacts (tenant, name);
