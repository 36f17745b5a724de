//! PostgreSQL store: the production log. One file per concern: `log.rs` (the event log; its
//! append statement in `append.rs`), `tree.rs` (the Merkle tree), `holds.rs` (legal holds and
//! the purge). Appends go through their own connections, kept outside the pool; everything else
//! uses the pool.

mod append;
mod holds;
mod log;
mod tree;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use append::Appenders;
pub use append::APPEND_APPLICATION_NAME;

use super::columns::{json_object, Column, ReadColumn};
use super::query::Bind;
use super::{LogStore, StoreError};

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
        let mut options = session(PgConnectOptions::from_str(url)?).application_name("datastorage");
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
        let options = read_only_options(url, password, "datastorage-audit")?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let store = Self {
            pool,
            appenders: Arc::new(Appenders::new(options)),
        };
        store.check_schema().await?;
        Ok(store)
    }

    /// Whether the database's schema is this binary's.
    async fn check_schema(&self) -> Result<(), StoreError> {
        let applied = sqlx::query_scalar(super::APPLIED_MIGRATIONS)
            .fetch_all(&self.pool)
            .await;
        super::check_schema(&super::POSTGRES_MIGRATIONS, applied)
    }

    /// A read-only pool on a streaming replica of the log's database. It connects lazily (the
    /// service starts whatever the replica's state) and waits at most a second for a
    /// connection, so a replica that went away costs a read one second before the primary
    /// answers it.
    pub fn connect_replica(
        url: &str,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let options = read_only_options(url, password, "datastorage-replica")?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(1))
            .connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            appenders: Arc::new(Appenders::new(options)),
        })
    }

    /// How far this database (a streaming replica) replays behind its primary: zero when it
    /// has replayed all it received (or is no standby at all), else the age of the last
    /// transaction it replayed. An error when its schema is not this binary's.
    pub async fn replay_lag(&self) -> Result<std::time::Duration, StoreError> {
        self.check_schema().await?;
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT CASE
                 WHEN NOT pg_is_in_recovery()
                   OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 THEN 0
                 ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
             END::float8",
        )
        .fetch_one(&self.pool)
        .await?;
        // Never replayed a transaction while behind: as far behind as it can be.
        Ok(std::time::Duration::from_secs_f64(
            seconds.unwrap_or(f64::MAX).clamp(0.0, 1e9),
        ))
    }

    /// Applies the embedded migrations (idempotent; safe with several replicas starting at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        super::POSTGRES_MIGRATIONS.run(&self.pool).await?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.appenders.close().await;
        self.pool.close().await;
    }
}

impl ReadColumn for PgRow {
    fn uuid(&self, column: Column<'_>) -> Result<Option<Uuid>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: Column<'_>) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.try_get(column)?)
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
        let value: Option<Value> = self.try_get(column)?;
        value.map(|v| json_object(column.name, v)).transpose()
    }

    fn bytes(&self, column: Column<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// Every connection's session settings: PostgreSQL's JIT compiler off. The service's statements
/// are index walks bounded by a page; one whose estimate crosses `jit_above_cost` (the verifier's
/// pages of 10 000 rows, a count over a wide filter) spent more compiling than it saved: the
/// verifier ran 1.15x as fast without it on a 10M-event log (docs/benchmarks.md).
fn session(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("jit", "off")])
}

/// Connection options for reads only: every transaction read-only, named `application_name`.
fn read_only_options(
    url: &str,
    password: Option<&str>,
    application_name: &str,
) -> Result<PgConnectOptions, StoreError> {
    let options = session(PgConnectOptions::from_str(url)?)
        .application_name(application_name)
        .options([("default_transaction_read_only", "on")]);
    Ok(match password {
        Some(password) => options.password(password),
        None => options,
    })
}

/// The query with its placeholders bound.
pub(super) fn bound<'q>(
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
