//! PostgreSQL store: the production log.
//!
//! Appends go through [`super::append_postgres`] (one statement per batch, on connections kept
//! outside the pool); everything else uses the pool.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use audit_model::{AuditEvent, EventOutcome, StoredEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::append_postgres::{Appenders, APPEND_APPLICATION_NAME};
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
        // One statement, committed on its own: a single round trip to the database. It assigns
        // the seqs and the receipt time, both under the log head.
        let assigned = self.appenders.insert(events).await?;
        let seqs = assigned.seqs(events.len());
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
                (_, Some(seq)) => AppendOutcome::Created {
                    seq,
                    received_at: assigned
                        .received_at
                        .expect("an insert that assigned seqs assigned a receipt time"),
                },
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
