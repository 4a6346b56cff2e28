-- GitHub deployment protection rules awaiting shipgate's answer: kept so that a restart
-- resumes waiting instead of leaving a run waiting silently.
CREATE TABLE protection_requests (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    answered_at BIGINT
);
