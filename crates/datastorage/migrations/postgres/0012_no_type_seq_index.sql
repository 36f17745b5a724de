-- The `(event_type text_pattern_ops, seq)` index was made for the typed views' prefix filters,
-- which read their rows through their partial subject indexes instead (their predicates are the
-- views' own); no other read filters `event_type` by prefix (equality is served by
-- `(event_type, event_timestamp)`). It cost every append an index insert and about 73 bytes per
-- event on disk, and an un-analysed planner once chose it for reads by `seq`
-- (docs/operations.md).
DROP INDEX IF EXISTS audit_events_type_seq;
