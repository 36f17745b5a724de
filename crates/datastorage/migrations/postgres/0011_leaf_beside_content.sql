-- A query reads one page per event: the leaf's columns a query answers with (`event_id`,
-- `leaf_hash`, the receipt and commit times, the attested writer) are kept beside the content as
-- well, written by the same statement as the leaf. `audit_events_present` reads the content
-- alone; a page of one correlation was three scattered pages per event (the content row, the
-- leaf's key and the leaf) and is now one.
--
-- The leaves stay what the log is: the tree, the verifier, the proofs and purged events read
-- them. `audit_events` reads both and reports a content row whose copy differs from its leaf
-- with a leaf hash that matches nothing (the verifier flags that event), so the copy cannot be
-- changed unseen.

-- `submitted_by` is TEXT here (the leaf's is VARCHAR(255), which bounds it): before a partition
-- is first analysed, the planner estimates its rows from the widths its columns' types allow,
-- and one more VARCHAR(255) (about 500 bytes by that estimate) takes a row past a page, which
-- it then reads as an empty partition and joins by scanning it whole for every leaf.
ALTER TABLE audit_content
    ADD COLUMN event_id     UUID,
    ADD COLUMN leaf_hash    BYTEA,
    ADD COLUMN received_at  TIMESTAMPTZ,
    ADD COLUMN submitted_by TEXT,
    ADD COLUMN committed_at TIMESTAMPTZ;

-- The content written so far gets its leaf's copy (the append-only guard set aside for it, in
-- this migration's transaction).
DROP TRIGGER audit_content_append_only ON audit_content;
UPDATE audit_content c
SET event_id = l.event_id, leaf_hash = l.leaf_hash, received_at = l.received_at,
    submitted_by = l.submitted_by, committed_at = l.committed_at
FROM audit_leaves l
WHERE l.seq = c.seq;
CREATE TRIGGER audit_content_append_only BEFORE UPDATE OR DELETE ON audit_content
    FOR EACH ROW EXECUTE FUNCTION audit_content_guard();

ALTER TABLE audit_content
    ALTER COLUMN event_id SET NOT NULL,
    ALTER COLUMN leaf_hash SET NOT NULL,
    ALTER COLUMN received_at SET NOT NULL,
    ADD CONSTRAINT audit_content_leaf_hash_length CHECK (octet_length(leaf_hash) = 32);

-- The events whose content is held, from the content alone: a query in time order walks the
-- content's indexes (`correlation_id, event_timestamp, seq` for one correlation) and reads one
-- row per event. Its columns are those of `audit_events`; `purged_at` is always NULL.
CREATE OR REPLACE VIEW audit_events_present AS
SELECT c.seq, c.event_id, c.event_version, c.event_timestamp, c.event_type, c.event_category,
       c.event_action, c.event_outcome, c.actor_type, c.actor_id, c.resource_type, c.resource_id,
       c.resource_name, c.correlation_id, c.parent_event_id, c.trace_id, c.span_id, c.namespace,
       c.cluster_id, c.severity, c.duration_ms, c.error_code, c.error_message, c.event_data,
       c.retention_days, c.leaf_hash, c.received_at, NULL::timestamptz AS purged_at,
       c.actor_ip, c.parent_event_date, c.is_sensitive, c.record_kind,
       c.submitted_by::VARCHAR(255) AS submitted_by, c.committed_at
FROM audit_content c;

-- The same events found from their leaves, for a filter only the leaves index (the attested
-- writer): each leaf's content found by its key (joined by `seq` alone, as the view before this
-- one was, the planner probed every content partition's key index by its second column).
CREATE VIEW audit_events_present_by_leaf AS
SELECT c.seq, l.event_id, c.event_version, c.event_timestamp, c.event_type, c.event_category,
       c.event_action, c.event_outcome, c.actor_type, c.actor_id, c.resource_type, c.resource_id,
       c.resource_name, c.correlation_id, c.parent_event_id, c.trace_id, c.span_id, c.namespace,
       c.cluster_id, c.severity, c.duration_ms, c.error_code, c.error_message, c.event_data,
       l.retention_days, l.leaf_hash, l.received_at, NULL::timestamptz AS purged_at,
       c.actor_ip, c.parent_event_date, c.is_sensitive, c.record_kind, l.submitted_by,
       l.committed_at
FROM audit_content c
JOIN audit_leaves l ON l.seq = c.seq AND l.event_timestamp = c.event_timestamp;

-- Every leaf, with its content where it is held; a content row whose copy of the leaf differs
-- from the leaf reads with a leaf hash of neither (the SHA-256 of both), which no tree holds.
CREATE OR REPLACE VIEW audit_events AS
SELECT l.seq, l.event_id, c.event_version, l.event_timestamp, c.event_type, c.event_category,
       c.event_action, c.event_outcome, c.actor_type, c.actor_id, c.resource_type, c.resource_id,
       c.resource_name, c.correlation_id, c.parent_event_id, c.trace_id, c.span_id, c.namespace,
       c.cluster_id, c.severity, c.duration_ms, c.error_code, c.error_message, c.event_data,
       l.retention_days,
       CASE WHEN c.seq IS NULL
                 OR (c.event_id, c.leaf_hash, c.received_at, c.submitted_by, c.committed_at)
                    IS NOT DISTINCT FROM
                    (l.event_id, l.leaf_hash, l.received_at, l.submitted_by, l.committed_at)
            THEN l.leaf_hash
            ELSE sha256(l.leaf_hash || c.leaf_hash)
       END AS leaf_hash,
       l.received_at,
       CASE WHEN c.seq IS NULL THEN COALESCE(l.purged_at,
           (SELECT min(d.dropped_at) FROM retention_dropped_partitions d
            WHERE l.event_timestamp >= d.range_from AND l.event_timestamp < d.range_to
              AND l.seq BETWEEN d.first_seq AND d.last_seq),
           'epoch'::timestamptz)
       END AS purged_at,
       c.actor_ip, c.parent_event_date, c.is_sensitive, c.record_kind, l.submitted_by,
       l.committed_at
FROM audit_leaves l
LEFT JOIN audit_content c ON c.seq = l.seq AND c.event_timestamp = l.event_timestamp;

-- No reader walks the leaves in time order any more (queries read the content, whose key is
-- `event_timestamp, seq`; the verifier, the export and proofs read by `seq` or `event_id`): the
-- leaves' time index goes, one index fewer for every append to write.
DROP INDEX audit_leaves_time;
