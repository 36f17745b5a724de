//! The PostgreSQL append: one statement per batch, committed on its own (one round trip), on
//! connections kept outside the pool.
//!
//! The statement numbers the batch's events in input order from the log head and moves the
//! head. Moving the head locks its row until the commit, so concurrent appenders (several
//! writers, several replicas) take turns and `seq` stays gap-free: one that waited for the lock
//! numbers its events from the head the other committed (PostgreSQL re-reads the updated row).
//!
//! A batch is first inserted as [`Insert::Fresh`]: every event is taken to be new, as nearly
//! all are (the server gives an event without an id a new UUIDv7; clients give each event its
//! own). Looking every id up before inserting costs the one database backend that orders the
//! log an index search per event, a window sort and two copies of the batch, which the unique
//! index of `event_id` makes unnecessary: one stored id fails the whole statement, nothing of it
//! is stored, and the batch is inserted once more as [`Insert::Checked`], which inserts only the
//! events whose ids are not stored yet. After such a batch the next [`CHECKED_AFTER_DUPLICATE`]
//! batches are inserted checked straight away, so a burst of retries (a client resending what
//! it spilled, a replay of events whose answers were lost) does not pay for two statements per
//! batch.
//!
//! A checked insert can still meet the unique index: an id another replica stored after the
//! statement looked for it, while it waited for the log head. The writer answers that by
//! committing the batch event by event (and an event that meets the same race again, with a
//! later batch of the other appender, is appended once more). Only when some ids were already
//! stored are those rows read back, after the commit (a stored row never goes away), to tell a
//! duplicate from a conflict.
//!
//! The receipt time is assigned in the statement, under the head's lock (see [`RECEIVED`]): the
//! order of the log is decided there, so the time is too, and it never steps backwards along
//! `seq` however many replicas append.
//!
//! Both statements are prepared, and PostgreSQL soon runs them with a generic plan, made once
//! (possibly while the table was nearly empty) and kept. A plain `NOT EXISTS` or `IN` then became
//! a hash anti-join over a sequential scan of the whole log, on every batch. The checked
//! insert's id lookups are therefore `LATERAL` subqueries with `LIMIT 1`, which the planner
//! cannot flatten into a join: they stay one index lookup per event, whatever the plan.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use audit_model::{EventField, FieldKind, FieldRef};
use uuid::Uuid;

use crate::store::columns::{event_columns, is_content, is_leaf};
use crate::store::PreparedEvent;

/// The `application_name` of the append connections (the pool's is `datastorage`).
pub const APPEND_APPLICATION_NAME: &str = "datastorage-append";

/// An append connection idle longer than this is pinged before use.
const APPEND_IDLE_PING: Duration = Duration::from_secs(5);

/// Batches inserted [`Insert::Checked`] straight away after a fresh insert met a stored id.
const CHECKED_AFTER_DUPLICATE: u32 = 64;

/// How a batch is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Insert {
    /// Every event numbered and inserted; a stored id fails the whole statement.
    Fresh,
    /// Each id looked up first; only the events whose ids are not stored are inserted.
    Checked,
}

/// Connections kept for [`crate::store::EventLog::append`], outside the pool.
///
/// The pool pings a connection when it is handed out and again when it comes back: two extra
/// round trips per batch on the one path whose round trips bound the write rate. The writers
/// keep their own connections instead: one is pinged only after it sat idle, and dropped after
/// any error but a unique violation (a fresh one is opened for the next batch).
pub(super) struct Appenders {
    options: PgConnectOptions,
    idle: std::sync::Mutex<Vec<(PgConnection, Instant)>>,
    /// Batches still to be inserted checked straight away (see [`CHECKED_AFTER_DUPLICATE`]).
    checked_left: AtomicU32,
    /// The months (see [`month_of`]) whose content partition this process made sure of.
    partitions: std::sync::Mutex<HashSet<i32>>,
}

impl Appenders {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        Appenders {
            options,
            idle: std::sync::Mutex::new(Vec::new()),
            checked_left: AtomicU32::new(0),
            partitions: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Inserts `events` on a kept connection, or a new one: fresh, and checked when that met a
    /// stored id (or a fresh insert did so lately).
    pub(super) async fn insert(&self, events: &[PreparedEvent]) -> Result<Assigned, sqlx::Error> {
        let (mut conn, kept) = self.take().await?;
        let how = self.next_insert();
        let mut result = match self.insert_on(&mut conn, how, events).await {
            // A kept connection the server closed meanwhile (restart, failover, a terminated
            // backend): once more on a new one. Safe even if the first attempt did commit: its
            // events are then found stored.
            Err(error) if kept && connection_lost(&error) => {
                tracing::info!(%error, "an append connection was closed by the server; retrying on a new one");
                conn = self.open().await?;
                self.insert_on(&mut conn, how, events).await
            }
            result => result,
        };
        if how == Insert::Fresh && result.as_ref().is_err_and(unique_violation) {
            // Nothing of the statement is stored and the connection is idle again.
            self.met_stored_id();
            result = self.insert_on(&mut conn, Insert::Checked, events).await;
        }
        match result {
            Ok(assigned) => {
                self.lock().push((conn, Instant::now()));
                Ok(assigned)
            }
            Err(error) => {
                // A unique violation leaves the connection idle; after any other error its state
                // is unknown and it is dropped.
                if unique_violation(&error) {
                    self.lock().push((conn, Instant::now()));
                }
                Err(error)
            }
        }
    }

    /// Inserts `events` on `conn` once the content partitions of their months exist.
    async fn insert_on(
        &self,
        conn: &mut PgConnection,
        how: Insert,
        events: &[PreparedEvent],
    ) -> Result<Assigned, sqlx::Error> {
        self.ensure_partitions(conn, events).await?;
        match insert(conn, how, events).await {
            Err(error) if no_partition(&error) => {
                // A partition this process had made sure of is gone (retention dropped its
                // month, maybe on another replica): make sure of them all again.
                tracing::info!(%error, "a content partition is gone; creating it again");
                self.partitions_known().clear();
                self.ensure_partitions(conn, events).await?;
                insert(conn, how, events).await
            }
            result => result,
        }
    }

    /// Creates the content partition of every month of `events` this process has not made
    /// sure of yet (the service also creates them ahead, see
    /// [`super::PostgresStore::prepare_partitions`], so this is rarely more than a lookup).
    async fn ensure_partitions(
        &self,
        conn: &mut PgConnection,
        events: &[PreparedEvent],
    ) -> Result<(), sqlx::Error> {
        let missing: BTreeMap<i32, DateTime<Utc>> = {
            let known = self.partitions_known();
            events
                .iter()
                .map(|p| p.event.event_timestamp())
                .filter(|at| !known.contains(&month_of(*at)))
                .map(|at| (month_of(at), at))
                .collect()
        };
        for (month, at) in missing {
            create_partition(conn, at).await?;
            self.partitions_known().insert(month);
        }
        Ok(())
    }

    fn partitions_known(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        // A set only added to and cleared: a panic cannot leave it inconsistent.
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh insert met a stored id: the next batches are inserted checked.
    fn met_stored_id(&self) {
        self.checked_left
            .store(CHECKED_AFTER_DUPLICATE, Ordering::Relaxed);
    }

    /// How the next batch is inserted.
    fn next_insert(&self) -> Insert {
        let left = self
            .checked_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        match left {
            Ok(_) => Insert::Checked,
            Err(_) => Insert::Fresh,
        }
    }

    /// A kept connection (pinged first if it sat idle for long), or a new one; and whether it
    /// was kept.
    async fn take(&self) -> Result<(PgConnection, bool), sqlx::Error> {
        loop {
            let idle = self.lock().pop();
            match idle {
                Some((conn, since)) if since.elapsed() < APPEND_IDLE_PING => {
                    return Ok((conn, true))
                }
                Some((mut conn, _)) => match conn.ping().await {
                    Ok(()) => return Ok((conn, true)),
                    Err(error) => {
                        tracing::debug!(%error, "an idle append connection is gone; opening another");
                        let _ = conn.close_hard().await;
                    }
                },
                None => return Ok((self.open().await?, false)),
            }
        }
    }

    async fn open(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    /// Closes the kept connections (a new append opens another).
    pub(super) async fn close(&self) {
        let idle = std::mem::take(&mut *self.lock());
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        // The list is only pushed to and popped from: a panic cannot leave it inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether the server closed the connection (so the statement may be sent again on another).
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // SQLSTATE class 08 (connection exception) and 57P (the server shut the session down).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// The month of a time (UTC), counted from year 0: its content partition's key.
fn month_of(at: DateTime<Utc>) -> i32 {
    at.year() * 12 + at.month0() as i32
}

/// Creates the content partition of the month of `at` if it is missing (the database's
/// `audit_content_partition_for`, which several replicas may call at once).
pub(super) async fn create_partition(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT audit_content_partition_for($1)")
        .bind(at)
        .fetch_one(conn)
        .await
}

/// An event whose month has no content partition.
fn no_partition(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23514") && db.message().starts_with("no partition of relation"))
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// What one insert assigned, in one row: the `k`-th inserted event (counting from 1, in input
/// order) has seq `base + k`.
#[derive(sqlx::FromRow)]
pub(super) struct Assigned {
    /// The log head before the insert; `None` when nothing was inserted.
    base: Option<i64>,
    /// The commit time of the inserted events; `None` when nothing was inserted.
    pub(super) committed_at: Option<DateTime<Utc>>,
    /// The input positions (from 1) of the inserted events; `None` when every event was.
    inserted: Option<Vec<i64>>,
}

impl Assigned {
    /// The seq of each of `n` input events, `None` for those not inserted (their ids were stored).
    pub(super) fn seqs(&self, n: usize) -> Vec<Option<i64>> {
        let Some(base) = self.base else {
            return vec![None; n];
        };
        match &self.inserted {
            None => (1..=n as i64).map(|k| Some(base + k)).collect(),
            Some(positions) => {
                let mut seqs = vec![None; n];
                for (k, &position) in positions.iter().enumerate() {
                    if let Some(seq) = seqs.get_mut(position as usize - 1) {
                        *seq = Some(base + k as i64 + 1);
                    }
                }
                seqs
            }
        }
    }
}

/// The batch as column arrays, one per field of the event (`$1`…) and the leaf hashes last;
/// `input` its rows, numbered by `ord`.
fn input() -> &'static str {
    static INPUT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let arrays: Vec<String> = EventField::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| format!("${}::{}[]", i + 1, array_type(f.kind())))
            .chain([format!("${}::bytea[]", EventField::ALL.len() + 1)])
            .collect();
        format!(
            "UNNEST({}) WITH ORDINALITY AS input({}, leaf_hash, ord)",
            arrays.join(", "),
            event_columns()
        )
    });
    &INPUT
}

/// The element type of a field's array parameter (`event_data` travels as prepared JSON text).
fn array_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Uuid => "uuid",
        FieldKind::Text => "text",
        FieldKind::Time => "timestamptz",
        FieldKind::Int64 => "int8",
        FieldKind::Int32 => "int4",
        FieldKind::Object => "text[]::jsonb",
        FieldKind::Bool => "bool",
    }
}

/// `cardinality` of the batch: the event ids' array is the first parameter.
const BATCH_SIZE: &str = "cardinality($1::uuid[])";

/// The leaf's columns but `seq` and `committed_at`, as named in [`input`], and what they are
/// inserted from: the input, with the commit time as the receipt time of an event no writer was
/// attested for. `copy`: only those the content lacks (its copy of the leaf).
fn leaf_columns(copy: bool) -> (String, String) {
    let fields: Vec<EventField> = EventField::ALL
        .iter()
        .copied()
        .filter(|f| is_leaf(*f) && !(copy && in_content(*f)))
        .collect();
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let values: Vec<&str> = fields
        .iter()
        .map(|f| match f {
            EventField::ReceivedAt => "COALESCE(received_at, head.last_received_at)",
            f => f.name(),
        })
        .collect();
    (
        format!("{}, leaf_hash", names.join(", ")),
        format!("{}, leaf_hash", values.join(", ")),
    )
}

/// Whether a field is a column of the content: the content fields, with the partition key
/// (`event_timestamp`) and the expiry (`retention_days`) the retention purge decides by.
fn in_content(field: EventField) -> bool {
    is_content(field)
        || matches!(
            field,
            EventField::EventTimestamp | EventField::RetentionDays
        )
}

/// The content's own columns but `seq`, as named in [`input`].
fn content_columns() -> String {
    let names: Vec<&str> = EventField::ALL
        .iter()
        .filter(|f| in_content(**f))
        .map(|f| f.name())
        .collect();
    names.join(", ")
}

/// The inserts of the leaves and the content of the rows of `rows`, numbered `seq` from the head:
/// the content with its copy of the leaf, from the same values.
fn inserts(rows: &str, seq: &str) -> String {
    let ((leaves, leaf_values), (copy, copy_values)) = (leaf_columns(false), leaf_columns(true));
    let content = content_columns();
    format!(
        "leaves AS ( \
           INSERT INTO audit_leaves (seq, {leaves}, committed_at) \
           SELECT {seq}, {leaf_values}, head.last_received_at FROM {rows} CROSS JOIN head), \
         content AS ( \
           INSERT INTO audit_content (seq, {content}, {copy}, committed_at) \
           SELECT {seq}, {content}, {copy_values}, head.last_received_at \
           FROM {rows} CROSS JOIN head)"
    )
}

/// The commit time, taken under the head's row lock (the `SET` is evaluated on the row version
/// the lock was granted on, after any wait): the database's clock, but never before the last
/// commit time, so that it does not step backwards along `seq` (replicas, clock steps). The
/// head's column keeps its first name, `last_received_at`.
const RECEIVED: &str = "last_received_at = GREATEST(clock_timestamp(), last_received_at)";

/// [`Insert::Fresh`]: the head moves by the batch's size and every event is inserted.
fn fresh_sql() -> String {
    let (input, inserts) = (input(), inserts("input", "head.base + input.ord"));
    format!(
        "WITH input AS (SELECT * FROM {input}), \
         head AS ( \
           UPDATE log_head SET last_seq = last_seq + {BATCH_SIZE}, {RECEIVED} \
           WHERE id = 1 \
           RETURNING last_seq - {BATCH_SIZE} AS base, last_received_at), \
         {inserts} \
         SELECT base, last_received_at AS committed_at, NULL::int8[] AS inserted FROM head"
    )
}

/// [`Insert::Checked`]: only the events whose ids are not stored are numbered and inserted; the
/// head moves by their number (not at all when there are none).
fn checked_sql() -> String {
    let (input, inserts) = (input(), inserts("fresh", "head.base + fresh.n"));
    format!(
        "WITH fresh AS ( \
           SELECT input.*, row_number() OVER (ORDER BY input.ord) AS n \
           FROM {input} \
           LEFT JOIN LATERAL (SELECT l.seq FROM audit_leaves l \
                              WHERE l.event_id = input.event_id LIMIT 1) stored ON true \
           WHERE stored.seq IS NULL), \
         head AS ( \
           UPDATE log_head SET last_seq = last_seq + (SELECT count(*) FROM fresh), {RECEIVED} \
           WHERE id = 1 AND EXISTS (SELECT 1 FROM fresh) \
           RETURNING last_seq - (SELECT count(*) FROM fresh) AS base, last_received_at), \
         {inserts} \
         SELECT (SELECT base FROM head) AS base, \
           (SELECT last_received_at FROM head) AS committed_at, \
           CASE WHEN (SELECT count(*) FROM fresh) = {BATCH_SIZE} THEN NULL \
                ELSE ARRAY(SELECT ord FROM fresh ORDER BY ord) END AS inserted"
    )
}

/// The two statements' text, built once.
fn sql(how: Insert) -> &'static str {
    static FRESH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static CHECKED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match how {
        Insert::Fresh => FRESH.get_or_init(fresh_sql),
        Insert::Checked => CHECKED.get_or_init(checked_sql),
    }
}

/// Inserts the batch `how` says, numbering from the log head in input order, and moves the head;
/// one statement, answered by one row (see [`Assigned`]) rather than a row per event.
async fn insert(
    conn: &mut PgConnection,
    how: Insert,
    events: &[PreparedEvent],
) -> Result<Assigned, sqlx::Error> {
    let mut statement = sqlx::query_as::<_, Assigned>(sql(how));
    for &field in EventField::ALL {
        let values = events.iter().map(|p| p.event.get(field));
        statement = match field.kind() {
            FieldKind::Uuid => statement.bind(values.map(as_uuid).collect::<Vec<_>>()),
            FieldKind::Text => statement.bind(values.map(as_text).collect::<Vec<_>>()),
            FieldKind::Time => statement.bind(values.map(as_time).collect::<Vec<_>>()),
            FieldKind::Int64 => statement.bind(values.map(as_int).collect::<Vec<_>>()),
            FieldKind::Bool => statement.bind(values.map(as_bool).collect::<Vec<_>>()),
            FieldKind::Int32 => statement.bind(
                values
                    .map(|v| as_int(v).and_then(|i| i32::try_from(i).ok()))
                    .collect::<Vec<_>>(),
            ),
            // The event's one object, serialised outside the writer.
            FieldKind::Object => statement.bind(
                events
                    .iter()
                    .map(|p| p.event_data_json.as_str())
                    .collect::<Vec<_>>(),
            ),
        };
    }
    let hashes: Vec<&[u8]> = events.iter().map(|p| &p.leaf_hash.as_bytes()[..]).collect();
    statement.bind(hashes).fetch_one(conn).await
}

fn as_uuid(value: FieldRef<'_>) -> Option<Uuid> {
    match value {
        FieldRef::Uuid(u) => Some(u),
        _ => None,
    }
}

fn as_text(value: FieldRef<'_>) -> Option<&str> {
    match value {
        FieldRef::Text(t) => Some(t),
        _ => None,
    }
}

fn as_time(value: FieldRef<'_>) -> Option<DateTime<Utc>> {
    match value {
        FieldRef::Time(t) => Some(t),
        _ => None,
    }
}

fn as_bool(value: FieldRef<'_>) -> Option<bool> {
    match value {
        FieldRef::Bool(b) => Some(b),
        _ => None,
    }
}

fn as_int(value: FieldRef<'_>) -> Option<i64> {
    match value {
        FieldRef::Int(i) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_after_a_stored_id_are_checked_until_the_streak_ends() {
        let appenders = Appenders::new(PgConnectOptions::new());
        assert_eq!(appenders.next_insert(), Insert::Fresh);
        appenders.met_stored_id();
        let kinds: Vec<Insert> = (0..CHECKED_AFTER_DUPLICATE + 2)
            .map(|_| appenders.next_insert())
            .collect();
        let checked = kinds.iter().filter(|k| **k == Insert::Checked).count();
        assert_eq!(checked, CHECKED_AFTER_DUPLICATE as usize);
        assert!(kinds[..checked].iter().all(|k| *k == Insert::Checked));
        assert_eq!(kinds[checked..], [Insert::Fresh, Insert::Fresh]);
        // Another stored id in the streak starts it again.
        appenders.met_stored_id();
        assert_eq!(appenders.next_insert(), Insert::Checked);
    }

    #[test]
    fn the_batch_arrays_follow_the_event_fields() {
        assert_eq!(
            EventField::ALL[0],
            EventField::EventId,
            "BATCH_SIZE counts $1"
        );
        let input = input();
        assert!(
            input.starts_with("UNNEST($1::uuid[], $2::text[], $3::timestamptz[]"),
            "{input}"
        );
        assert!(
            input.contains(
                "$25::text[]::jsonb[], $26::int4[], $27::bool[], $28::text[], $29::text[], $30::timestamptz[], $31::bytea[])"
            ),
            "{input}"
        );
        assert!(
            input.ends_with(
                "retention_days, is_sensitive, record_kind, submitted_by, received_at, leaf_hash, ord)"
            ),
            "{input}"
        );
    }

    #[test]
    fn the_content_is_inserted_with_its_copy_of_the_leaf_from_the_same_values() {
        let sql = inserts("input", "head.base + input.ord");
        let (leaves, content) = sql.split_once("content AS").unwrap();
        // The leaf and its copy take the receipt time, the writer, the id, the hash and the
        // commit time from the same expressions.
        for value in [
            "event_id",
            "submitted_by",
            "COALESCE(received_at, head.last_received_at)",
            "leaf_hash, head.last_received_at FROM input",
        ] {
            assert!(leaves.contains(value), "{value}: {leaves}");
            assert!(content.contains(value), "{value}: {content}");
        }
        assert!(
            content.contains(
                "retention_days, is_sensitive, record_kind, event_id, submitted_by, received_at, \
                 leaf_hash, committed_at)"
            ),
            "{content}"
        );
        // The content's own columns are not inserted twice.
        assert_eq!(content.matches("event_timestamp").count(), 2, "{content}");
    }
}
