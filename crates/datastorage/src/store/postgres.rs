//! PostgreSQL store: the production log.
//!
//! A batch is appended by one statement, committed on its own (one round trip): it inserts the
//! events whose ids are not stored yet (`UNNEST` of column arrays), numbers them in input order
//! from the log head, and moves the head. Moving the head locks its row until the commit, so
//! concurrent appenders (several writers, several replicas) take turns and `seq` stays gap-free:
//! one that waited for the lock numbers its events from the head the other committed (PostgreSQL
//! re-reads the updated row), and an id the other stored in the meantime fails the unique index,
//! which the writer answers by committing that batch event by event (and an event that meets the
//! same race again, with a later batch of the other appender, is appended once more). Only when
//! some ids were already stored are those rows read back, after the commit (a stored row never
//! goes away), to tell a duplicate from a conflict.
//!
//! Both statements are prepared, and PostgreSQL soon runs them with a generic plan, made once
//! (possibly while the table was nearly empty) and kept. A plain `NOT EXISTS` or `IN` then became a
//! hash anti-join over a sequential scan of the whole log, on every batch. The id lookups are
//! therefore `LATERAL` subqueries with `LIMIT 1`, which the planner cannot flatten into a join:
//! they stay one index lookup per event, whatever the plan.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_model::{AuditEvent, EventOutcome, StoredEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};
use uuid::Uuid;

use super::query::{Bind, COLUMNS};
use super::{
    classify, existing_events, existing_outcome, to_hash, AppendOutcome, CheckpointQuery,
    EventQuery, HoldRequest, LegalHold, LogEntry, LogStore, PlaceHold, PreparedEvent, PurgedEvent,
    RecordQuery, StoreError, StoredCheckpoint, StoredRecord,
};
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;

/// The PostgreSQL audit log.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    appenders: Arc<Appenders>,
}

/// Connections kept for [`LogStore::append`], outside the pool.
///
/// The pool pings a connection when it is handed out and again when it comes back: two extra
/// round trips per batch on the one path whose round trips bound the write rate. The writers
/// keep their own connections instead: one is pinged only after it sat idle, and dropped after
/// any error (a fresh one is opened for the next batch).
struct Appenders {
    options: PgConnectOptions,
    idle: std::sync::Mutex<Vec<(PgConnection, Instant)>>,
}

/// The `application_name` of the append connections (the pool's is `datastorage`).
pub const APPEND_APPLICATION_NAME: &str = "datastorage-append";

/// An append connection idle longer than this is pinged before use.
const APPEND_IDLE_PING: Duration = Duration::from_secs(5);

impl Appenders {
    fn new(options: PgConnectOptions) -> Self {
        Appenders {
            options,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Inserts `events` (see [`insert_new`]) on a kept connection, or a new one.
    async fn insert(
        &self,
        events: &[PreparedEvent],
        received_at: DateTime<Utc>,
    ) -> Result<Assigned, sqlx::Error> {
        let (mut conn, kept) = self.take().await?;
        // After an error a connection is dropped: its state is unknown.
        let rows = match insert_new(&mut conn, events, received_at).await {
            Ok(rows) => rows,
            // A kept connection the server closed meanwhile (restart, failover, a terminated
            // backend): once more on a new one. Safe even if the first attempt did commit: its
            // events are then found stored and answered as duplicates.
            Err(error) if kept && connection_lost(&error) => {
                tracing::info!(%error, "an append connection was closed by the server; retrying on a new one");
                conn = self.open().await?;
                insert_new(&mut conn, events, received_at).await?
            }
            Err(error) => return Err(error),
        };
        self.lock().push((conn, Instant::now()));
        Ok(rows)
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
    async fn close(&self) {
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

impl PostgresStore {
    /// Connects and applies the embedded migrations.
    pub async fn connect(
        url: &str,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?.application_name("datastorage");
        if let Some(password) = password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let store = Self {
            pool,
            appenders: Arc::new(Appenders::new(
                options.application_name(APPEND_APPLICATION_NAME),
            )),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects read-only (every transaction of the session is `READ ONLY`) to a log whose schema
    /// is current, applying nothing: for auditors' tools, which must not write.
    pub async fn connect_read_only(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?
            .application_name("datastorage-audit")
            .options([("default_transaction_read_only", "on")]);
        if let Some(password) = password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let store = Self {
            pool,
            appenders: Arc::new(Appenders::new(options)),
        };
        let migrator = sqlx::migrate!("./migrations/postgres");
        let applied = sqlx::query_scalar(super::APPLIED_MIGRATIONS)
            .fetch_all(&store.pool)
            .await;
        super::check_schema(&migrator, applied)?;
        Ok(store)
    }

    /// Applies the embedded migrations (idempotent; safe with several replicas starting at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl LogStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        let received_at = audit_model::timestamp::truncate(Utc::now());
        // One statement, committed on its own: a single round trip to the database.
        let seqs = self
            .appenders
            .insert(events, received_at)
            .await?
            .seqs(events.len());
        let missing: Vec<Uuid> = events
            .iter()
            .zip(&seqs)
            .filter(|(_, seq)| seq.is_none())
            .map(|(e, _)| e.event.event_id)
            .collect();
        // A stored row never goes away (retention blanks its content, keeping its id and hash),
        // so the ids found stored by the insert are read back after its commit.
        let existing = if missing.is_empty() {
            Vec::new()
        } else {
            sqlx::query(&format!(
                "SELECT e.* FROM unnest($1::uuid[]) AS ids(id) CROSS JOIN LATERAL \
                 (SELECT {COLUMNS} FROM audit_events WHERE event_id = ids.id LIMIT 1) e"
            ))
            .bind(&missing)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()?
        };
        let existing = existing_events(events, existing);
        Ok(classify(events, &existing)
            .into_iter()
            .zip(seqs)
            .map(|((event, found), seq)| match (found, seq) {
                (_, Some(seq)) => AppendOutcome::Created { seq, received_at },
                (Some(stored), None) => existing_outcome(event, stored),
                // Not inserted means its id was stored when the insert ran.
                (None, None) => unreachable!("event neither inserted nor stored"),
            })
            .collect())
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE event_id = $1"
        ))
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_entry).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, binds) = query.to_sql('$');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool).await?.iter().map(decode).collect()
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let (sql, binds) = query.to_sql('$');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_record)
            .collect()
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.appenders.close().await;
        self.pool.close().await;
    }

    async fn place_hold(&self, request: &HoldRequest) -> Result<PlaceHold, StoreError> {
        self.retention_place_hold(request).await
    }

    async fn release_hold(&self, request: &HoldRequest) -> Result<Option<LegalHold>, StoreError> {
        self.retention_release_hold(request).await
    }

    async fn holds(
        &self,
        correlation_id: Option<&str>,
        include_released: bool,
    ) -> Result<Vec<LegalHold>, StoreError> {
        self.retention_holds(correlation_id, include_released).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.retention_purge(now, limit).await
    }

    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        self.retention_count_held(now).await
    }

    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_entry)
        .collect()
    }

    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        self.tree_leaf_hashes(after_seq, limit).await
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        self.tree_nodes(ids).await
    }

    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        self.tree_add_checkpoint(nodes, checkpoint).await
    }

    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.tree_checkpoints(query).await
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

/// What one insert assigned, in one row: the `k`-th inserted event (counting from 1, in input
/// order) has seq `base + k`.
#[derive(sqlx::FromRow)]
struct Assigned {
    /// The log head before the insert; `None` when nothing was inserted.
    base: Option<i64>,
    /// The input positions (from 1) of the inserted events; `None` when every event was.
    inserted: Option<Vec<i64>>,
}

impl Assigned {
    /// The seq of each of `n` input events, `None` for those not inserted (their ids were stored).
    fn seqs(self, n: usize) -> Vec<Option<i64>> {
        let Some(base) = self.base else {
            return vec![None; n];
        };
        match self.inserted {
            None => (1..=n as i64).map(|k| Some(base + k)).collect(),
            Some(positions) => {
                let mut seqs = vec![None; n];
                for (k, position) in positions.into_iter().enumerate() {
                    if let Some(seq) = seqs.get_mut(position as usize - 1) {
                        *seq = Some(base + k as i64 + 1);
                    }
                }
                seqs
            }
        }
    }
}

/// Inserts the events whose ids are not stored yet, numbering them from the log head in input
/// order, and moves the head; one statement, answered by one row (see [`Assigned`]) rather than
/// a row per event.
async fn insert_new(
    conn: &mut PgConnection,
    events: &[PreparedEvent],
    received_at: DateTime<Utc>,
) -> Result<Assigned, sqlx::Error> {
    macro_rules! col {
        ($e:ident => $value:expr) => {
            events
                .iter()
                .map(|p| {
                    let $e = &p.event;
                    $value
                })
                .collect::<Vec<_>>()
        };
    }
    let hashes: Vec<Vec<u8>> = events.iter().map(|p| p.leaf_hash.to_vec()).collect();
    sqlx::query_as::<_, Assigned>(
        "WITH input AS ( \
           SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
             $13::text[], $14::uuid[], $15::text[], $16::text[], $17::text[], $18::text[], \
             $19::text[], $20::int8[], $21::text[], $22::text[], $23::text[]::jsonb[], $24::int4[], \
             $25::bytea[]) WITH ORDINALITY AS t(event_id, event_version, event_timestamp, \
             event_type, event_category, event_action, event_outcome, actor_type, actor_id, \
             resource_type, resource_id, resource_name, correlation_id, parent_event_id, trace_id, \
             span_id, namespace, cluster_id, severity, duration_ms, error_code, error_message, \
             event_data, retention_days, leaf_hash, ord)), \
         fresh AS ( \
           SELECT i.*, row_number() OVER (ORDER BY i.ord) AS n \
           FROM input i \
           LEFT JOIN LATERAL (SELECT e.seq FROM audit_events e \
                              WHERE e.event_id = i.event_id LIMIT 1) stored ON true \
           WHERE stored.seq IS NULL), \
         head AS ( \
           UPDATE log_head SET last_seq = last_seq + (SELECT count(*) FROM fresh) \
           WHERE id = 1 AND EXISTS (SELECT 1 FROM fresh) \
           RETURNING last_seq - (SELECT count(*) FROM fresh) AS base), \
         inserted AS ( \
           INSERT INTO audit_events (seq, event_id, event_version, event_timestamp, event_type, \
             event_category, event_action, event_outcome, actor_type, actor_id, resource_type, \
             resource_id, resource_name, correlation_id, parent_event_id, trace_id, span_id, \
             namespace, cluster_id, severity, duration_ms, error_code, error_message, event_data, \
             retention_days, leaf_hash, received_at) \
           SELECT head.base + n, event_id, event_version, event_timestamp, event_type, \
             event_category, event_action, event_outcome, actor_type, actor_id, resource_type, \
             resource_id, resource_name, correlation_id, parent_event_id, trace_id, span_id, \
             namespace, cluster_id, severity, duration_ms, error_code, error_message, event_data, \
             retention_days, leaf_hash, $26 FROM fresh CROSS JOIN head) \
         SELECT (SELECT base FROM head) AS base, \
           CASE WHEN (SELECT count(*) FROM fresh) = cardinality($1::uuid[]) THEN NULL \
                ELSE ARRAY(SELECT ord FROM fresh ORDER BY ord) END AS inserted",
    )
    .bind(col!(e => e.event_id))
    .bind(col!(e => e.event_version.as_str()))
    .bind(col!(e => e.event_timestamp))
    .bind(col!(e => e.event_type.as_str()))
    .bind(col!(e => e.event_category.as_str()))
    .bind(col!(e => e.event_action.as_str()))
    .bind(col!(e => e.event_outcome.as_str()))
    .bind(col!(e => e.actor_type.as_str()))
    .bind(col!(e => e.actor_id.as_str()))
    .bind(col!(e => e.resource_type.as_str()))
    .bind(col!(e => e.resource_id.as_str()))
    .bind(col!(e => e.resource_name.as_deref()))
    .bind(col!(e => e.correlation_id.as_str()))
    .bind(col!(e => e.parent_event_id))
    .bind(col!(e => e.trace_id.as_deref()))
    .bind(col!(e => e.span_id.as_deref()))
    .bind(col!(e => e.namespace.as_deref()))
    .bind(col!(e => e.cluster_id.as_deref()))
    .bind(col!(e => e.severity.as_deref()))
    .bind(col!(e => e.duration_ms))
    .bind(col!(e => e.error_code.as_deref()))
    .bind(col!(e => e.error_message.as_deref()))
    .bind(events.iter().map(|p| p.event_data_json.as_str()).collect::<Vec<_>>())
    .bind(col!(e => e.retention_days))
    .bind(&hashes)
    .bind(received_at)
    .fetch_one(conn)
    .await
}

fn decode_entry(row: &PgRow) -> Result<LogEntry, StoreError> {
    let purged_at: Option<DateTime<Utc>> = row.try_get("purged_at")?;
    let Some(purged_at) = purged_at else {
        return decode(row).map(|e| LogEntry::Event(Box::new(e)));
    };
    Ok(LogEntry::Purged(PurgedEvent {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        leaf_hash: to_hash(row.try_get("leaf_hash")?)?,
        event_timestamp: row.try_get("event_timestamp")?,
        retention_days: row.try_get("retention_days")?,
        received_at: row.try_get("received_at")?,
        purged_at,
    }))
}

fn decode(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let outcome: String = row.try_get("event_outcome")?;
    let data: Value = row.try_get("event_data")?;
    let hash: Vec<u8> = row.try_get("leaf_hash")?;
    let Value::Object(event_data) = data else {
        return Err(StoreError::Corrupt("event_data is not an object".into()));
    };
    Ok(StoredEvent {
        event: AuditEvent {
            event_id: row.try_get("event_id")?,
            event_version: row.try_get("event_version")?,
            event_timestamp: row.try_get("event_timestamp")?,
            event_type: row.try_get("event_type")?,
            event_category: row.try_get("event_category")?,
            event_action: row.try_get("event_action")?,
            event_outcome: EventOutcome::from_str_exact(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("event_outcome {outcome:?}")))?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            resource_type: row.try_get("resource_type")?,
            resource_id: row.try_get("resource_id")?,
            resource_name: row.try_get("resource_name")?,
            correlation_id: row.try_get("correlation_id")?,
            parent_event_id: row.try_get("parent_event_id")?,
            trace_id: row.try_get("trace_id")?,
            span_id: row.try_get("span_id")?,
            namespace: row.try_get("namespace")?,
            cluster_id: row.try_get("cluster_id")?,
            severity: row.try_get("severity")?,
            duration_ms: row.try_get("duration_ms")?,
            error_code: row.try_get("error_code")?,
            error_message: row.try_get("error_message")?,
            event_data,
            retention_days: row.try_get("retention_days")?,
        },
        seq: row.try_get("seq")?,
        leaf_hash: hex::encode(hash),
        received_at: row.try_get("received_at")?,
    })
}

fn decode_record(row: &PgRow) -> Result<StoredRecord, StoreError> {
    let data: Value = row.try_get("event_data")?;
    let Value::Object(record) = data else {
        return Err(StoreError::Corrupt("event_data is not an object".into()));
    };
    Ok(StoredRecord {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        record,
        received_at: row.try_get("received_at")?,
    })
}

/// The query with its placeholders bound.
fn bound<'q>(
    sql: &'q str,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query::<Postgres>(sql);
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Time(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}
