//! The audit log's storage: small traits by concern, two real backends (PostgreSQL and SQLite),
//! each in its folder with one file per concern.
//!
//! | concern | trait | PostgreSQL | SQLite |
//! |---|---|---|---|
//! | the event log: append, read, query, scan | [`EventLog`] | `postgres/log.rs` (+ `append.rs`) | `sqlite/log.rs` |
//! | the Merkle tree's nodes and checkpoints | [`TreeStore`] | `postgres/tree.rs` | `sqlite/tree.rs` |
//! | legal holds and the retention purge | [`HoldStore`] | `postgres/holds.rs` | `sqlite/holds.rs` |
//! | the connection: open, migrate, ping, close | [`LogStore`] | `postgres/mod.rs` | `sqlite/mod.rs` |
//!
//! Rows are decoded once for both backends (`columns.rs`), over a small trait for reading a
//! column that each backend implements for its row type. Each caller takes the trait it needs:
//! the writer an [`EventLog`], the checkpointer a [`TreeStore`], retention and the hold routes a
//! [`HoldStore`]; the application holds a [`LogStore`], which is all of them.
//!
//! Invariants every store keeps, checked by the shared conformance tests:
//! * `append` runs in one transaction: all of a batch is stored, or none of it.
//! * `seq` is assigned inside that transaction from the log head, so it is gap-free and strictly
//!   increasing in commit order, also with several writers (PostgreSQL holds the log head's row
//!   lock from moving the head to the commit; SQLite has one writer by nature).
//! * An `event_id` already stored answers `Duplicate` when the leaf hash matches, `Conflict`
//!   otherwise; nothing is overwritten. Triggers refuse UPDATE and DELETE of stored events.

mod columns;
mod error;
mod events;
mod holds;
mod postgres;
mod query;
mod replica;
mod sqlite;
mod tree;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::StoredEvent;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use error::StoreError;

/// The PostgreSQL schema's migrations, embedded (also for tests that build an earlier schema).
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
/// The SQLite schema's migrations, embedded.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub use events::{
    holds_same_content, AppendOutcome, LogEntry, PreparedEvent, PurgedEvent, Render, RenderedRow,
    RowFields, ScannedLeaf, StoredRecord,
};
pub use holds::{HoldRequest, LegalHold, PlaceHold};
pub use postgres::{PostgresStore, APPEND_APPLICATION_NAME};
pub use query::{Cursor, EventFilter, EventQuery, Order, RecordQuery};
pub use replica::ReplicaReads;
pub use sqlite::SqliteStore;
pub use tree::{CheckpointQuery, StoredCheckpoint, StoredCosignature};

use crate::config::DatabaseTarget;

/// The event log: append-only, numbered by `seq`.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events with distinct `event_id`s in one transaction, answering in input order.
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError>;
    /// The stored event with this id (or what the retention purge left of it).
    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError>;
    /// Events matching the query, at most `limit` of them, in the query's order.
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// What a timeline reads of the events of `correlation_id` (not purged), in time order, at
    /// most `limit` of them: a few columns from the correlation index, not whole events.
    async fn timeline_rows(
        &self,
        correlation_id: &str,
        limit: i64,
    ) -> Result<Vec<crate::derived::timeline::TimelineRow>, StoreError>;
    /// How many events match the query (its cursor, offset and limit aside).
    async fn count_matching(&self, query: &EventQuery) -> Result<i64, StoreError>;
    /// Typed records matching the query, in `id` order.
    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError>;
    /// Number of stored events.
    async fn count(&self) -> Result<i64, StoreError>;
    /// Up to `limit` rows after `after_seq`, in seq order (the verifier's and the export's scan).
    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError>;
    /// The rows [`EventLog::scan`] reads, each with the leaf its content hashes to instead of
    /// its event (the verifier's scan). The stores hash each row's columns as they read it,
    /// without rebuilding the event (which was most of the verifier's work).
    async fn scan_leaves(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ScannedLeaf>, StoreError> {
        let rows = self.scan(after_seq, limit).await?;
        Ok(rows.into_iter().map(ScannedLeaf::from).collect())
    }
    /// The rows [`EventLog::scan`] reads, each live one's fields handed to `render` as they
    /// are read, with what it made of them instead of the event (the export's scan: the stores
    /// read text borrowed from the row and rebuild no event).
    async fn scan_rendered(
        &self,
        after_seq: i64,
        limit: i64,
        render: Render,
    ) -> Result<Vec<RenderedRow>, StoreError> {
        let rows = self.scan(after_seq, limit).await?;
        Ok(rows.iter().map(|e| RenderedRow::of(e, &render)).collect())
    }
    /// The first seq whose receipt time was taken under the log head: from there on it never
    /// steps backwards along `seq` (rows before it may, when several replicas wrote them).
    async fn received_in_order_from(&self) -> Result<i64, StoreError>;
}

/// The Merkle tree over the log: its nodes and its signed checkpoints.
#[async_trait]
pub trait TreeStore: Send + Sync + 'static {
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
    /// Stores a witness's cosignature of a stored checkpoint; `false` when that witness's
    /// cosignature of that checkpoint is already stored (the first is kept).
    async fn add_cosignature(&self, cosignature: &StoredCosignature) -> Result<bool, StoreError>;
    /// The cosignatures of the checkpoint of `tree_size`, by witness name.
    async fn cosignatures(&self, tree_size: i64) -> Result<Vec<StoredCosignature>, StoreError>;
    /// The largest checkpoint each witness cosigned.
    async fn cosigned_sizes(&self) -> Result<HashMap<String, i64>, StoreError>;
    /// The largest checkpoint cosigned by at least `quorum` of `witnesses`.
    async fn witnessed(
        &self,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<Option<i64>, StoreError>;
}

/// Legal holds and the retention purge they stop.
#[async_trait]
pub trait HoldStore: Send + Sync + 'static {
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
    /// under an active hold, oldest first; the seqs purged, in order.
    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Events whose retention ended by `now` but that an active hold keeps.
    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Drops every content partition whose events all expired by `now` and none of which is
    /// under an active hold, recording each drop; the partitions dropped. A store without
    /// partitions (SQLite) drops none: its purge is row by row.
    async fn drop_expired_partitions(
        &self,
        _now: DateTime<Utc>,
    ) -> Result<Vec<DroppedPartition>, StoreError> {
        Ok(Vec::new())
    }
    /// Creates the content partitions of the month of `now` and the `ahead` months after it
    /// where missing; the partitions created. A store without partitions creates none.
    async fn prepare_partitions(
        &self,
        _now: DateTime<Utc>,
        _ahead: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// A content partition retention dropped whole: its events' content is gone, their leaves stay
/// and read as purged at `dropped_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedPartition {
    pub partition: String,
    pub events: i64,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// A whole store: every concern, and the connection under them.
#[async_trait]
pub trait LogStore: EventLog + TreeStore + HoldStore {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Answers when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the connections.
    async fn close(&self);
}

/// Connects to the configured store and applies its migrations.
pub async fn connect(
    target: &DatabaseTarget,
    max_connections: u32,
) -> Result<Arc<dyn LogStore>, StoreError> {
    Ok(match target {
        DatabaseTarget::Postgres { url, password } => {
            Arc::new(PostgresStore::connect(url, password.as_deref(), max_connections).await?)
        }
        DatabaseTarget::Sqlite { path } => {
            Arc::new(SqliteStore::open(path, max_connections).await?)
        }
    })
}

/// Opens the configured store read-only, without applying migrations: the schema must be
/// current (what an auditor's `verify` or `export` needs; they never write).
pub async fn connect_read_only(target: &DatabaseTarget) -> Result<Arc<dyn LogStore>, StoreError> {
    Ok(match target {
        DatabaseTarget::Postgres { url, password } => {
            Arc::new(PostgresStore::connect_read_only(url, password.as_deref()).await?)
        }
        DatabaseTarget::Sqlite { path } => {
            if !path.exists() {
                return Err(StoreError::Schema(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            Arc::new(SqliteStore::open_read_only(path).await?)
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
