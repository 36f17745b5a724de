-- Retention and legal hold.
--
-- The retention purge blanks an expired event's content in place and marks it `purged_at`. The
-- row keeps what the Merkle tree and the verifier need: seq, event_id, leaf_hash, received_at,
-- and event_timestamp with retention_days (so anyone can check that the purge came after expiry).
-- Every other change to a stored event is still refused, by the trigger below, and no event of a
-- correlation under an active legal hold can be purged, whoever asks.

ALTER TABLE audit_events
    ALTER COLUMN event_version DROP NOT NULL,
    ALTER COLUMN event_type DROP NOT NULL,
    ALTER COLUMN event_category DROP NOT NULL,
    ALTER COLUMN event_action DROP NOT NULL,
    ALTER COLUMN event_outcome DROP NOT NULL,
    ALTER COLUMN actor_type DROP NOT NULL,
    ALTER COLUMN actor_id DROP NOT NULL,
    ALTER COLUMN resource_type DROP NOT NULL,
    ALTER COLUMN resource_id DROP NOT NULL,
    ALTER COLUMN correlation_id DROP NOT NULL,
    ALTER COLUMN event_data DROP NOT NULL,
    ADD COLUMN purged_at TIMESTAMPTZ,
    ADD CONSTRAINT audit_events_content_or_purged CHECK (
        CASE WHEN purged_at IS NULL THEN
            event_version IS NOT NULL AND event_type IS NOT NULL AND event_category IS NOT NULL
            AND event_action IS NOT NULL AND event_outcome IS NOT NULL AND actor_type IS NOT NULL
            AND actor_id IS NOT NULL AND resource_type IS NOT NULL AND resource_id IS NOT NULL
            AND correlation_id IS NOT NULL AND event_data IS NOT NULL
        ELSE
            num_nonnulls(event_version, event_type, event_category, event_action, event_outcome,
                actor_type, actor_id, resource_type, resource_id, resource_name, correlation_id,
                parent_event_id, trace_id, span_id, namespace, cluster_id, severity, duration_ms,
                error_code, error_message, event_data) = 0
        END);

-- One active hold per correlation; released holds stay as history.
CREATE TABLE legal_holds (
    id             BIGSERIAL    PRIMARY KEY,
    correlation_id VARCHAR(255) NOT NULL,
    reason         TEXT         NOT NULL,
    placed_by      VARCHAR(255) NOT NULL,
    placed_at      TIMESTAMPTZ  NOT NULL,
    released_at    TIMESTAMPTZ,
    release_reason TEXT,
    released_by    VARCHAR(255),
    CHECK ((released_at IS NULL) = (release_reason IS NULL)
           AND (released_at IS NULL) = (released_by IS NULL))
);
CREATE UNIQUE INDEX legal_holds_active ON legal_holds (correlation_id) WHERE released_at IS NULL;

CREATE FUNCTION legal_holds_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.released_at IS NULL AND NEW.released_at IS NOT NULL
       AND NEW.id = OLD.id AND NEW.correlation_id = OLD.correlation_id
       AND NEW.reason = OLD.reason AND NEW.placed_by = OLD.placed_by
       AND NEW.placed_at = OLD.placed_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'legal_holds keeps its history: % refused (a hold can only be released)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER legal_holds_history BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION legal_holds_guard();

-- Stored events stay unchangeable, except for the purge of an expired event not under hold.
CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL
       AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id AND NEW.leaf_hash = OLD.leaf_hash
       AND NEW.event_timestamp = OLD.event_timestamp
       AND NEW.retention_days = OLD.retention_days AND NEW.received_at = OLD.received_at
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
