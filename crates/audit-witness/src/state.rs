//! What the witness remembers per log: the size and root hash of the newest checkpoint it
//! cosigned. Embedded SQLite by default, or PostgreSQL.
//!
//! The advance of a log's state is one conditional statement: it moves from the state the
//! request was checked against to the new one, or does nothing when another request moved it
//! first. So two concurrent requests can never both advance from the same state, and a state
//! once written (and the cosignature answered after it) is never rolled back, across crashes
//! too: the cosignature is only answered once the statement committed.

use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use audit_model::merkle::Hash;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS witness_logs (
        origin TEXT PRIMARY KEY,
        tree_size BIGINT NOT NULL,
        root_hash TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )",
    // Checkpoints the witness refused although the log signed them: evidence of a fork.
    "CREATE TABLE IF NOT EXISTS witness_refusals (
        origin TEXT NOT NULL,
        old_size BIGINT NOT NULL,
        tree_size BIGINT NOT NULL,
        reason TEXT NOT NULL,
        request TEXT NOT NULL,
        refused_at TEXT NOT NULL
    )",
];

/// The newest cosigned checkpoint of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    pub tree_size: u64,
    pub root_hash: Hash,
}

/// A refused, validly signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub origin: String,
    pub old_size: u64,
    pub tree_size: u64,
    pub reason: String,
    pub request: String,
}

/// The witness's database.
#[derive(Clone)]
pub enum State {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl State {
    /// Opens (and creates) the database at `url`: `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> anyhow::Result<State> {
        let state = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            State::Postgres(PgPoolOptions::new().max_connections(8).connect(url).await?)
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .ok_or_else(|| {
                    anyhow::anyhow!("{url:?}: expected sqlite://PATH or postgres://…")
                })?;
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
            State::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await?,
            )
        };
        for statement in SCHEMA {
            state.execute(statement, &[]).await?;
        }
        Ok(state)
    }

    /// The default database: `witness.db` under `dir`.
    pub fn default_url(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("witness.db").display())
    }

    /// The newest cosigned checkpoint of `origin`, if the witness cosigned one.
    pub async fn get(&self, origin: &str) -> anyhow::Result<Option<LogState>> {
        const SQL: &str = "SELECT tree_size, root_hash FROM witness_logs WHERE origin = $1";
        let found: Option<(i64, String)> = match self {
            State::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(origin)
                    .fetch_optional(pool)
                    .await?
            }
            State::Postgres(pool) => {
                sqlx::query_as(SQL)
                    .bind(origin)
                    .fetch_optional(pool)
                    .await?
            }
        };
        found.map(|(size, root)| decode(size, root)).transpose()
    }

    /// Moves `origin` from `from` (none: never cosigned) to `to`; `false` when its state is no
    /// longer `from` (another request advanced it), and nothing changed.
    pub async fn advance(
        &self,
        origin: &str,
        from: Option<LogState>,
        to: LogState,
    ) -> anyhow::Result<bool> {
        let now = chrono::Utc::now().to_rfc3339();
        let (size, root) = (to.tree_size as i64, B64.encode(to.root_hash));
        let done = match from {
            None => {
                const SQL: &str =
                    "INSERT INTO witness_logs (origin, tree_size, root_hash, updated_at)
                    VALUES ($1, $2, $3, $4) ON CONFLICT (origin) DO NOTHING";
                self.execute(
                    SQL,
                    &[
                        Arg::Text(origin),
                        Arg::Int(size),
                        Arg::Text(&root),
                        Arg::Text(&now),
                    ],
                )
                .await?
            }
            Some(from) => {
                const SQL: &str =
                    "UPDATE witness_logs SET tree_size = $1, root_hash = $2, updated_at = $3
                    WHERE origin = $4 AND tree_size = $5 AND root_hash = $6";
                self.execute(
                    SQL,
                    &[
                        Arg::Int(size),
                        Arg::Text(&root),
                        Arg::Text(&now),
                        Arg::Text(origin),
                        Arg::Int(from.tree_size as i64),
                        Arg::Text(&B64.encode(from.root_hash)),
                    ],
                )
                .await?
            }
        };
        Ok(done == 1)
    }

    /// Keeps a refused checkpoint as evidence.
    pub async fn refused(&self, refusal: &Refusal) -> anyhow::Result<()> {
        const SQL: &str = "INSERT INTO witness_refusals
            (origin, old_size, tree_size, reason, request, refused_at) VALUES ($1, $2, $3, $4, $5, $6)";
        self.execute(
            SQL,
            &[
                Arg::Text(&refusal.origin),
                Arg::Int(refusal.old_size as i64),
                Arg::Int(refusal.tree_size as i64),
                Arg::Text(&refusal.reason),
                Arg::Text(&refusal.request),
                Arg::Text(&chrono::Utc::now().to_rfc3339()),
            ],
        )
        .await?;
        Ok(())
    }

    /// The refusals kept, oldest first.
    pub async fn refusals(&self) -> anyhow::Result<Vec<Refusal>> {
        const SQL: &str =
            "SELECT origin, old_size, tree_size, reason, request FROM witness_refusals
            ORDER BY refused_at";
        type Row = (String, i64, i64, String, String);
        let rows: Vec<Row> = match self {
            State::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
            State::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(origin, old, size, reason, request)| Refusal {
                origin,
                old_size: old as u64,
                tree_size: size as u64,
                reason,
                request,
            })
            .collect())
    }

    /// Runs `sql` with `args`; the rows it changed.
    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> anyhow::Result<u64> {
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query(sql);
                for a in args {
                    q = match a {
                        Arg::Text(t) => q.bind(*t),
                        Arg::Int(n) => q.bind(*n),
                    };
                }
                q.execute($pool).await?.rows_affected()
            }};
        }
        Ok(match self {
            State::Sqlite(pool) => run!(pool),
            State::Postgres(pool) => run!(pool),
        })
    }
}

/// A statement's argument.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

fn decode(size: i64, root: String) -> anyhow::Result<LogState> {
    let root: Hash = B64
        .decode(root)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a stored root hash is not 32 bytes"))?;
    Ok(LogState {
        tree_size: u64::try_from(size)?,
        root_hash: root,
    })
}
