-- The unified, append-only audit log (ADR-034 fields) and its head.

CREATE TABLE audit_events (
    seq              BIGINT       PRIMARY KEY,
    event_id         UUID         NOT NULL UNIQUE,
    event_version    VARCHAR(16)  NOT NULL,
    event_timestamp  TIMESTAMPTZ  NOT NULL,
    event_type       VARCHAR(255) NOT NULL,
    event_category   VARCHAR(255) NOT NULL,
    event_action     VARCHAR(255) NOT NULL,
    event_outcome    VARCHAR(16)  NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type       VARCHAR(255) NOT NULL,
    actor_id         VARCHAR(255) NOT NULL,
    resource_type    VARCHAR(255) NOT NULL,
    resource_id      VARCHAR(255) NOT NULL,
    resource_name    VARCHAR(255),
    correlation_id   VARCHAR(255) NOT NULL,
    parent_event_id  UUID,
    trace_id         VARCHAR(255),
    span_id          VARCHAR(255),
    namespace        VARCHAR(255),
    cluster_id       VARCHAR(255),
    severity         VARCHAR(50),
    duration_ms      BIGINT,
    error_code       VARCHAR(255),
    error_message    TEXT,
    event_data       JSONB        NOT NULL,
    retention_days   INTEGER      NOT NULL,
    leaf_hash        BYTEA        NOT NULL CHECK (octet_length(leaf_hash) = 32),
    received_at      TIMESTAMPTZ  NOT NULL
);

CREATE INDEX audit_events_correlation ON audit_events (correlation_id, event_timestamp, seq);
CREATE INDEX audit_events_time ON audit_events (event_timestamp, seq);
CREATE INDEX audit_events_type ON audit_events (event_type, event_timestamp);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id);

-- One row: the last assigned seq. Written under the log-head advisory lock, in the same
-- transaction as the events, so seq stays gap-free across replicas.
CREATE TABLE log_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT   NOT NULL
);
INSERT INTO log_head (id, last_seq) VALUES (1, 0);

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'stored audit events cannot be changed or deleted';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
