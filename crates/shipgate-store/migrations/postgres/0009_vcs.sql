-- Source history from webhooks: commits (with the parent on the pushed branch) and pull requests.
CREATE TABLE commits (
    tenant TEXT NOT NULL,
    repository TEXT NOT NULL,
    sha TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, repository, sha)
);
CREATE INDEX commits_sha ON commits (tenant, sha);
CREATE TABLE pull_requests (
    tenant TEXT NOT NULL,
    repository TEXT NOT NULL,
    number BIGINT NOT NULL,
    head_sha TEXT,
    merge_commit_sha TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, repository, number)
);
CREATE INDEX pull_requests_merge ON pull_requests (tenant, merge_commit_sha);
CREATE INDEX pull_requests_head ON pull_requests (tenant, head_sha);
