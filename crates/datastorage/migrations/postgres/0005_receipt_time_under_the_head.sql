-- The receipt time is assigned where the order is decided.
--
-- Until now each replica stamped `received_at` from its own clock before its batch took the log
-- head, so two replicas' batches interleaved in `seq` with receipt times that stepped backwards.
-- From now on the append statement takes the time under the head's row lock, as
-- GREATEST(clock_timestamp(), last_received_at), and keeps it here: along `seq` the receipt
-- time never steps backwards, whatever the number of replicas or the skew of their clocks.
--
-- `received_in_order_from` is the first seq appended this way. The verifier takes a backward
-- step before it as how the log was written, not as a reordering (the tree proves those rows'
-- order).
ALTER TABLE log_head
    ADD COLUMN last_received_at TIMESTAMPTZ,
    ADD COLUMN received_in_order_from BIGINT NOT NULL DEFAULT 1;
UPDATE log_head
SET last_received_at = (SELECT max(received_at) FROM audit_events),
    received_in_order_from = last_seq + 1
WHERE id = 1;
