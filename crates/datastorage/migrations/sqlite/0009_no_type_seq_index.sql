-- As PostgreSQL's migration 0012: no read uses the `(event_type, seq)` index (the typed views
-- read through their partial subject indexes, and SQLite's LIKE, case-blind, uses no plain
-- index anyway); every append paid for it.
DROP INDEX IF EXISTS audit_events_type_seq;
