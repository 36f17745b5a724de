-- The receipt time is assigned where the order is decided: by the appender holding the write
-- lock (BEGIN IMMEDIATE), as the later of its clock and the last receipt time kept here, so that
-- along `seq` it never steps backwards, even with several processes on one database file.
-- Receipt times are RFC 3339 UTC text of fixed width, so their text order is their time order.
--
-- `received_in_order_from` is the first seq appended this way (see the PostgreSQL migration).
ALTER TABLE log_head ADD COLUMN last_received_at TEXT;
ALTER TABLE log_head ADD COLUMN received_in_order_from INTEGER NOT NULL DEFAULT 1;
UPDATE log_head
SET last_received_at = (SELECT max(received_at) FROM audit_events),
    received_in_order_from = last_seq + 1
WHERE id = 1;
