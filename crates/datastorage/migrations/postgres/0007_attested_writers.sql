-- Who wrote each event, and when it was received, become part of what is signed.
--
-- `submitted_by` is the principal Data Storage authenticated for the request that brought the
-- event (`anonymous` where authentication is disabled). `received_at` keeps its name and becomes
-- the time that request was received: on an event with `submitted_by` both are in the event's
-- canonical form, so its leaf hash covers them. An event held in the dead-letter queue keeps
-- both until it is stored.
--
-- The time the log committed the event, under the head's lock (never stepping back along
-- `seq`), moves to `committed_at`; the verifier checks order and coverage with it. The rows
-- stored before have neither new column: their `received_at` was their commit time and stays
-- outside their leaf (the canonical form leaves `received_at` out when `submitted_by` is
-- absent), so every stored proof holds. Reads take `committed_at`, or `received_at` where it is
-- NULL.
ALTER TABLE audit_events
    ADD COLUMN submitted_by VARCHAR(255),
    ADD COLUMN committed_at TIMESTAMPTZ;

CREATE INDEX audit_events_submitted_by ON audit_events (submitted_by, seq)
    WHERE submitted_by IS NOT NULL;

-- The purge keeps the attestation and the commit time with the leaf hash.
CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
       AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id AND NEW.leaf_hash = OLD.leaf_hash
       AND NEW.event_timestamp = OLD.event_timestamp
       AND NEW.retention_days = OLD.retention_days AND NEW.received_at = OLD.received_at
       AND NEW.submitted_by IS NOT DISTINCT FROM OLD.submitted_by
       AND NEW.committed_at IS NOT DISTINCT FROM OLD.committed_at
       AND OLD.event_timestamp + make_interval(days => OLD.retention_days) <= now()
       AND NEW.purged_at BETWEEN OLD.event_timestamp + make_interval(days => OLD.retention_days)
                             AND now() + interval '5 minutes'
       AND NOT EXISTS (SELECT 1 FROM legal_holds h
                       WHERE h.correlation_id = OLD.correlation_id AND h.released_at IS NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'stored audit events cannot be changed or deleted; only the retention purge '
                     'may blank an expired event that is not under legal hold';
END;
$$;
