-- Witnesses' cosignatures of the signed checkpoints (see the PostgreSQL migration).
CREATE TABLE checkpoint_cosignatures (
    tree_size   INTEGER NOT NULL REFERENCES checkpoints (tree_size),
    witness     TEXT    NOT NULL,
    cosigned_at INTEGER NOT NULL,
    line        TEXT    NOT NULL,
    PRIMARY KEY (tree_size, witness)
) WITHOUT ROWID;
CREATE INDEX checkpoint_cosignatures_witness ON checkpoint_cosignatures (witness, tree_size);

CREATE TRIGGER checkpoint_cosignatures_no_update BEFORE UPDATE ON checkpoint_cosignatures
BEGIN SELECT RAISE(ABORT, 'checkpoint_cosignatures is append-only: UPDATE refused'); END;
CREATE TRIGGER checkpoint_cosignatures_no_delete BEFORE DELETE ON checkpoint_cosignatures
BEGIN SELECT RAISE(ABORT, 'checkpoint_cosignatures is append-only: DELETE refused'); END;
