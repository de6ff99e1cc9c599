-- 0005: the latest checkpoint a witness cosigned (docs/spec/relay-log-v1.md),
-- kept where every relay process on this database reads it: whichever process
-- a client reaches serves the same cosigned checkpoint, a process that has
-- just started included. A larger size replaces it; at the same size, a note
-- with at least as many cosignatures.
CREATE TABLE log_checkpoint (
    id           smallint NOT NULL PRIMARY KEY CHECK (id = 1),
    size         bigint   NOT NULL CHECK (size >= 0),
    cosignatures integer  NOT NULL CHECK (cosignatures > 0),
    note         bytea    NOT NULL
);
