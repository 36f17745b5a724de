//! What can go wrong in a store.

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
