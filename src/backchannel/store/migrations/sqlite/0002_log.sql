-- 0002: the relay's transparency log (docs/spec/relay-log-v1.md).
-- One leaf per committed batch, appended in the batch's own transaction.
-- Cells stored before this migration carry no log position (NULL).

ALTER TABLE cells ADD COLUMN leaf_index INTEGER;
ALTER TABLE cells ADD COLUMN batch_position INTEGER;

-- The single row every appender updates: size, frontier (the tiles of
-- [0, size), largest first, 32 bytes each) and the head's timestamp; plus the
-- newest signed head written back by a later batch.
CREATE TABLE log_head (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size        INTEGER NOT NULL CHECK (size >= 0),
    frontier    BLOB    NOT NULL,
    time        INTEGER NOT NULL,
    signed_size INTEGER NOT NULL DEFAULT -1,
    signed      BLOB
);
INSERT INTO log_head (id, size, frontier, time) VALUES (1, 0, x'', 0);

-- Every complete subtree: (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE log_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- The leaves themselves (one per batch), kept forever. Their times never
-- decrease with the index, so expiry finds old batches by index range.
CREATE TABLE log_leaves (
    leaf_index INTEGER NOT NULL PRIMARY KEY,
    leaf       BLOB    NOT NULL,
    time       INTEGER NOT NULL
);

-- Each batch's cell-entry hashes in commit order (32 bytes each, one row per
-- batch); deleted by expiry once the whole batch is past retention.
CREATE TABLE log_members (
    leaf_index INTEGER NOT NULL PRIMARY KEY,
    hashes     BLOB    NOT NULL
);
