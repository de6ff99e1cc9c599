-- 0004: acknowledged slots stay, spent, until retention.
-- An ack used to delete the cell's row, which freed the slot: the relay would
-- then sign that the slot was empty, or log a second cell there, and either
-- reads as a proof of misbehaviour against an honest relay
-- (docs/spec/relay-log-v1.md §3.2). An ack now empties the row's cell
-- (x'') and keeps the row until expiry; a spent row no longer counts towards
-- the tenant's quota.

DROP TRIGGER cells_count_delete;

CREATE TRIGGER cells_count_delete AFTER DELETE ON cells WHEN length(OLD.cell) > 0
BEGIN
    UPDATE tenants SET cell_count = cell_count - 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER cells_count_spend AFTER UPDATE OF cell ON cells
WHEN length(OLD.cell) > 0 AND length(NEW.cell) = 0
BEGIN
    UPDATE tenants SET cell_count = cell_count - 1 WHERE tenant_id = OLD.tenant_id;
END;
