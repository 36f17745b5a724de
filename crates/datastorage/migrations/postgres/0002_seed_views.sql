-- The six seed audit tables, as views over the unified log (one row per typed record).
-- A record's event_type starts with its kind's reserved prefix; event_data is the record.

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
WHERE event_type LIKE 'notification.delivery.%';

CREATE INDEX notification_audit_subject ON audit_events ((event_data->>'notification_id'), seq) WHERE event_type LIKE 'notification.delivery.%';

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
WHERE event_type LIKE 'signalprocessing.signal.%';

CREATE INDEX signal_processing_audit_subject ON audit_events ((event_data->>'signal_id'), seq) WHERE event_type LIKE 'signalprocessing.signal.%';

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
WHERE event_type LIKE 'orchestration.remediation.%';

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
WHERE event_type LIKE 'analysis.decision.%';

CREATE INDEX ai_analysis_audit_subject ON audit_events ((event_data->>'ai_analysis_id'), seq) WHERE event_type LIKE 'analysis.decision.%';

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
WHERE event_type LIKE 'workflowexecution.execution.%';

CREATE INDEX workflow_execution_audit_subject ON audit_events ((event_data->>'workflow_execution_id'), seq) WHERE event_type LIKE 'workflowexecution.execution.%';

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
WHERE event_type LIKE 'effectiveness.assessment.%';

CREATE INDEX effectiveness_audit_subject ON audit_events ((event_data->>'assessment_id'), seq) WHERE event_type LIKE 'effectiveness.assessment.%';

-- Typed reads filter on event_type prefixes.
CREATE INDEX audit_events_type_seq ON audit_events (event_type text_pattern_ops, seq);
