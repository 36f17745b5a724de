-- What the platform's services write, taken as they write it (their Data Storage API document).
--
-- The fields their client sends with every event: `version` is stored as `event_version` (up to
-- 20 characters there), `actor_ip`, the parent's `parent_event_date` and `is_sensitive` get their
-- own columns. An absent field stays out of the canonical form, so the leaf hashes of the events
-- stored before are unchanged.
--
-- The typed records no longer reserve their event_type prefixes on the unified endpoint (the
-- platform's controllers write `signalprocessing.signal.processed`, `effectiveness.assessment.*`
-- and more there). A typed record is marked by `record_kind` (its view's name, part of its
-- content), which only the typed endpoints set. The records stored before carry no marker; they
-- are the events with their kind's prefix and the record's deterministic id, a UUIDv5 (the
-- unified endpoint refuses a UUIDv5 id with a typed prefix, so none can join them). Nothing stored
-- is rewritten: every proof holds.

ALTER TABLE audit_events ADD COLUMN actor_ip TEXT
    CHECK (actor_ip IS NULL OR purged_at IS NULL);
ALTER TABLE audit_events ADD COLUMN parent_event_date TEXT
    CHECK (parent_event_date IS NULL OR purged_at IS NULL);
ALTER TABLE audit_events ADD COLUMN is_sensitive INTEGER
    CHECK (is_sensitive IS NULL OR (purged_at IS NULL AND is_sensitive IN (0, 1)));
ALTER TABLE audit_events ADD COLUMN record_kind TEXT
    CHECK (record_kind IS NULL OR purged_at IS NULL);

DROP VIEW notification_audit;
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
WHERE record_kind = 'notification_audit'
   OR (record_kind IS NULL AND event_type LIKE 'notification.delivery.%'
       AND substr(event_id, 15, 1) = '5');

DROP INDEX notification_audit_subject;
CREATE INDEX notification_audit_subject ON audit_events (json_extract(event_data, '$.notification_id'), seq)
    WHERE record_kind = 'notification_audit' OR (record_kind IS NULL AND event_type LIKE 'notification.delivery.%');

DROP VIEW signal_processing_audit;
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
WHERE record_kind = 'signal_processing_audit'
   OR (record_kind IS NULL AND event_type LIKE 'signalprocessing.signal.%'
       AND substr(event_id, 15, 1) = '5');

DROP INDEX signal_processing_audit_subject;
CREATE INDEX signal_processing_audit_subject ON audit_events (json_extract(event_data, '$.signal_id'), seq)
    WHERE record_kind = 'signal_processing_audit' OR (record_kind IS NULL AND event_type LIKE 'signalprocessing.signal.%');

DROP VIEW orchestration_audit;
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
WHERE record_kind = 'orchestration_audit'
   OR (record_kind IS NULL AND event_type LIKE 'orchestration.remediation.%'
       AND substr(event_id, 15, 1) = '5');

DROP VIEW ai_analysis_audit;
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
WHERE record_kind = 'ai_analysis_audit'
   OR (record_kind IS NULL AND event_type LIKE 'analysis.decision.%'
       AND substr(event_id, 15, 1) = '5');

DROP INDEX ai_analysis_audit_subject;
CREATE INDEX ai_analysis_audit_subject ON audit_events (json_extract(event_data, '$.ai_analysis_id'), seq)
    WHERE record_kind = 'ai_analysis_audit' OR (record_kind IS NULL AND event_type LIKE 'analysis.decision.%');

DROP VIEW workflow_execution_audit;
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
WHERE record_kind = 'workflow_execution_audit'
   OR (record_kind IS NULL AND event_type LIKE 'workflowexecution.execution.%'
       AND substr(event_id, 15, 1) = '5');

DROP INDEX workflow_execution_audit_subject;
CREATE INDEX workflow_execution_audit_subject ON audit_events (json_extract(event_data, '$.workflow_execution_id'), seq)
    WHERE record_kind = 'workflow_execution_audit' OR (record_kind IS NULL AND event_type LIKE 'workflowexecution.execution.%');

DROP VIEW effectiveness_audit;
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
WHERE record_kind = 'effectiveness_audit'
   OR (record_kind IS NULL AND event_type LIKE 'effectiveness.assessment.%'
       AND substr(event_id, 15, 1) = '5');

DROP INDEX effectiveness_audit_subject;
CREATE INDEX effectiveness_audit_subject ON audit_events (json_extract(event_data, '$.assessment_id'), seq)
    WHERE record_kind = 'effectiveness_audit' OR (record_kind IS NULL AND event_type LIKE 'effectiveness.assessment.%');
