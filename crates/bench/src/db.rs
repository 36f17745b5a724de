//! Fresh PostgreSQL databases with the `audit_events` schema, one per scenario.

use std::path::Path;

use anyhow::{bail, Context};
use sqlx::PgPool;

/// Writes PostgreSQL's dirty pages out before a scenario starts, so that no scenario pays for the
/// pages the one before it left (after the baselines' million rows, the server's own checkpoint
/// fell inside the next timed scenario). Best effort: a role without the right is told once.
pub async fn checkpoint(server_url: &str) {
    static TOLD: std::sync::Once = std::sync::Once::new();
    let done = async {
        let admin = PgPool::connect(&format!("{server_url}/postgres")).await?;
        sqlx::query("CHECKPOINT").execute(&admin).await?;
        admin.close().await;
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = done.await {
        TOLD.call_once(|| eprintln!("audit-bench: no CHECKPOINT before scenarios ({e})"));
    }
}

/// The PostgreSQL settings the figures depend on most (its page cache and its checkpoints'
/// spacing), as `name value` pairs for the run's header; `None` when it does not answer.
pub async fn settings(server_url: &str) -> Option<String> {
    let admin = PgPool::connect(&format!("{server_url}/postgres"))
        .await
        .ok()?;
    let mut shown = Vec::new();
    for name in ["server_version", "shared_buffers", "max_wal_size"] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&admin)
            .await
            .ok()?;
        shown.push(format!("{name} {value}"));
    }
    admin.close().await;
    Some(shown.join(", "))
}

/// A database created for one scenario and dropped afterwards.
pub struct BenchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDb {
    /// Creates a database and applies the service's migrations with `datastorage migrate`.
    pub async fn create(server_url: &str, bin: &Path) -> anyhow::Result<BenchDb> {
        let admin_url = format!("{server_url}/postgres");
        let admin = PgPool::connect(&admin_url)
            .await
            .with_context(|| format!("PostgreSQL at {server_url} does not answer"))?;
        let name = format!("audit_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let url = format!("{server_url}/{name}");
        let out = tokio::process::Command::new(bin)
            .args(["migrate", "--database-url", &url, "--log-format", "text"])
            .output()
            .await
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() {
            bail!("migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        checkpoint(server_url).await;
        Ok(BenchDb {
            admin_url,
            name,
            url,
        })
    }

    /// Rows in `audit_events`.
    pub async fn count(&self) -> anyhow::Result<i64> {
        let pool = PgPool::connect(&self.url).await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        Ok(n)
    }

    /// Neighbours along `seq` whose commit time is earlier than the row before them (a row
    /// written before commit times were kept has its receipt time there).
    pub async fn commit_steps_back(&self) -> anyhow::Result<i64> {
        let pool = PgPool::connect(&self.url).await?;
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT t < lag(t) OVER (ORDER BY seq) AS back \
             FROM (SELECT seq, COALESCE(committed_at, received_at) AS t FROM audit_events) log) \
             steps WHERE back",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(n)
    }

    /// The ids of up to `n` events spread evenly over the log.
    pub async fn sample_event_ids(&self, n: i64) -> anyhow::Result<Vec<uuid::Uuid>> {
        let pool = PgPool::connect(&self.url).await?;
        let ids = sqlx::query_scalar(
            "SELECT event_id FROM audit_events \
             WHERE seq % greatest((SELECT count(*) FROM audit_events) / $1, 1) = 0 LIMIT $1",
        )
        .bind(n)
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok(ids)
    }

    pub async fn drop_db(self) -> anyhow::Result<()> {
        let admin = PgPool::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}
