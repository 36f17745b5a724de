//! SQLite store: the embedded default, a WAL-mode file under the data directory.
//!
//! A batch is appended in one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock at
//! once, so the head read and the inserts cannot interleave with another writer. `synchronous =
//! FULL`: a commit is on disk before the writer answers.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use audit_model::{AuditEvent, EventOutcome, StoredEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::query::{Bind, COLUMNS};
use super::{
    classify, existing_events, existing_outcome, to_hash, AppendOutcome, CheckpointQuery,
    EventQuery, HoldRequest, LegalHold, LogEntry, LogStore, PlaceHold, PreparedEvent, PurgedEvent,
    RecordQuery, StoreError, StoredCheckpoint, StoredRecord,
};
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::timestamp;

/// Rows per INSERT statement (27 placeholders each stays below SQLite's variable limit).
const ROWS_PER_INSERT: usize = 1000;

/// The SQLite audit log.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and applies the embedded migrations.
    pub async fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens an existing database file read-only, applying nothing: for auditors' tools.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let applied = sqlx::query_scalar(super::APPLIED_MIGRATIONS)
            .fetch_all(&pool)
            .await;
        super::check_schema(&sqlx::migrate!("./migrations/sqlite"), applied)?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut existing = Vec::new();
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {COLUMNS} FROM audit_events WHERE event_id IN ("
            ));
            let mut ids = q.separated(", ");
            for e in chunk {
                ids.push_bind(e.event.event_id.to_string());
            }
            q.push(")");
            for row in q.build().persistent(false).fetch_all(&mut *tx).await? {
                existing.push(decode_entry(&row)?);
            }
        }
        let existing = existing_events(events, existing);
        let (head, last_received): (i64, Option<String>) =
            sqlx::query_as("SELECT last_seq, last_received_at FROM log_head WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        // The receipt time is taken here, under the write lock that decides the order: never
        // before the last one, so it does not step backwards along `seq` (several processes on
        // one file, a clock stepped back).
        let now = timestamp::truncate(Utc::now());
        let received_at = match last_received.as_deref().map(timestamp::parse) {
            Some(Ok(last)) => now.max(last),
            Some(Err(e)) => {
                return Err(StoreError::Corrupt(format!(
                    "log_head.last_received_at is not a time: {e}"
                )))
            }
            None => now,
        };
        let mut next_seq = head;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        for (event, found) in classify(events, &existing) {
            match found {
                Some(stored) => outcomes.push(existing_outcome(event, stored)),
                None => {
                    next_seq += 1;
                    fresh.push((next_seq, event));
                    outcomes.push(AppendOutcome::Created {
                        seq: next_seq,
                        received_at,
                    });
                }
            }
        }
        for chunk in fresh.chunks(ROWS_PER_INSERT) {
            insert(&mut tx, chunk, received_at).await?;
        }
        if !fresh.is_empty() {
            sqlx::query("UPDATE log_head SET last_seq = ?1, last_received_at = ?2 WHERE id = 1")
                .bind(next_seq)
                .bind(timestamp::format(&received_at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE event_id = ?1"
        ))
        .bind(event_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_entry).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, binds) = query.to_sql('?');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool).await?.iter().map(decode).collect()
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let (sql, binds) = query.to_sql('?');
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

    async fn received_in_order_from(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT received_in_order_from FROM log_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
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
            "SELECT {COLUMNS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
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

async fn insert(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[(i64, &PreparedEvent)],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let received_at = timestamp::format(&received_at);
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO audit_events (seq, event_id, event_version, event_timestamp, event_type, \
         event_category, event_action, event_outcome, actor_type, actor_id, resource_type, \
         resource_id, resource_name, correlation_id, parent_event_id, trace_id, span_id, namespace, \
         cluster_id, severity, duration_ms, error_code, error_message, event_data, retention_days, \
         leaf_hash, received_at) ",
    );
    q.push_values(rows, |mut b, (seq, p)| {
        let e: &AuditEvent = &p.event;
        b.push_bind(*seq)
            .push_bind(e.event_id.to_string())
            .push_bind(e.event_version.clone())
            .push_bind(timestamp::format(&e.event_timestamp))
            .push_bind(e.event_type.clone())
            .push_bind(e.event_category.clone())
            .push_bind(e.event_action.clone())
            .push_bind(e.event_outcome.as_str())
            .push_bind(e.actor_type.clone())
            .push_bind(e.actor_id.clone())
            .push_bind(e.resource_type.clone())
            .push_bind(e.resource_id.clone())
            .push_bind(e.resource_name.clone())
            .push_bind(e.correlation_id.clone())
            .push_bind(e.parent_event_id.map(|u| u.to_string()))
            .push_bind(e.trace_id.clone())
            .push_bind(e.span_id.clone())
            .push_bind(e.namespace.clone())
            .push_bind(e.cluster_id.clone())
            .push_bind(e.severity.clone())
            .push_bind(e.duration_ms)
            .push_bind(e.error_code.clone())
            .push_bind(e.error_message.clone())
            .push_bind(p.event_data_json.as_str())
            .push_bind(e.retention_days)
            .push_bind(p.leaf_hash.to_vec())
            .push_bind(received_at.clone());
    });
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

pub(super) fn text_time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let text: String = row.try_get(column)?;
    timestamp::parse(&text).map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}

fn text_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("uuid {text:?}: {e}")))
}

fn decode_entry(row: &SqliteRow) -> Result<LogEntry, StoreError> {
    let purged_at: Option<String> = row.try_get("purged_at")?;
    if purged_at.is_none() {
        return decode(row).map(|e| LogEntry::Event(Box::new(e)));
    }
    let event_id: String = row.try_get("event_id")?;
    Ok(LogEntry::Purged(PurgedEvent {
        seq: row.try_get("seq")?,
        event_id: text_uuid(&event_id)?,
        leaf_hash: to_hash(row.try_get("leaf_hash")?)?,
        event_timestamp: text_time(row, "event_timestamp")?,
        retention_days: row.try_get("retention_days")?,
        received_at: text_time(row, "received_at")?,
        purged_at: text_time(row, "purged_at")?,
    }))
}

fn decode(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let outcome: String = row.try_get("event_outcome")?;
    let data: String = row.try_get("event_data")?;
    let hash: Vec<u8> = row.try_get("leaf_hash")?;
    let event_id: String = row.try_get("event_id")?;
    let parent: Option<String> = row.try_get("parent_event_id")?;
    let Ok(Value::Object(event_data)) = serde_json::from_str::<Value>(&data) else {
        return Err(StoreError::Corrupt(
            "event_data is not a JSON object".into(),
        ));
    };
    Ok(StoredEvent {
        event: AuditEvent {
            event_id: text_uuid(&event_id)?,
            event_version: row.try_get("event_version")?,
            event_timestamp: text_time(row, "event_timestamp")?,
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
            parent_event_id: parent.as_deref().map(text_uuid).transpose()?,
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
        received_at: text_time(row, "received_at")?,
    })
}

fn decode_record(row: &SqliteRow) -> Result<StoredRecord, StoreError> {
    let data: String = row.try_get("event_data")?;
    let Ok(Value::Object(record)) = serde_json::from_str::<Value>(&data) else {
        return Err(StoreError::Corrupt(
            "event_data is not a JSON object".into(),
        ));
    };
    let event_id: String = row.try_get("event_id")?;
    Ok(StoredRecord {
        seq: row.try_get("seq")?,
        event_id: text_uuid(&event_id)?,
        record,
        received_at: text_time(row, "received_at")?,
    })
}

/// The query with its placeholders bound.
fn bound<'q>(
    sql: &'q str,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let mut q = sqlx::query::<Sqlite>(sql);
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Time(t) => q.bind(timestamp::format(&t)),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}
