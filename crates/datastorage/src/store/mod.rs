//! The audit log's storage: one trait, two real implementations (PostgreSQL and SQLite).
//!
//! Invariants every store keeps, checked by the shared conformance tests:
//! * `append` runs in one transaction: all of a batch is stored, or none of it.
//! * `seq` is assigned inside that transaction from the log head, so it is gap-free and strictly
//!   increasing in commit order, also with several writers (PostgreSQL takes a transaction-scoped
//!   advisory lock on the log head; SQLite has one writer by nature).
//! * An `event_id` already stored answers `Duplicate` when the leaf hash matches, `Conflict`
//!   otherwise; nothing is overwritten. Triggers refuse UPDATE and DELETE of stored events.

mod postgres;
mod query;
mod sqlite;
mod tree_postgres;
mod tree_sqlite;

use std::collections::HashMap;

use async_trait::async_trait;
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::{AuditEvent, StoredEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use query::{Cursor, EventFilter, EventQuery, Order, RecordQuery};
pub use sqlite::SqliteStore;

use crate::config::DatabaseTarget;

/// An event ready to append: parsed, with its leaf hash computed outside the writer.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event: AuditEvent,
    pub leaf_hash: [u8; 32],
}

impl PreparedEvent {
    pub fn new(event: AuditEvent) -> Self {
        let leaf_hash = event.leaf_hash();
        Self { event, leaf_hash }
    }

    /// The stored form this event takes at `seq`.
    pub fn stored(&self, seq: i64, received_at: DateTime<Utc>) -> StoredEvent {
        StoredEvent {
            event: self.event.clone(),
            seq,
            leaf_hash: hex::encode(self.leaf_hash),
            received_at,
        }
    }
}

/// A hash column's bytes as a hash (anything but 32 bytes is corruption).
fn to_hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

/// A signed tree head as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub root_hash: Hash,
    pub signed_at: DateTime<Utc>,
    pub origin: String,
    pub key_id: String,
    /// The C2SP signed note, as published.
    pub note: String,
}

/// Which checkpoints to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointQuery {
    /// The largest.
    Latest,
    /// The one of exactly this tree size.
    Size(i64),
    /// The smallest one whose tree size is at least this.
    Covering(i64),
    /// Signed at or after `since` (when given), tree size above `after_size`, ascending.
    Page {
        since: Option<DateTime<Utc>>,
        after_size: i64,
        limit: i64,
    },
}

/// What appending one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Stored now, at this seq.
    Created(StoredEvent),
    /// The identical event was already stored.
    Duplicate(StoredEvent),
    /// The `event_id` is stored with different content (the stored event is given).
    Conflict(StoredEvent),
}

/// A typed record as stored: the record (`event_data`) and what the log assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub seq: i64,
    pub event_id: Uuid,
    pub record: serde_json::Map<String, serde_json::Value>,
    pub received_at: DateTime<Utc>,
}

/// Store failures. None of them is the data's fault: validation happens before the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot prepare the data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the same data would fail again (a constraint or data exception), as opposed to a
    /// failure of the database or the way to it, after which the data may be stored later.
    pub fn is_data_error(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        if !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
            return true; // unique, foreign key, not-null or check violation
        }
        if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // SQLSTATE class 22: data exception.
            return pg.code().starts_with("22");
        }
        // SQLite primary result codes: 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH, 25 RANGE.
        db.code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|n| matches!(n & 0xff, 18 | 19 | 20 | 25))
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Database(sqlx::Error::PoolTimedOut) => "pool_timeout",
            StoreError::Database(sqlx::Error::Io(_)) => "connection",
            StoreError::Database(sqlx::Error::PoolClosed) => "pool_closed",
            StoreError::Database(sqlx::Error::Database(_)) if self.is_data_error() => "data",
            StoreError::Database(sqlx::Error::Database(_)) => "database",
            StoreError::Database(_) => "driver",
            StoreError::Migrate(_) => "migration",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Io(_) => "io",
        }
    }
}

/// The audit log.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Appends events with distinct `event_id`s in one transaction, answering in input order.
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError>;
    /// The stored event with this id.
    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;
    /// Events matching the query, at most `limit` of them, in the query's order.
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// Typed records matching the query, in `id` order.
    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError>;
    /// Number of stored events.
    async fn count(&self) -> Result<i64, StoreError>;
    /// Answers when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Up to `limit` stored events after `after_seq`, in seq order (the verifier's scan).
    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError>;
    /// Up to `limit` leaf hashes after `after_seq`, as `(seq, leaf hash)` in seq order.
    async fn leaf_hashes(&self, after_seq: i64, limit: i64)
        -> Result<Vec<(i64, Hash)>, StoreError>;
    /// The stored hashes of these tree nodes (level 0: the leaf hash at seq `index + 1`);
    /// nodes not stored are absent from the answer.
    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError>;
    /// Stores new tree nodes and the checkpoint over them in one transaction. Nodes already
    /// stored are kept (they are deterministic); `false` when a checkpoint of that size exists.
    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError>;
    /// Checkpoints matching the query.
    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// Closes the connections.
    async fn close(&self);
}

/// Connects to the configured store and applies its migrations.
pub async fn connect(
    target: &DatabaseTarget,
    max_connections: u32,
) -> Result<std::sync::Arc<dyn LogStore>, StoreError> {
    Ok(match target {
        DatabaseTarget::Postgres { url, password } => std::sync::Arc::new(
            PostgresStore::connect(url, password.as_deref(), max_connections).await?,
        ),
        DatabaseTarget::Sqlite { path } => {
            std::sync::Arc::new(SqliteStore::open(path, max_connections).await?)
        }
    })
}

/// Splits a batch into the events that are new and those whose ids are already stored.
/// Returns, per input, either the existing stored event or `None` (new).
fn classify<'a>(
    events: &'a [PreparedEvent],
    existing: &[StoredEvent],
) -> Vec<(&'a PreparedEvent, Option<StoredEvent>)> {
    events
        .iter()
        .map(|e| {
            let found = existing
                .iter()
                .find(|s| s.event.event_id == e.event.event_id)
                .cloned();
            (e, found)
        })
        .collect()
}

/// Outcome of an input whose id was already stored.
fn existing_outcome(event: &PreparedEvent, stored: StoredEvent) -> AppendOutcome {
    if stored.leaf_hash == hex::encode(event.leaf_hash) {
        AppendOutcome::Duplicate(stored)
    } else {
        AppendOutcome::Conflict(stored)
    }
}
