-- 0004: the public intake (docs/intake.md). Kept apart from cells: an intake
-- flood never touches a tenant's slots, its quota or the transparency log.
-- One row per tenant that opened its intake; next_seq numbers its requests
-- (taken in the inserting transaction, so they commit in order) and queued
-- counts them against the relay's cap. Answers are ordinary cells of the
-- tenant (deposited on the mission's round schedule).
CREATE TABLE intake_tenants (
    tenant_id text PRIMARY KEY REFERENCES tenants (tenant_id),
    open boolean NOT NULL,
    next_seq bigint NOT NULL DEFAULT 1,
    queued bigint NOT NULL DEFAULT 0,
    changed_at bigint NOT NULL
);

CREATE TABLE intake_requests (
    tenant_id text NOT NULL,
    seq bigint NOT NULL,
    digest bytea NOT NULL,
    cell bytea NOT NULL,
    received_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, digest)
);
CREATE INDEX intake_requests_received ON intake_requests (received_at);
