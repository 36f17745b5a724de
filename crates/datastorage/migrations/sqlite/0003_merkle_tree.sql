-- The RFC 9162 Merkle tree over audit_events in seq order, and the signed checkpoints over it
-- (see the PostgreSQL migration for the design).

CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  BLOB    NOT NULL CHECK (length(root_hash) = 32),
    signed_at  TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    note       TEXT    NOT NULL
);
CREATE INDEX checkpoints_signed_at ON checkpoints (signed_at, tree_size);

CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'merkle_nodes is append-only: UPDATE refused'); END;
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'merkle_nodes is append-only: DELETE refused'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: DELETE refused'); END;
