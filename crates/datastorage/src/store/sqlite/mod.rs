//! SQLite store: the embedded default, a WAL-mode file under the data directory. One file per
//! concern: `log.rs` (the event log), `tree.rs` (the Merkle tree), `holds.rs` (legal holds and
//! the purge).
//!
//! A batch is appended in one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock at
//! once, so the head read and the inserts cannot interleave with another writer. `synchronous =
//! FULL`: a commit is on disk before the writer answers. UUIDs, times and JSON are stored as
//! text (`ReadColumn` below reads them back).

mod holds;
mod log;
mod tree;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use audit_model::timestamp;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use super::columns::{json_object, Column, ReadColumn};
use super::query::Bind;
use super::{LogStore, StoreError};

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
        super::SQLITE_MIGRATIONS.run(&pool).await?;
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
        super::check_schema(&super::SQLITE_MIGRATIONS, applied)?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl ReadColumn for SqliteRow {
    fn uuid(&self, column: Column<'_>) -> Result<Option<Uuid>, StoreError> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|t| {
            Uuid::parse_str(&t).map_err(|e| StoreError::Corrupt(format!("{column} {t:?}: {e}")))
        })
        .transpose()
    }

    fn time(&self, column: Column<'_>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|t| {
            timestamp::parse(&t).map_err(|e| StoreError::Corrupt(format!("{column} {t:?}: {e}")))
        })
        .transpose()
    }

    fn str(&self, column: Column<'_>) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int64(&self, column: Column<'_>) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int32(&self, column: Column<'_>) -> Result<Option<i32>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn bool(&self, column: Column<'_>) -> Result<Option<bool>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn object(&self, column: Column<'_>) -> Result<Option<Map<String, Value>>, StoreError> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|t| match serde_json::from_str::<Value>(&t) {
            Ok(value) => json_object(column.name, value),
            Err(_) => Err(StoreError::Corrupt(format!(
                "{column} is not a JSON object"
            ))),
        })
        .transpose()
    }

    fn bytes(&self, column: Column<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// The query with its placeholders bound.
pub(super) fn bound<'q>(
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
