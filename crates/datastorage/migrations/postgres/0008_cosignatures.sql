-- Witnesses' cosignatures of the signed checkpoints (C2SP tlog-cosignature), as they answered
-- them: one per witness and checkpoint, never changed (append-only, like the checkpoints).
CREATE TABLE checkpoint_cosignatures (
    tree_size   BIGINT NOT NULL REFERENCES checkpoints (tree_size),
    witness     TEXT   NOT NULL,
    cosigned_at BIGINT NOT NULL,
    line        TEXT   NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
CREATE INDEX checkpoint_cosignatures_witness ON checkpoint_cosignatures (witness, tree_size);

CREATE TRIGGER checkpoint_cosignatures_append_only BEFORE UPDATE OR DELETE ON checkpoint_cosignatures
    FOR EACH ROW EXECUTE FUNCTION tree_refuse_change();
