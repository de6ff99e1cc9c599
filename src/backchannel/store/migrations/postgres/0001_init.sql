-- 0001: tenants, cells and the deposit function.
-- Applied inside one transaction (under an advisory lock, so several relay
-- processes starting together apply it once) by backchannel.store._migrations,
-- which also records the version in schema_version. Objects are created in the
-- session's current schema (search_path). Never edit an applied migration: add
-- the next numbered file instead.

CREATE TABLE tenants (
    tenant_id       text   NOT NULL PRIMARY KEY,
    credential_hash bytea  NOT NULL,
    quota_cells     bigint NOT NULL CHECK (quota_cells >= 0),
    -- Maintained by the statement triggers below, so quota checks never count rows.
    cell_count      bigint NOT NULL DEFAULT 0,
    created_at      bigint NOT NULL,
    -- The last line of defence for quotas, whatever process writes.
    CONSTRAINT tenants_quota CHECK (cell_count >= 0 AND cell_count <= quota_cells)
);

CREATE TABLE cells (
    tenant_id    text   NOT NULL REFERENCES tenants (tenant_id),
    slot         bytea  NOT NULL,
    cell_id      bytea  NOT NULL,
    cell         bytea  NOT NULL,
    deposited_at bigint NOT NULL,
    CONSTRAINT cells_pkey PRIMARY KEY (tenant_id, slot)
);

-- Cells are ciphertext: compression cannot shrink them, so do not try.
ALTER TABLE cells ALTER COLUMN cell SET STORAGE EXTERNAL;

CREATE INDEX cells_deposited_at ON cells (deposited_at);

CREATE FUNCTION bc_cells_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants t SET cell_count = t.cell_count + n.added
    FROM (SELECT tenant_id, count(*) AS added FROM bc_new GROUP BY tenant_id) n
    WHERE t.tenant_id = n.tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION bc_cells_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants t SET cell_count = t.cell_count - d.removed
    FROM (SELECT tenant_id, count(*) AS removed FROM bc_old GROUP BY tenant_id) d
    WHERE t.tenant_id = d.tenant_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER cells_count_insert AFTER INSERT ON cells
    REFERENCING NEW TABLE AS bc_new
    FOR EACH STATEMENT EXECUTE FUNCTION bc_cells_inserted();

CREATE TRIGGER cells_count_delete AFTER DELETE ON cells
    REFERENCING OLD TABLE AS bc_old
    FOR EACH STATEMENT EXECUTE FUNCTION bc_cells_deleted();

-- One deposit, decided entirely in SQL so that any number of relay processes
-- can share the database. Returns 0 created, 1 identical cell already there,
-- 2 a different cell occupies the slot, 3 quota used up, 4 unknown tenant.
-- The tenant row lock serialises deposits of one tenant across processes, so
-- the quota check cannot race; callers lock tenants in ascending order.
CREATE FUNCTION bc_deposit(
    p_tenant text, p_slot bytea, p_cell_id bytea, p_cell bytea, p_now bigint
) RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    v_quota    bigint;
    v_count    bigint;
    v_existing bytea;
BEGIN
    SELECT quota_cells, cell_count INTO v_quota, v_count
    FROM tenants WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 4;
    END IF;
    SELECT cell_id INTO v_existing FROM cells WHERE tenant_id = p_tenant AND slot = p_slot;
    IF FOUND THEN
        RETURN CASE WHEN v_existing = p_cell_id THEN 1 ELSE 2 END;
    END IF;
    IF v_count >= v_quota THEN
        RETURN 3;
    END IF;
    INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)
    VALUES (p_tenant, p_slot, p_cell_id, p_cell, p_now)
    ON CONFLICT (tenant_id, slot) DO NOTHING;
    IF FOUND THEN
        RETURN 0;
    END IF;
    -- Another transaction filled the slot between our check and our insert.
    SELECT cell_id INTO v_existing FROM cells WHERE tenant_id = p_tenant AND slot = p_slot;
    IF NOT FOUND THEN
        -- ...and another emptied it again: let the caller retry the transaction.
        RAISE EXCEPTION 'slot changed during deposit' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN CASE WHEN v_existing = p_cell_id THEN 1 ELSE 2 END;
END
$$;
