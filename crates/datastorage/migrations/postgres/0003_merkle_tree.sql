-- The RFC 9162 Merkle tree over audit_events in seq order, and the signed checkpoints over it.
--
-- merkle_nodes holds the root of every perfect subtree of level >= 1 (level 0 is
-- audit_events.leaf_hash at seq = idx + 1): written once, when its last leaf joins the tree, by
-- the checkpointer, never changed. Proofs read O(log n) of them.

CREATE TABLE merkle_nodes (
    level SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx   BIGINT   NOT NULL CHECK (idx >= 0),
    hash  BYTEA    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- One row per signed tree head. `note` is the C2SP signed note exactly as published.
CREATE TABLE checkpoints (
    tree_size  BIGINT      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  BYTEA       NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_at  TIMESTAMPTZ NOT NULL,
    origin     TEXT        NOT NULL,
    key_id     TEXT        NOT NULL,
    note       TEXT        NOT NULL
);
CREATE INDEX checkpoints_signed_at ON checkpoints (signed_at, tree_size);

CREATE FUNCTION tree_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER merkle_nodes_append_only BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION tree_refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION tree_refuse_change();
