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

ALTER TABLE audit_events
    ALTER COLUMN event_version TYPE VARCHAR(20),
    ADD COLUMN actor_ip          VARCHAR(45),
    ADD COLUMN parent_event_date TIMESTAMPTZ,
    ADD COLUMN is_sensitive      BOOLEAN,
    ADD COLUMN record_kind       VARCHAR(64),
    ADD CONSTRAINT audit_events_new_fields_purged CHECK (
        purged_at IS NULL OR num_nonnulls(actor_ip, parent_event_date, is_sensitive, record_kind) = 0);

DROP VIEW notification_audit;
CREATE VIEW notification_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'notification_id') AS notification_id,
       (event_data->>'recipient') AS recipient,
       (event_data->>'channel') AS channel,
       (event_data->>'message_summary') AS message_summary,
       (event_data->>'status') AS status,
       (event_data->>'sent_at')::timestamptz AS sent_at,
       (event_data->>'escalation_level')::bigint AS escalation_level,
       (event_data->>'delivery_status') AS delivery_status,
       (event_data->>'error_message') AS error_message,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'notification_audit'
   OR (record_kind IS NULL AND event_type LIKE 'notification.delivery.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP INDEX notification_audit_subject;
CREATE INDEX notification_audit_subject ON audit_events ((event_data->>'notification_id'), seq)
    WHERE record_kind = 'notification_audit' OR (record_kind IS NULL AND event_type LIKE 'notification.delivery.%');

DROP VIEW signal_processing_audit;
CREATE VIEW signal_processing_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'signal_id') AS signal_id,
       (event_data->>'alert_fingerprint') AS alert_fingerprint,
       (event_data->>'environment') AS environment,
       (event_data->>'severity') AS severity,
       (event_data->>'status') AS status,
       (event_data->>'processing_start_time')::timestamptz AS processing_start_time,
       (event_data->>'processing_end_time')::timestamptz AS processing_end_time,
       (event_data->>'processing_duration_ms')::bigint AS processing_duration_ms,
       (event_data->>'enrichment_quality')::double precision AS enrichment_quality,
       (event_data->>'classification_score')::double precision AS classification_score,
       (event_data->'context_data') AS context_data,
       (event_data->>'created_crd_name') AS created_crd_name,
       (event_data->>'created_crd_type') AS created_crd_type,
       (event_data->>'error_message') AS error_message,
       (event_data->>'completed_at')::timestamptz AS completed_at,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'signal_processing_audit'
   OR (record_kind IS NULL AND event_type LIKE 'signalprocessing.signal.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP INDEX signal_processing_audit_subject;
CREATE INDEX signal_processing_audit_subject ON audit_events ((event_data->>'signal_id'), seq)
    WHERE record_kind = 'signal_processing_audit' OR (record_kind IS NULL AND event_type LIKE 'signalprocessing.signal.%');

DROP VIEW orchestration_audit;
CREATE VIEW orchestration_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'remediation_name') AS remediation_name,
       (event_data->>'overall_phase') AS overall_phase,
       (event_data->>'start_time')::timestamptz AS start_time,
       (event_data->>'alert_fingerprint') AS alert_fingerprint,
       (event_data->>'completion_time')::timestamptz AS completion_time,
       (event_data->>'remediation_processing_name') AS remediation_processing_name,
       (event_data->>'ai_analysis_name') AS ai_analysis_name,
       (event_data->>'workflow_execution_name') AS workflow_execution_name,
       (event_data->'service_crd_statuses') AS service_crd_statuses,
       (event_data->>'timeout_phase') AS timeout_phase,
       (event_data->>'failure_phase') AS failure_phase,
       (event_data->>'failure_reason') AS failure_reason,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'orchestration_audit'
   OR (record_kind IS NULL AND event_type LIKE 'orchestration.remediation.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP VIEW ai_analysis_audit;
CREATE VIEW ai_analysis_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'ai_analysis_id') AS ai_analysis_id,
       (event_data->>'alert_fingerprint') AS alert_fingerprint,
       (event_data->>'environment') AS environment,
       (event_data->>'severity') AS severity,
       (event_data->>'investigation_start_time')::timestamptz AS investigation_start_time,
       (event_data->>'investigation_end_time')::timestamptz AS investigation_end_time,
       (event_data->>'investigation_duration_ms')::bigint AS investigation_duration_ms,
       (event_data->>'analysis_start_time')::timestamptz AS analysis_start_time,
       (event_data->>'analysis_end_time')::timestamptz AS analysis_end_time,
       (event_data->>'analysis_duration_ms')::bigint AS analysis_duration_ms,
       (event_data->>'recommendation_start_time')::timestamptz AS recommendation_start_time,
       (event_data->>'recommendation_end_time')::timestamptz AS recommendation_end_time,
       (event_data->>'recommendation_duration_ms')::bigint AS recommendation_duration_ms,
       (event_data->>'confidence_score')::double precision AS confidence_score,
       (event_data->>'root_cause_count')::bigint AS root_cause_count,
       (event_data->>'investigation_report') AS investigation_report,
       (event_data->>'hallucination_detected')::boolean AS hallucination_detected,
       (event_data->>'effectiveness_probability')::double precision AS effectiveness_probability,
       (event_data->>'historical_success_rate')::double precision AS historical_success_rate,
       (event_data->'recommendations') AS recommendations,
       (event_data->>'top_recommendation') AS top_recommendation,
       (event_data->>'workflow_crd_name') AS workflow_crd_name,
       (event_data->>'workflow_crd_namespace') AS workflow_crd_namespace,
       (event_data->>'completion_status') AS completion_status,
       (event_data->>'failure_reason') AS failure_reason,
       (event_data->'embedding') AS embedding,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'ai_analysis_audit'
   OR (record_kind IS NULL AND event_type LIKE 'analysis.decision.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP INDEX ai_analysis_audit_subject;
CREATE INDEX ai_analysis_audit_subject ON audit_events ((event_data->>'ai_analysis_id'), seq)
    WHERE record_kind = 'ai_analysis_audit' OR (record_kind IS NULL AND event_type LIKE 'analysis.decision.%');

DROP VIEW workflow_execution_audit;
CREATE VIEW workflow_execution_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'workflow_execution_id') AS workflow_execution_id,
       (event_data->>'workflow_name') AS workflow_name,
       (event_data->>'workflow_version') AS workflow_version,
       (event_data->>'total_steps')::bigint AS total_steps,
       (event_data->>'steps_completed')::bigint AS steps_completed,
       (event_data->>'steps_failed')::bigint AS steps_failed,
       (event_data->>'total_duration_ms')::bigint AS total_duration_ms,
       (event_data->>'outcome') AS outcome,
       (event_data->>'effectiveness_score')::double precision AS effectiveness_score,
       (event_data->>'rollbacks_performed')::bigint AS rollbacks_performed,
       (event_data->'step_executions') AS step_executions,
       (event_data->'adaptive_adjustments') AS adaptive_adjustments,
       (event_data->>'status') AS status,
       (event_data->>'completed_at')::timestamptz AS completed_at,
       (event_data->>'error_message') AS error_message,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'workflow_execution_audit'
   OR (record_kind IS NULL AND event_type LIKE 'workflowexecution.execution.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP INDEX workflow_execution_audit_subject;
CREATE INDEX workflow_execution_audit_subject ON audit_events ((event_data->>'workflow_execution_id'), seq)
    WHERE record_kind = 'workflow_execution_audit' OR (record_kind IS NULL AND event_type LIKE 'workflowexecution.execution.%');

DROP VIEW effectiveness_audit;
CREATE VIEW effectiveness_audit AS
SELECT seq AS id,
       event_id,
       (event_data->>'assessment_id') AS assessment_id,
       (event_data->>'remediation_id') AS remediation_id,
       (event_data->>'action_type') AS action_type,
       (event_data->>'traditional_score')::double precision AS traditional_score,
       (event_data->>'environmental_impact')::double precision AS environmental_impact,
       (event_data->>'confidence')::double precision AS confidence,
       (event_data->>'trend_direction') AS trend_direction,
       (event_data->>'recent_success_rate')::double precision AS recent_success_rate,
       (event_data->>'historical_success_rate')::double precision AS historical_success_rate,
       (event_data->>'data_quality') AS data_quality,
       (event_data->>'sample_size')::bigint AS sample_size,
       (event_data->>'data_age_days')::bigint AS data_age_days,
       (event_data->>'pattern_detected')::boolean AS pattern_detected,
       (event_data->>'pattern_description') AS pattern_description,
       (event_data->>'temporal_pattern') AS temporal_pattern,
       (event_data->>'side_effects_detected')::boolean AS side_effects_detected,
       (event_data->>'side_effects_description') AS side_effects_description,
       (event_data->>'completed_at')::timestamptz AS completed_at,
       received_at AS created_at
FROM audit_events
WHERE record_kind = 'effectiveness_audit'
   OR (record_kind IS NULL AND event_type LIKE 'effectiveness.assessment.%'
       AND substr(event_id::text, 15, 1) = '5');

DROP INDEX effectiveness_audit_subject;
CREATE INDEX effectiveness_audit_subject ON audit_events ((event_data->>'assessment_id'), seq)
    WHERE record_kind = 'effectiveness_audit' OR (record_kind IS NULL AND event_type LIKE 'effectiveness.assessment.%');
