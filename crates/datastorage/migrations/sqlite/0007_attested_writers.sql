-- Who wrote each event, and when it was received, become part of what is signed (see the
-- PostgreSQL migration of the same name): `submitted_by` the authenticated principal,
-- `received_at` the time its request was received (both in the canonical form of an event with
-- `submitted_by`), `committed_at` the commit time taken under the write lock (NULL on the rows
-- stored before, whose `received_at` was their commit time and stays outside their leaf).
ALTER TABLE audit_events ADD COLUMN submitted_by TEXT;
ALTER TABLE audit_events ADD COLUMN committed_at TEXT;

CREATE INDEX audit_events_submitted_by ON audit_events (submitted_by, seq)
    WHERE submitted_by IS NOT NULL;

-- The purge keeps the attestation and the commit time with the leaf hash.
DROP TRIGGER audit_events_no_update;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN NOT (OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
          AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id
          AND NEW.leaf_hash = OLD.leaf_hash AND NEW.event_timestamp = OLD.event_timestamp
          AND NEW.retention_days = OLD.retention_days AND NEW.received_at = OLD.received_at
          AND NEW.submitted_by IS OLD.submitted_by AND NEW.committed_at IS OLD.committed_at
          AND julianday(OLD.event_timestamp) + OLD.retention_days <= julianday('now')
          AND julianday(NEW.purged_at) >= julianday(OLD.event_timestamp) + OLD.retention_days
          AND julianday(NEW.purged_at) <= julianday('now', '+5 minutes')
          AND NOT EXISTS (SELECT 1 FROM legal_holds h
                          WHERE h.correlation_id = OLD.correlation_id
                            AND h.released_at IS NULL))
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;
