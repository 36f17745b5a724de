-- The events whose content is held: every query answers from these (a purged event has no
-- content left to match or show). Unlike `audit_events`, which starts from every leaf, this
-- view starts from the content and keeps its own `seq` and `event_timestamp`, so a query in time
-- order walks the content's indexes in that order (its `correlation_id, event_timestamp, seq`
-- index for one correlation) and stops at the page's end, joining only the leaves it keeps.
-- Its columns are those of `audit_events`; `purged_at` is always NULL. The leaf is joined by
-- `seq` alone (its key; the content's time is the leaf's, as the append writes them): joined
-- on both columns, the planner took each content row to match almost no leaf and sorted a whole
-- correlation before taking its first page.
CREATE VIEW audit_events_present AS
SELECT c.seq, l.event_id, c.event_version, c.event_timestamp, c.event_type, c.event_category,
       c.event_action, c.event_outcome, c.actor_type, c.actor_id, c.resource_type, c.resource_id,
       c.resource_name, c.correlation_id, c.parent_event_id, c.trace_id, c.span_id, c.namespace,
       c.cluster_id, c.severity, c.duration_ms, c.error_code, c.error_message, c.event_data,
       l.retention_days, l.leaf_hash, l.received_at, NULL::timestamptz AS purged_at,
       c.actor_ip, c.parent_event_date, c.is_sensitive, c.record_kind, l.submitted_by,
       l.committed_at
FROM audit_content c
JOIN audit_leaves l ON l.seq = c.seq;
