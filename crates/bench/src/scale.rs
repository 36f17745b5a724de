//! What the scale run (`--scale`) measures besides request rates: the streamed export's rate and
//! the bytes on disk per event, against the same rows in a plain table with the same indexes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sqlx::PgPool;

/// Reads the streamed NDJSON export (every line an event with its inclusion proof) from the
/// start of the log for at most `budget`; the events received and the time taken.
pub async fn export_rate(base: &str, budget: Duration) -> anyhow::Result<(u64, Duration)> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut response = http
        .get(format!("{base}/api/v1/audit/export?format=ndjson"))
        .header("prefer", "answers=native")
        .send()
        .await?
        .error_for_status()?;
    let mut lines = 0u64;
    let mut last = b'\n';
    while started.elapsed() < budget {
        let Some(chunk) = response.chunk().await? else {
            ensure!(last == b'\n', "the export ended inside a line");
            break;
        };
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(b) = chunk.last() {
            last = *b;
        }
    }
    let elapsed = started.elapsed();
    ensure!(lines > 0, "the export sent no event");
    Ok((lines, elapsed))
}

/// One relation's size on disk.
pub struct Relation {
    pub name: String,
    pub bytes: i64,
}

/// The log's bytes on disk, part by part, and the plain table's.
pub struct DiskFigures {
    pub events: i64,
    /// `audit_leaves` and `audit_content` (heaps with their TOAST; the content's over all its
    /// partitions), each of their indexes (over all partitions), `merkle_nodes` (with its
    /// index), `checkpoints` (with its indexes).
    pub log: Vec<Relation>,
    /// The same rows in one plain table without the leaf hash, with the same indexes (the
    /// leaves' and the content's, the content's key `event_timestamp, seq` among them).
    pub plain: Vec<Relation>,
}

impl DiskFigures {
    pub fn log_total(&self) -> i64 {
        self.log.iter().map(|r| r.bytes).sum()
    }

    pub fn plain_total(&self) -> i64 {
        self.plain.iter().map(|r| r.bytes).sum()
    }
}

/// Measures the log at `url`, then builds the plain table beside it (and drops it): every
/// column but the leaf hash, the same indexes, the rows inserted in the log's order.
pub async fn disk(url: &str) -> anyhow::Result<DiskFigures> {
    let pool = PgPool::connect(url).await?;
    sqlx::query("VACUUM ANALYZE audit_leaves, audit_content")
        .execute(&pool)
        .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_leaves")
        .fetch_one(&pool)
        .await?;
    let mut log = Vec::new();
    for table in ["audit_leaves", "audit_content"] {
        log.push(Relation {
            name: format!("{table} (heap and TOAST)"),
            bytes: table_bytes(&pool, table).await?,
        });
        log.extend(index_bytes(&pool, table).await?);
    }
    for table in ["merkle_nodes", "checkpoints"] {
        let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(table)
            .fetch_one(&pool)
            .await?;
        log.push(Relation {
            name: format!("{table} (with its indexes)"),
            bytes,
        });
    }

    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(column_name) FROM information_schema.columns \
         WHERE table_name = 'audit_events' AND column_name <> 'leaf_hash' ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await?;
    sqlx::query("DROP TABLE IF EXISTS plain_events")
        .execute(&pool)
        .await?;
    // Its indexes are made first and the rows inserted in seq order, as the log's were.
    let columns = columns.join(", ");
    sqlx::query(&format!(
        "CREATE TABLE plain_events AS SELECT {columns} FROM audit_events WITH NO DATA"
    ))
    .execute(&pool)
    .await?;
    let definitions: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE tablename IN ('audit_leaves', 'audit_content')",
    )
    .fetch_all(&pool)
    .await?;
    for (name, definition) in definitions {
        let plain = definition
            .replacen(&name, &format!("plain_{name}"), 1)
            .replace(" ON public.audit_leaves ", " ON public.plain_events ")
            .replace(" ON ONLY public.audit_content ", " ON public.plain_events ");
        ensure!(
            plain.contains("plain_events"),
            "cannot copy index {name}: {definition}"
        );
        sqlx::query(&plain)
            .execute(&pool)
            .await
            .with_context(|| plain.clone())?;
    }
    sqlx::query(&format!(
        "INSERT INTO plain_events SELECT {columns} FROM audit_events ORDER BY seq"
    ))
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE plain_events")
        .execute(&pool)
        .await?;
    let mut plain = vec![Relation {
        name: "plain_events (heap and TOAST)".into(),
        bytes: table_bytes(&pool, "plain_events").await?,
    }];
    plain.extend(index_bytes(&pool, "plain_events").await?);
    sqlx::query("DROP TABLE plain_events")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(DiskFigures { events, log, plain })
}

/// A table's heap with its TOAST (no indexes), over all its partitions if it has any.
async fn table_bytes(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT sum(pg_table_size(relid)) FROM pg_partition_tree($1::regclass)), \
           pg_table_size($1::regclass))::int8",
    )
    .bind(table)
    .fetch_one(pool)
    .await?)
}

/// Each index of a table (over all its partitions if it has any), largest first.
async fn index_bytes(pool: &PgPool, table: &str) -> anyhow::Result<Vec<Relation>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT x.indexrelid::regclass::text, \
           coalesce((SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(x.indexrelid)), \
             pg_relation_size(x.indexrelid))::int8 \
         FROM pg_index x WHERE x.indrelid = $1::regclass ORDER BY 2 DESC",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, bytes)| Relation { name, bytes })
        .collect())
}
