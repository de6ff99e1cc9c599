-- 0002: the relay's transparency log (docs/spec/relay-log-v1.md) and its key.
-- One leaf per committed batch, appended in the batch's own transaction while
-- it holds the row lock on log_head, so every relay process sharing this
-- database appends to one log. Cells stored before this migration carry no
-- log position (NULL).

ALTER TABLE cells ADD COLUMN leaf_index bigint, ADD COLUMN batch_position integer;

-- The single row every appender locks: size, frontier (the tiles of
-- [0, size), largest first, 32 bytes each) and the head's timestamp; plus the
-- newest signed head written back by a later batch.
CREATE TABLE log_head (
    id          smallint NOT NULL PRIMARY KEY CHECK (id = 1),
    size        bigint   NOT NULL CHECK (size >= 0),
    frontier    bytea    NOT NULL,
    time        bigint   NOT NULL,
    signed_size bigint   NOT NULL DEFAULT -1,
    signed      bytea
);
INSERT INTO log_head (id, size, frontier, time) VALUES (1, 0, '\x'::bytea, 0);

-- Every complete subtree: (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE log_nodes (
    level smallint NOT NULL,
    idx   bigint   NOT NULL,
    hash  bytea    NOT NULL,
    CONSTRAINT log_nodes_pkey PRIMARY KEY (level, idx)
);

-- The leaves themselves (one per batch), kept forever. Their times never
-- decrease with the index, so expiry finds old batches by index range.
CREATE TABLE log_leaves (
    leaf_index bigint NOT NULL PRIMARY KEY,
    leaf       bytea  NOT NULL,
    time       bigint NOT NULL
);

-- Each batch's cell-entry hashes in commit order (32 bytes each, one row per
-- batch); deleted by expiry once the whole batch is past retention.
CREATE TABLE log_members (
    leaf_index bigint NOT NULL PRIMARY KEY,
    hashes     bytea  NOT NULL
);

-- The relay's signing key (two 32-byte seeds), shared by every relay process
-- on this database. Created once by the first process (INSERT ... ON CONFLICT
-- DO NOTHING), read by all.
CREATE TABLE relay_key (
    id            smallint NOT NULL PRIMARY KEY CHECK (id = 1),
    ed25519_seed  bytea    NOT NULL CHECK (length(ed25519_seed) = 32),
    mldsa65_seed  bytea    NOT NULL CHECK (length(mldsa65_seed) = 32),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- bc_deposit with the cell's log position. The caller holds the log_head row
-- lock and has set, for this transaction, backchannel.batch_leaf to the index
-- the batch's leaf will get and backchannel.batch_position to 0. A new cell
-- takes the next position; a retry returns the cell's original leaf index and
-- position.
-- Codes as bc_deposit: 0 created, 1 identical cell already there, 2 a
-- different cell occupies the slot, 3 quota used up, 4 unknown tenant.
CREATE FUNCTION bc_deposit_logged(
    p_tenant text, p_slot bytea, p_cell_id bytea, p_cell bytea, p_now bigint,
    OUT o_code smallint, OUT o_leaf bigint, OUT o_position integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_quota    bigint;
    v_count    bigint;
    v_existing bytea;
    v_leaf     bigint;
    v_pos      integer;
    p_leaf     bigint := current_setting('backchannel.batch_leaf')::bigint;
BEGIN
    SELECT t.quota_cells, t.cell_count INTO v_quota, v_count
    FROM tenants t WHERE t.tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        o_code := 4;
        RETURN;
    END IF;
    SELECT c.cell_id, c.leaf_index, c.batch_position INTO v_existing, v_leaf, v_pos
    FROM cells c WHERE c.tenant_id = p_tenant AND c.slot = p_slot;
    IF FOUND THEN
        IF v_existing = p_cell_id THEN
            o_code := 1; o_leaf := v_leaf; o_position := v_pos;
        ELSE
            o_code := 2;
        END IF;
        RETURN;
    END IF;
    IF v_count >= v_quota THEN
        o_code := 3;
        RETURN;
    END IF;
    v_pos := coalesce(nullif(current_setting('backchannel.batch_position', true), ''), '0')::integer;
    INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at, leaf_index, batch_position)
    VALUES (p_tenant, p_slot, p_cell_id, p_cell, p_now, p_leaf, v_pos)
    ON CONFLICT (tenant_id, slot) DO NOTHING;
    IF FOUND THEN
        PERFORM set_config('backchannel.batch_position', (v_pos + 1)::text, true);
        o_code := 0; o_leaf := p_leaf; o_position := v_pos;
        RETURN;
    END IF;
    -- Another transaction filled the slot between our check and our insert.
    SELECT c.cell_id, c.leaf_index, c.batch_position INTO v_existing, v_leaf, v_pos
    FROM cells c WHERE c.tenant_id = p_tenant AND c.slot = p_slot;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'slot changed during deposit' USING ERRCODE = 'serialization_failure';
    END IF;
    IF v_existing = p_cell_id THEN
        o_code := 1; o_leaf := v_leaf; o_position := v_pos;
    ELSE
        o_code := 2;
    END IF;
END
$$;
