-- 0005: the public intake (docs/intake.md). Kept apart from cells: an intake
-- flood never touches a tenant's slots, its quota or the transparency log.
-- One row per tenant that opened its intake; next_seq numbers its requests
-- (taken in the inserting transaction, so they commit in order) and queued
-- counts them against the relay's cap. Answers are ordinary cells of the
-- tenant (deposited on the mission's round schedule).
CREATE TABLE intake_tenants (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
    open INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1,
    queued INTEGER NOT NULL DEFAULT 0,
    changed_at INTEGER NOT NULL
);

CREATE TABLE intake_requests (
    tenant_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    cell BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, digest)
);
CREATE INDEX intake_requests_received ON intake_requests (received_at);
