-- Tags from tag pushes and releases.
CREATE TABLE tags (
    tenant TEXT NOT NULL,
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    sha TEXT,
    release_url TEXT,
    PRIMARY KEY (tenant, repository, name)
);
CREATE INDEX tags_sha ON tags (tenant, sha);
