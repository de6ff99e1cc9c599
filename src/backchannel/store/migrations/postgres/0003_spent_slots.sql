-- 0003: acknowledged slots stay, spent, until retention.
-- An ack used to delete the cell's row, which freed the slot: the relay would
-- then sign that the slot was empty, or log a second cell there, and either
-- reads as a proof of misbehaviour against an honest relay
-- (docs/spec/relay-log-v1.md §3.2). An ack now empties the row's cell and
-- keeps the row until expiry, lowering cell_count in its own transaction; so
-- deleting a spent row at expiry must not lower it again.

CREATE OR REPLACE FUNCTION bc_cells_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants t SET cell_count = t.cell_count - d.removed
    FROM (SELECT tenant_id, count(*) AS removed FROM bc_old
          WHERE octet_length(cell) > 0 GROUP BY tenant_id) d
    WHERE t.tenant_id = d.tenant_id;
    RETURN NULL;
END
$$;
