-- 0001: tenants and cells.
-- Applied inside one transaction by backchannel.store._migrations, which also
-- records the version in schema_version. Never edit an applied migration: add
-- the next numbered file instead.

CREATE TABLE tenants (
    tenant_id       TEXT    NOT NULL PRIMARY KEY,
    credential_hash BLOB    NOT NULL,
    quota_cells     INTEGER NOT NULL CHECK (quota_cells >= 0),
    -- Maintained by the triggers below, so quota checks never count rows.
    cell_count      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    CONSTRAINT tenants_quota CHECK (cell_count >= 0 AND cell_count <= quota_cells)
);

-- A rowid table, not WITHOUT ROWID: rows are ~4 KiB, far above the size for
-- which WITHOUT ROWID pays off.
CREATE TABLE cells (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (tenant_id),
    slot         BLOB    NOT NULL,
    cell_id      BLOB    NOT NULL,
    cell         BLOB    NOT NULL,
    deposited_at INTEGER NOT NULL,
    CONSTRAINT cells_tenant_slot UNIQUE (tenant_id, slot)
);

CREATE INDEX cells_deposited_at ON cells (deposited_at);

CREATE TRIGGER cells_count_insert AFTER INSERT ON cells
BEGIN
    UPDATE tenants SET cell_count = cell_count + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER cells_count_delete AFTER DELETE ON cells
BEGIN
    UPDATE tenants SET cell_count = cell_count - 1 WHERE tenant_id = OLD.tenant_id;
END;
