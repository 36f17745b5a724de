-- The unified, append-only audit log (ADR-034 fields) and its head.
-- Timestamps are RFC 3339 text in UTC with six fractional digits, so they sort in time order.

CREATE TABLE audit_events (
    seq              INTEGER PRIMARY KEY,
    event_id         TEXT    NOT NULL UNIQUE,
    event_version    TEXT    NOT NULL,
    event_timestamp  TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    event_category   TEXT    NOT NULL,
    event_action     TEXT    NOT NULL,
    event_outcome    TEXT    NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type       TEXT    NOT NULL,
    actor_id         TEXT    NOT NULL,
    resource_type    TEXT    NOT NULL,
    resource_id      TEXT    NOT NULL,
    resource_name    TEXT,
    correlation_id   TEXT    NOT NULL,
    parent_event_id  TEXT,
    trace_id         TEXT,
    span_id          TEXT,
    namespace        TEXT,
    cluster_id       TEXT,
    severity         TEXT,
    duration_ms      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    event_data       TEXT    NOT NULL CHECK (json_valid(event_data)),
    retention_days   INTEGER NOT NULL,
    leaf_hash        BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    received_at      TEXT    NOT NULL
);

CREATE INDEX audit_events_correlation ON audit_events (correlation_id, event_timestamp, seq);
CREATE INDEX audit_events_time ON audit_events (event_timestamp, seq);
CREATE INDEX audit_events_type ON audit_events (event_type, event_timestamp);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id);

CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO log_head (id, last_seq) VALUES (1, 0);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;
