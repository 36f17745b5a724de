//! The audit log's storage: one trait, two real implementations (PostgreSQL and SQLite).
//!
//! Invariants every store keeps, checked by the shared conformance tests:
//! * `append` runs in one transaction: all of a batch is stored, or none of it.
//! * `seq` is assigned inside that transaction from the log head, so it is gap-free and strictly
//!   increasing in commit order, also with several writers (PostgreSQL holds the log head's row
//!   lock from moving the head to the commit; SQLite has one writer by nature).
//! * An `event_id` already stored answers `Duplicate` when the leaf hash matches, `Conflict`
//!   otherwise; nothing is overwritten. Triggers refuse UPDATE and DELETE of stored events.

mod append_postgres;
mod postgres;
mod query;
mod retention_postgres;
mod retention_sqlite;
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

pub use append_postgres::APPEND_APPLICATION_NAME;
pub use postgres::PostgresStore;
pub use query::{Cursor, EventFilter, EventQuery, Order, RecordQuery};
pub use sqlite::SqliteStore;

use crate::config::DatabaseTarget;

/// An event ready to append: parsed, with its leaf hash and its `event_data` as JSON text
/// computed outside the writer (request handlers run in parallel; the writer orders the log
/// alone, so every microsecond it spends per event bounds the write rate).
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event: AuditEvent,
    pub leaf_hash: [u8; 32],
    /// `event.event_data` as JSON text, as the stores take it.
    pub event_data_json: String,
}

impl PreparedEvent {
    pub fn new(event: AuditEvent) -> Self {
        let leaf_hash = event.leaf_hash();
        // A map with string keys always serializes; the fallback is never taken.
        let event_data_json = serde_json::to_string(&event.event_data).unwrap_or_default();
        Self {
            event,
            leaf_hash,
            event_data_json,
        }
    }

    /// The stored form this event takes at `seq` (moved, not copied: the writer answers every
    /// event of a batch this way, on the one path that orders the log).
    pub fn into_stored(self, seq: i64, received_at: DateTime<Utc>) -> StoredEvent {
        StoredEvent {
            event: self.event,
            seq,
            leaf_hash: hex::encode(self.leaf_hash),
            received_at,
        }
    }
}

/// A position of the log whose content the retention purge removed. What stays is what the
/// tree and the verifier need, and what shows that the purge came after expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub leaf_hash: Hash,
    pub event_timestamp: DateTime<Utc>,
    pub retention_days: i32,
    pub received_at: DateTime<Utc>,
    pub purged_at: DateTime<Utc>,
}

impl PurgedEvent {
    /// When the event's retention ended.
    pub fn expired_at(&self) -> DateTime<Utc> {
        self.event_timestamp + chrono::Duration::days(i64::from(self.retention_days))
    }
}

/// One row of the log: an event, or what the retention purge left of one.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    Event(Box<StoredEvent>),
    Purged(PurgedEvent),
}

impl LogEntry {
    pub fn seq(&self) -> i64 {
        match self {
            LogEntry::Event(e) => e.seq,
            LogEntry::Purged(p) => p.seq,
        }
    }
}

/// A legal hold on a correlation: while active, none of its events is purged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LegalHold {
    pub id: i64,
    pub correlation_id: String,
    pub reason: String,
    pub placed_by: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: DateTime<Utc>,
    #[serde(with = "audit_model::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<DateTime<Utc>>,
    pub release_reason: Option<String>,
    pub released_by: Option<String>,
}

/// What placing a hold did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceHold {
    Placed(LegalHold),
    /// The correlation was already under this active hold.
    AlreadyHeld(LegalHold),
}

/// A hold being placed or released: who and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    pub correlation_id: String,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The existing events with ids being appended, as stored events. A purged event matches an
/// incoming one exactly when the leaf hashes match (then its content was the incoming one);
/// otherwise it is a conflict whose stored content is gone.
fn existing_events(events: &[PreparedEvent], entries: Vec<LogEntry>) -> Vec<StoredEvent> {
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            LogEntry::Event(e) => Some(*e),
            LogEntry::Purged(p) => {
                let incoming = events.iter().find(|e| e.event.event_id == p.event_id)?;
                let mut event = incoming.event.clone();
                if incoming.leaf_hash != p.leaf_hash {
                    event.event_data = serde_json::Map::new();
                }
                Some(StoredEvent {
                    event,
                    seq: p.seq,
                    leaf_hash: hex::encode(p.leaf_hash),
                    received_at: p.received_at,
                })
            }
        })
        .collect()
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
    /// Stored now, at this seq (the event as given, see [`PreparedEvent::into_stored`]).
    Created {
        seq: i64,
        received_at: DateTime<Utc>,
    },
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
    #[error("{0}")]
    Schema(String),
}

impl StoreError {
    /// Whether the database refused an insert because a row with the same unique key exists (for
    /// the log: the `event_id`, stored by another replica since the statement began).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation))
    }

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
            StoreError::Schema(_) => "schema",
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
    /// The stored event with this id (or what the retention purge left of it).
    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError>;
    /// Events matching the query, at most `limit` of them, in the query's order.
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// Typed records matching the query, in `id` order.
    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError>;
    /// Number of stored events.
    async fn count(&self) -> Result<i64, StoreError>;
    /// The first seq whose receipt time was taken under the log head: from there on it never
    /// steps backwards along `seq` (rows before it may, when several replicas wrote them).
    async fn received_in_order_from(&self) -> Result<i64, StoreError>;
    /// Answers when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Up to `limit` rows after `after_seq`, in seq order (the verifier's scan).
    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError>;
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
    /// Places a hold on a correlation, unless one is active (which is then answered).
    async fn place_hold(&self, request: &HoldRequest) -> Result<PlaceHold, StoreError>;
    /// Releases the active hold on `request.correlation_id` (`reason` is the release reason);
    /// `None` when there is none.
    async fn release_hold(&self, request: &HoldRequest) -> Result<Option<LegalHold>, StoreError>;
    /// Holds, newest first: the active ones, or all of them (with the released history); only
    /// those on `correlation_id` when given.
    async fn holds(
        &self,
        correlation_id: Option<&str>,
        include_released: bool,
    ) -> Result<Vec<LegalHold>, StoreError>;
    /// Purges up to `limit` events whose retention ended by `now` and whose correlation is not
    /// under an active hold, oldest seq first; the seqs purged.
    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Events whose retention ended by `now` but that an active hold keeps.
    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError>;
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

/// Opens the configured store read-only, without applying migrations: the schema must be
/// current (what an auditor's `verify` or `export` needs; they never write).
pub async fn connect_read_only(
    target: &DatabaseTarget,
) -> Result<std::sync::Arc<dyn LogStore>, StoreError> {
    Ok(match target {
        DatabaseTarget::Postgres { url, password } => {
            std::sync::Arc::new(PostgresStore::connect_read_only(url, password.as_deref()).await?)
        }
        DatabaseTarget::Sqlite { path } => {
            if !path.exists() {
                return Err(StoreError::Schema(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            std::sync::Arc::new(SqliteStore::open_read_only(path).await?)
        }
    })
}

/// The versions of the migrations applied to a log, as sqlx records them (same SQL on both stores).
const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Checks that every embedded migration is applied (and nothing newer than this binary knows).
fn check_schema(
    migrator: &sqlx::migrate::Migrator,
    applied: Result<Vec<i64>, sqlx::Error>,
) -> Result<(), StoreError> {
    let expected: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    match applied {
        Ok(applied) if applied == expected => Ok(()),
        Ok(applied) => Err(StoreError::Schema(format!(
            "the log's schema is at migration {:?}, this binary expects {:?}: run `datastorage migrate` (or use the matching binary)",
            applied.last(),
            expected.last()
        ))),
        Err(e) => Err(StoreError::Schema(format!(
            "this is not a Data Storage log (no migrations recorded: {e})"
        ))),
    }
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
