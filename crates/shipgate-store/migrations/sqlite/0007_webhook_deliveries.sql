-- Every delivery from another tool (GitHub, GitLab, CDEvents...), accepted or not, with the
-- reason: redeliveries are recognised by (source, delivery_id).
CREATE TABLE webhook_deliveries (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    event TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT,
    records TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, received_at);
