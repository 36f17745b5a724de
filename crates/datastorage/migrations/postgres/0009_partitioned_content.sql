-- What lives forever apart from what expires: the log's leaves and the events' content.
--
-- `audit_leaves` keeps, for every seq, what the Merkle tree, the verifier and the proof that a
-- purge came after expiry need: seq, event_id, leaf_hash, event_timestamp, retention_days, the
-- receipt and commit times, the attested writer, and `purged_at` when a row purge removed the
-- content. It is never purged.
--
-- `audit_content` holds the rest of each event, partitioned by month of `event_timestamp`
-- (UTC). The service creates the partitions ahead (`audit_content_partition_for`), never by
-- hand. Retention drops a whole partition whose events are all expired and none under legal
-- hold, and records the drop in `retention_dropped_partitions`; a partition with held or
-- unexpired events is purged row by row, each purged leaf marked `purged_at`.
--
-- `audit_events` becomes a view over the two with the columns the table had: every reader
-- (queries, the typed views, exports, proofs, verify) reads what it read before. An event
-- whose content is gone reads as purged, at `purged_at` or at its partition's drop; content
-- missing without either was not purged by retention: it reads as purged at the epoch, before
-- any event expired, which the verifier reports as an early purge.

ALTER TABLE audit_events RENAME TO audit_events_v8;

CREATE TABLE audit_leaves (
    seq             BIGINT       PRIMARY KEY,
    event_id        UUID         NOT NULL UNIQUE,
    event_timestamp TIMESTAMPTZ  NOT NULL,
    retention_days  INTEGER      NOT NULL,
    leaf_hash       BYTEA        NOT NULL CHECK (octet_length(leaf_hash) = 32),
    received_at     TIMESTAMPTZ  NOT NULL,
    submitted_by    VARCHAR(255),
    committed_at    TIMESTAMPTZ,
    purged_at       TIMESTAMPTZ
);

CREATE TABLE audit_content (
    seq               BIGINT       NOT NULL,
    event_timestamp   TIMESTAMPTZ  NOT NULL,
    retention_days    INTEGER      NOT NULL,
    event_version     VARCHAR(20)  NOT NULL,
    event_type        VARCHAR(255) NOT NULL,
    event_category    VARCHAR(255) NOT NULL,
    event_action      VARCHAR(255) NOT NULL,
    event_outcome     VARCHAR(16)  NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type        VARCHAR(255) NOT NULL,
    actor_id          VARCHAR(255) NOT NULL,
    actor_ip          VARCHAR(45),
    resource_type     VARCHAR(255) NOT NULL,
    resource_id       VARCHAR(255) NOT NULL,
    resource_name     VARCHAR(255),
    correlation_id    VARCHAR(255) NOT NULL,
    parent_event_id   UUID,
    parent_event_date TIMESTAMPTZ,
    trace_id          VARCHAR(255),
    span_id           VARCHAR(255),
    namespace         VARCHAR(255),
    cluster_id        VARCHAR(255),
    severity          VARCHAR(50),
    duration_ms       BIGINT,
    error_code        VARCHAR(255),
    error_message     TEXT,
    event_data        JSONB        NOT NULL,
    is_sensitive      BOOLEAN,
    record_kind       VARCHAR(64),
    -- Time first: a leaf's content is found by this key (its partition from the time), and
    -- no index orders the content by seq alone, so the planner joins it to the leaves by one
    -- probe per leaf rather than by a merge from the first row (an outer join does not carry
    -- a bound on the leaves' seq over to the content).
    PRIMARY KEY (event_timestamp, seq)
) PARTITION BY RANGE (event_timestamp);

-- The partition of the month (UTC) holding `at`, created if missing; its name. Concurrent
-- callers (several replicas) serialise on an advisory lock.
CREATE FUNCTION audit_content_partition_for(at TIMESTAMPTZ) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    month_start TIMESTAMP := date_trunc('month', at AT TIME ZONE 'UTC');
    partition   TEXT := 'audit_content_' || to_char(month_start, 'YYYY_MM');
BEGIN
    IF to_regclass(partition) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('audit_content_partitions'));
        IF to_regclass(partition) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_content FOR VALUES FROM (%L) TO (%L)',
                partition, month_start AT TIME ZONE 'UTC',
                (month_start + interval '1 month') AT TIME ZONE 'UTC');
        END IF;
    END IF;
    RETURN partition;
END;
$$;

-- The whole partitions retention dropped: their month, their events' seq range and number.
CREATE TABLE retention_dropped_partitions (
    id         BIGSERIAL   PRIMARY KEY,
    partition  TEXT        NOT NULL,
    range_from TIMESTAMPTZ NOT NULL,
    range_to   TIMESTAMPTZ NOT NULL,
    first_seq  BIGINT      NOT NULL,
    last_seq   BIGINT      NOT NULL,
    events     BIGINT      NOT NULL,
    dropped_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX retention_dropped_partitions_range ON retention_dropped_partitions (range_from, range_to);
CREATE TRIGGER retention_dropped_partitions_append_only
    BEFORE UPDATE OR DELETE ON retention_dropped_partitions
    FOR EACH ROW EXECUTE FUNCTION tree_refuse_change();

-- The log as written so far, moved in place: a partition for every month it has events in
-- (and the current one), then the leaves and the unpurged content.
SELECT audit_content_partition_for(m)
FROM (SELECT DISTINCT date_trunc('month', event_timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
      FROM audit_events_v8
      UNION SELECT now()) months;

INSERT INTO audit_leaves (seq, event_id, event_timestamp, retention_days, leaf_hash, received_at,
                          submitted_by, committed_at, purged_at)
SELECT seq, event_id, event_timestamp, retention_days, leaf_hash, received_at, submitted_by,
       committed_at, purged_at
FROM audit_events_v8 ORDER BY seq;

INSERT INTO audit_content
SELECT seq, event_timestamp, retention_days, event_version, event_type, event_category,
       event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, resource_id,
       resource_name, correlation_id, parent_event_id, parent_event_date, trace_id, span_id,
       namespace, cluster_id, severity, duration_ms, error_code, error_message, event_data,
       is_sensitive, record_kind
FROM audit_events_v8 WHERE purged_at IS NULL ORDER BY seq;

CREATE INDEX audit_leaves_submitted_by ON audit_leaves (submitted_by, seq)
    WHERE submitted_by IS NOT NULL;
-- Lists in time order read the leaves in this order and each one's content by its key.
CREATE INDEX audit_leaves_time ON audit_leaves (event_timestamp, seq);

-- The content's indexes are the table's were, on every partition (but the time index, which its
-- key is); the typed views' indexes too (taken from the table as they are, whatever migration
-- last changed them).
CREATE TEMPORARY TABLE moved_indexes ON COMMIT DROP AS
SELECT replace(indexdef, 'ON public.audit_events_v8 ', 'ON audit_content ') AS def
FROM pg_indexes
WHERE schemaname = 'public' AND tablename = 'audit_events_v8'
  AND indexname NOT IN ('audit_events_pkey', 'audit_events_event_id_key', 'audit_events_submitted_by',
                        'audit_events_time');

-- The typed views, over the new view, as they are defined now.
CREATE TEMPORARY TABLE moved_views ON COMMIT DROP AS
SELECT DISTINCT c.relname AS name, pg_get_viewdef(c.oid) AS def
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class c ON c.oid = r.ev_class
WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'audit_events_v8'::regclass
  AND c.oid <> 'audit_events_v8'::regclass;

DO $$
DECLARE
    v RECORD;
BEGIN
    FOR v IN SELECT name FROM moved_views LOOP
        EXECUTE format('DROP VIEW %I', v.name);
    END LOOP;
END;
$$;

DROP TABLE audit_events_v8;
DROP FUNCTION audit_events_refuse_change();

DO $$
DECLARE
    i RECORD;
BEGIN
    FOR i IN SELECT def FROM moved_indexes LOOP
        EXECUTE i.def;
    END LOOP;
END;
$$;

CREATE VIEW audit_events AS
SELECT l.seq, l.event_id, c.event_version, l.event_timestamp, c.event_type, c.event_category,
       c.event_action, c.event_outcome, c.actor_type, c.actor_id, c.resource_type, c.resource_id,
       c.resource_name, c.correlation_id, c.parent_event_id, c.trace_id, c.span_id, c.namespace,
       c.cluster_id, c.severity, c.duration_ms, c.error_code, c.error_message, c.event_data,
       l.retention_days, l.leaf_hash, l.received_at,
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

DO $$
DECLARE
    v RECORD;
BEGIN
    FOR v IN SELECT name, def FROM moved_views LOOP
        EXECUTE format('CREATE VIEW %I AS %s', v.name,
                       regexp_replace(v.def, '\maudit_events_v8\M', 'audit_events', 'g'));
    END LOOP;
END;
$$;

-- A leaf never changes, but for `purged_at`, set once, after its event expired, on a leaf whose
-- content is already gone (the row purge deletes the content first, in the same transaction).
CREATE FUNCTION audit_leaves_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
       AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id AND NEW.leaf_hash = OLD.leaf_hash
       AND NEW.event_timestamp = OLD.event_timestamp
       AND NEW.retention_days = OLD.retention_days AND NEW.received_at = OLD.received_at
       AND NEW.submitted_by IS NOT DISTINCT FROM OLD.submitted_by
       AND NEW.committed_at IS NOT DISTINCT FROM OLD.committed_at
       AND OLD.event_timestamp + make_interval(days => OLD.retention_days) <= now()
       AND NEW.purged_at BETWEEN OLD.event_timestamp + make_interval(days => OLD.retention_days)
                             AND now() + interval '5 minutes'
       AND NOT EXISTS (SELECT 1 FROM audit_content c
                       WHERE c.seq = OLD.seq AND c.event_timestamp = OLD.event_timestamp) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_leaves is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the log''s leaves cannot be changed or deleted; only the retention purge '
                     'may mark an expired event purged once its content is gone';
END;
$$;
CREATE TRIGGER audit_leaves_append_only BEFORE UPDATE OR DELETE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION audit_leaves_guard();
CREATE TRIGGER audit_leaves_no_truncate BEFORE TRUNCATE ON audit_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION audit_leaves_guard();

-- Content never changes; it is deleted only once expired and not under legal hold.
CREATE FUNCTION audit_content_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.event_timestamp + make_interval(days => OLD.retention_days) <= now()
       AND NOT EXISTS (SELECT 1 FROM legal_holds h
                       WHERE h.correlation_id = OLD.correlation_id AND h.released_at IS NULL) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_content is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'stored audit events cannot be changed or deleted; only the retention purge '
                     'may remove the content of an expired event that is not under legal hold';
END;
$$;
CREATE TRIGGER audit_content_append_only BEFORE UPDATE OR DELETE ON audit_content
    FOR EACH ROW EXECUTE FUNCTION audit_content_guard();
CREATE TRIGGER audit_content_no_truncate BEFORE TRUNCATE ON audit_content
    FOR EACH STATEMENT EXECUTE FUNCTION audit_content_guard();
