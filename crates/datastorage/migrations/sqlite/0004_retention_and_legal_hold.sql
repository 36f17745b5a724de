-- Retention and legal hold (see the PostgreSQL migration for the design).
--
-- SQLite cannot drop a NOT NULL constraint in place, so the log table is rebuilt with the
-- content columns nullable and a purged_at marker: the documented way (new table, copy, drop,
-- rename), with the seed views, indexes and triggers recreated as they were.

DROP VIEW notification_audit;
DROP VIEW signal_processing_audit;
DROP VIEW orchestration_audit;
DROP VIEW ai_analysis_audit;
DROP VIEW workflow_execution_audit;
DROP VIEW effectiveness_audit;

CREATE TABLE audit_events_rebuilt (
    seq              INTEGER PRIMARY KEY,
    event_id         TEXT    NOT NULL UNIQUE,
    event_version    TEXT,
    event_timestamp  TEXT    NOT NULL,
    event_type       TEXT,
    event_category   TEXT,
    event_action     TEXT,
    event_outcome    TEXT    CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type       TEXT,
    actor_id         TEXT,
    resource_type    TEXT,
    resource_id      TEXT,
    resource_name    TEXT,
    correlation_id   TEXT,
    parent_event_id  TEXT,
    trace_id         TEXT,
    span_id          TEXT,
    namespace        TEXT,
    cluster_id       TEXT,
    severity         TEXT,
    duration_ms      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    event_data       TEXT    CHECK (json_valid(event_data)),
    retention_days   INTEGER NOT NULL,
    leaf_hash        BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    received_at      TEXT    NOT NULL,
    purged_at        TEXT,
    CHECK (CASE WHEN purged_at IS NULL THEN
               event_version IS NOT NULL AND event_type IS NOT NULL
               AND event_category IS NOT NULL AND event_action IS NOT NULL
               AND event_outcome IS NOT NULL AND actor_type IS NOT NULL AND actor_id IS NOT NULL
               AND resource_type IS NOT NULL AND resource_id IS NOT NULL
               AND correlation_id IS NOT NULL AND event_data IS NOT NULL
           ELSE
               coalesce(event_version, event_type, event_category, event_action, event_outcome,
                   actor_type, actor_id, resource_type, resource_id, resource_name,
                   correlation_id, parent_event_id, trace_id, span_id, namespace, cluster_id,
                   severity, duration_ms, error_code, error_message, event_data) IS NULL
           END)
);

INSERT INTO audit_events_rebuilt (seq, event_id, event_version, event_timestamp, event_type,
    event_category, event_action, event_outcome, actor_type, actor_id, resource_type, resource_id,
    resource_name, correlation_id, parent_event_id, trace_id, span_id, namespace, cluster_id,
    severity, duration_ms, error_code, error_message, event_data, retention_days, leaf_hash,
    received_at)
SELECT seq, event_id, event_version, event_timestamp, event_type, event_category, event_action,
    event_outcome, actor_type, actor_id, resource_type, resource_id, resource_name,
    correlation_id, parent_event_id, trace_id, span_id, namespace, cluster_id, severity,
    duration_ms, error_code, error_message, event_data, retention_days, leaf_hash, received_at
FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_rebuilt RENAME TO audit_events;

CREATE INDEX audit_events_correlation ON audit_events (correlation_id, event_timestamp, seq);
CREATE INDEX audit_events_time ON audit_events (event_timestamp, seq);
CREATE INDEX audit_events_type ON audit_events (event_type, event_timestamp);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id);

CREATE VIEW notification_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.notification_id') AS notification_id,
       json_extract(event_data, '$.recipient') AS recipient,
       json_extract(event_data, '$.channel') AS channel,
       json_extract(event_data, '$.message_summary') AS message_summary,
       json_extract(event_data, '$.status') AS status,
       json_extract(event_data, '$.sent_at') AS sent_at,
       json_extract(event_data, '$.escalation_level') AS escalation_level,
       json_extract(event_data, '$.delivery_status') AS delivery_status,
       json_extract(event_data, '$.error_message') AS error_message,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'notification.delivery.%';

CREATE VIEW signal_processing_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.signal_id') AS signal_id,
       json_extract(event_data, '$.alert_fingerprint') AS alert_fingerprint,
       json_extract(event_data, '$.environment') AS environment,
       json_extract(event_data, '$.severity') AS severity,
       json_extract(event_data, '$.status') AS status,
       json_extract(event_data, '$.processing_start_time') AS processing_start_time,
       json_extract(event_data, '$.processing_end_time') AS processing_end_time,
       json_extract(event_data, '$.processing_duration_ms') AS processing_duration_ms,
       json_extract(event_data, '$.enrichment_quality') AS enrichment_quality,
       json_extract(event_data, '$.classification_score') AS classification_score,
       json(json_extract(event_data, '$.context_data')) AS context_data,
       json_extract(event_data, '$.created_crd_name') AS created_crd_name,
       json_extract(event_data, '$.created_crd_type') AS created_crd_type,
       json_extract(event_data, '$.error_message') AS error_message,
       json_extract(event_data, '$.completed_at') AS completed_at,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'signalprocessing.signal.%';

CREATE VIEW orchestration_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.remediation_name') AS remediation_name,
       json_extract(event_data, '$.overall_phase') AS overall_phase,
       json_extract(event_data, '$.start_time') AS start_time,
       json_extract(event_data, '$.alert_fingerprint') AS alert_fingerprint,
       json_extract(event_data, '$.completion_time') AS completion_time,
       json_extract(event_data, '$.remediation_processing_name') AS remediation_processing_name,
       json_extract(event_data, '$.ai_analysis_name') AS ai_analysis_name,
       json_extract(event_data, '$.workflow_execution_name') AS workflow_execution_name,
       json(json_extract(event_data, '$.service_crd_statuses')) AS service_crd_statuses,
       json_extract(event_data, '$.timeout_phase') AS timeout_phase,
       json_extract(event_data, '$.failure_phase') AS failure_phase,
       json_extract(event_data, '$.failure_reason') AS failure_reason,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'orchestration.remediation.%';

CREATE VIEW ai_analysis_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.ai_analysis_id') AS ai_analysis_id,
       json_extract(event_data, '$.alert_fingerprint') AS alert_fingerprint,
       json_extract(event_data, '$.environment') AS environment,
       json_extract(event_data, '$.severity') AS severity,
       json_extract(event_data, '$.investigation_start_time') AS investigation_start_time,
       json_extract(event_data, '$.investigation_end_time') AS investigation_end_time,
       json_extract(event_data, '$.investigation_duration_ms') AS investigation_duration_ms,
       json_extract(event_data, '$.analysis_start_time') AS analysis_start_time,
       json_extract(event_data, '$.analysis_end_time') AS analysis_end_time,
       json_extract(event_data, '$.analysis_duration_ms') AS analysis_duration_ms,
       json_extract(event_data, '$.recommendation_start_time') AS recommendation_start_time,
       json_extract(event_data, '$.recommendation_end_time') AS recommendation_end_time,
       json_extract(event_data, '$.recommendation_duration_ms') AS recommendation_duration_ms,
       json_extract(event_data, '$.confidence_score') AS confidence_score,
       json_extract(event_data, '$.root_cause_count') AS root_cause_count,
       json_extract(event_data, '$.investigation_report') AS investigation_report,
       json_extract(event_data, '$.hallucination_detected') AS hallucination_detected,
       json_extract(event_data, '$.effectiveness_probability') AS effectiveness_probability,
       json_extract(event_data, '$.historical_success_rate') AS historical_success_rate,
       json(json_extract(event_data, '$.recommendations')) AS recommendations,
       json_extract(event_data, '$.top_recommendation') AS top_recommendation,
       json_extract(event_data, '$.workflow_crd_name') AS workflow_crd_name,
       json_extract(event_data, '$.workflow_crd_namespace') AS workflow_crd_namespace,
       json_extract(event_data, '$.completion_status') AS completion_status,
       json_extract(event_data, '$.failure_reason') AS failure_reason,
       json(json_extract(event_data, '$.embedding')) AS embedding,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'analysis.decision.%';

CREATE VIEW workflow_execution_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.workflow_execution_id') AS workflow_execution_id,
       json_extract(event_data, '$.workflow_name') AS workflow_name,
       json_extract(event_data, '$.workflow_version') AS workflow_version,
       json_extract(event_data, '$.total_steps') AS total_steps,
       json_extract(event_data, '$.steps_completed') AS steps_completed,
       json_extract(event_data, '$.steps_failed') AS steps_failed,
       json_extract(event_data, '$.total_duration_ms') AS total_duration_ms,
       json_extract(event_data, '$.outcome') AS outcome,
       json_extract(event_data, '$.effectiveness_score') AS effectiveness_score,
       json_extract(event_data, '$.rollbacks_performed') AS rollbacks_performed,
       json(json_extract(event_data, '$.step_executions')) AS step_executions,
       json(json_extract(event_data, '$.adaptive_adjustments')) AS adaptive_adjustments,
       json_extract(event_data, '$.status') AS status,
       json_extract(event_data, '$.completed_at') AS completed_at,
       json_extract(event_data, '$.error_message') AS error_message,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'workflowexecution.execution.%';

CREATE VIEW effectiveness_audit AS
SELECT seq AS id,
       event_id,
       json_extract(event_data, '$.assessment_id') AS assessment_id,
       json_extract(event_data, '$.remediation_id') AS remediation_id,
       json_extract(event_data, '$.action_type') AS action_type,
       json_extract(event_data, '$.traditional_score') AS traditional_score,
       json_extract(event_data, '$.environmental_impact') AS environmental_impact,
       json_extract(event_data, '$.confidence') AS confidence,
       json_extract(event_data, '$.trend_direction') AS trend_direction,
       json_extract(event_data, '$.recent_success_rate') AS recent_success_rate,
       json_extract(event_data, '$.historical_success_rate') AS historical_success_rate,
       json_extract(event_data, '$.data_quality') AS data_quality,
       json_extract(event_data, '$.sample_size') AS sample_size,
       json_extract(event_data, '$.data_age_days') AS data_age_days,
       json_extract(event_data, '$.pattern_detected') AS pattern_detected,
       json_extract(event_data, '$.pattern_description') AS pattern_description,
       json_extract(event_data, '$.temporal_pattern') AS temporal_pattern,
       json_extract(event_data, '$.side_effects_detected') AS side_effects_detected,
       json_extract(event_data, '$.side_effects_description') AS side_effects_description,
       json_extract(event_data, '$.completed_at') AS completed_at,
       received_at AS created_at
FROM audit_events
WHERE event_type LIKE 'effectiveness.assessment.%';

CREATE INDEX notification_audit_subject ON audit_events (json_extract(event_data, '$.notification_id'), seq) WHERE event_type LIKE 'notification.delivery.%';
CREATE INDEX signal_processing_audit_subject ON audit_events (json_extract(event_data, '$.signal_id'), seq) WHERE event_type LIKE 'signalprocessing.signal.%';
CREATE INDEX ai_analysis_audit_subject ON audit_events (json_extract(event_data, '$.ai_analysis_id'), seq) WHERE event_type LIKE 'analysis.decision.%';
CREATE INDEX workflow_execution_audit_subject ON audit_events (json_extract(event_data, '$.workflow_execution_id'), seq) WHERE event_type LIKE 'workflowexecution.execution.%';
CREATE INDEX effectiveness_audit_subject ON audit_events (json_extract(event_data, '$.assessment_id'), seq) WHERE event_type LIKE 'effectiveness.assessment.%';
CREATE INDEX audit_events_type_seq ON audit_events (event_type, seq);

-- One active hold per correlation; released holds stay as history.
CREATE TABLE legal_holds (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    correlation_id TEXT NOT NULL,
    reason         TEXT NOT NULL,
    placed_by      TEXT NOT NULL,
    placed_at      TEXT NOT NULL,
    released_at    TEXT,
    release_reason TEXT,
    released_by    TEXT,
    CHECK ((released_at IS NULL) = (release_reason IS NULL)
           AND (released_at IS NULL) = (released_by IS NULL))
);
CREATE UNIQUE INDEX legal_holds_active ON legal_holds (correlation_id) WHERE released_at IS NULL;

CREATE TRIGGER legal_holds_release_only BEFORE UPDATE ON legal_holds
WHEN NOT (OLD.released_at IS NULL AND NEW.released_at IS NOT NULL AND NEW.id = OLD.id
          AND NEW.correlation_id = OLD.correlation_id AND NEW.reason = OLD.reason
          AND NEW.placed_by = OLD.placed_by AND NEW.placed_at = OLD.placed_at)
BEGIN
    SELECT RAISE(ABORT, 'legal_holds keeps its history: UPDATE refused (a hold can only be released)');
END;

CREATE TRIGGER legal_holds_no_delete BEFORE DELETE ON legal_holds
BEGIN
    SELECT RAISE(ABORT, 'legal_holds keeps its history: DELETE refused');
END;

-- Stored events stay unchangeable, except for the purge of an expired event not under hold.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN NOT (OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
          AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id
          AND NEW.leaf_hash = OLD.leaf_hash AND NEW.event_timestamp = OLD.event_timestamp
          AND NEW.retention_days = OLD.retention_days AND NEW.received_at = OLD.received_at
          AND julianday(OLD.event_timestamp) + OLD.retention_days <= julianday('now')
          AND julianday(NEW.purged_at) >= julianday(OLD.event_timestamp) + OLD.retention_days
          AND julianday(NEW.purged_at) <= julianday('now', '+5 minutes')
          AND NOT EXISTS (SELECT 1 FROM legal_holds h
                          WHERE h.correlation_id = OLD.correlation_id
                            AND h.released_at IS NULL))
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;
