-- 0003: one row per leaf. A batch's append used to write a leaf row, a
-- member row and about two node rows, each in its own table and so on its
-- own page; it now writes one row of log_leaves (plus the head), so a commit
-- touches one log page beside log_head. The hashes and formats are unchanged.
--
-- log_leaves (leaf_index, leaf, time, nodes, members):
--   nodes   the complete subtrees this leaf completes, level 0 first, 32 bytes
--           each: node (level, idx) is bytes [32 level, 32 level + 32) of the
--           row of leaf ((idx + 1) << level) - 1; kept forever;
--   members the batch's cell-entry hashes in commit order (32 bytes each);
--           set to NULL by expiry once the whole batch is past retention.
-- log_head.members_from: the first leaf whose members are still kept (members
-- are forgotten oldest first, so every leaf below it has none).

CREATE TABLE log_leaves_new (
    leaf_index INTEGER NOT NULL PRIMARY KEY,
    leaf       BLOB    NOT NULL,
    time       INTEGER NOT NULL,
    nodes      BLOB    NOT NULL,
    members    BLOB
);

-- Each leaf's nodes, concatenated level by level: node (k, i >> k) belongs to
-- leaf i when the k low bits of i are all ones.
INSERT INTO log_leaves_new (leaf_index, leaf, time, nodes, members)
WITH RECURSIVE walk (leaf_index, level, nodes) AS (
    SELECT idx, 0, hash FROM log_nodes WHERE level = 0
    UNION ALL
    SELECT w.leaf_index, w.level + 1, CAST(w.nodes || n.hash AS BLOB)
    FROM walk w
    JOIN log_nodes n ON n.level = w.level + 1 AND n.idx = w.leaf_index >> (w.level + 1)
    WHERE (w.leaf_index >> w.level) & 1 = 1
)
SELECT l.leaf_index, l.leaf, l.time, w.nodes, m.hashes
FROM log_leaves l
JOIN walk w ON w.leaf_index = l.leaf_index AND (w.leaf_index >> w.level) & 1 = 0
LEFT JOIN log_members m ON m.leaf_index = l.leaf_index;

ALTER TABLE log_head ADD COLUMN members_from INTEGER NOT NULL DEFAULT 0;
UPDATE log_head SET members_from = coalesce((SELECT min(leaf_index) FROM log_members), size)
WHERE id = 1;

DROP TABLE log_members;
DROP TABLE log_nodes;
DROP TABLE log_leaves;
ALTER TABLE log_leaves_new RENAME TO log_leaves;

-- The old tables' columns, read-only, for inspection and for tools written
-- against 0002. The store itself reads log_leaves; a lookup by (level, idx)
-- through log_nodes scans the log.
CREATE VIEW log_members (leaf_index, hashes) AS
SELECT leaf_index, members FROM log_leaves WHERE members IS NOT NULL;

CREATE VIEW log_nodes (level, idx, hash) AS
WITH RECURSIVE levels (level) AS (SELECT 0 UNION ALL SELECT level + 1 FROM levels WHERE level < 63)
SELECT levels.level, l.leaf_index >> levels.level, substr(l.nodes, 32 * levels.level + 1, 32)
FROM log_leaves l JOIN levels ON 32 * levels.level < length(l.nodes);
