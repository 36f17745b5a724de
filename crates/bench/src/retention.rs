//! (r1)-(r3): retention on a log of expired months, while single events arrive at a steady
//! rate: a month dropped whole, a month purged row by row, against no purge at all.
//!
//! Each month is written by COPY with its events' correlation under legal hold, so that the
//! service's first retention run (at its start) leaves it alone; the hold is released two
//! seconds into the open loop, and the worker's next run (every 10 s here) purges it while the
//! load goes on. The run's own audit event says when it started and ended.

use std::time::Duration;

use anyhow::ensure;
use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use sqlx::PgPool;

use crate::load::{self, Latency, LoadResult};
use crate::server::Server;

/// How long after the open loop starts the hold is released.
const RELEASE_AFTER: Duration = Duration::from_secs(2);

/// The retention interval of the service under test.
const INTERVAL: &str = "10s";

/// One purge, timed, with the content's bytes on disk before and after it and the load's
/// latency while it ran.
pub struct PurgeFigures {
    pub events: u64,
    pub dropped_partitions: usize,
    pub took: Duration,
    pub content_before: i64,
    pub content_after: i64,
    pub load: LoadResult,
    pub latency: Latency,
}

/// The 15th of the month `months_ago` months back (UTC).
pub fn in_month(months_ago: u32) -> DateTime<Utc> {
    let now = Utc::now();
    let first = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("the first of a month exists");
    first
        .checked_sub_months(Months::new(months_ago))
        .expect("a month a few months back")
        + chrono::Duration::days(14)
}

/// Places a hold on `correlation` in the database (before the service runs).
pub async fn hold(url: &str, correlation: &str) -> anyhow::Result<()> {
    let pool = PgPool::connect(url).await?;
    sqlx::query(
        "INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at) \
         VALUES ($1, 'held until the benchmark releases it', 'audit-bench', now())",
    )
    .bind(correlation)
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

/// The content's bytes on disk: every partition with its TOAST and indexes.
pub async fn content_bytes(url: &str) -> anyhow::Result<i64> {
    let pool = PgPool::connect(url).await?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::int8 \
         FROM pg_partition_tree('audit_content')",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(bytes)
}

/// Starts the service on `url` with retention every [`INTERVAL`].
pub async fn start(bin: &std::path::Path, url: &str, dir: &str) -> anyhow::Result<Server> {
    let args: Vec<String> = [
        "--database-url",
        url,
        "--data-dir",
        dir,
        "--retention",
        "true",
        "--retention-interval",
        INTERVAL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Server::start(bin, &args).await
}

/// The open loop at `rate` for `duration` against `server`, the hold on `correlation` released
/// [`RELEASE_AFTER`] into it; then waits for the run that purged it.
pub async fn purge_under_load(
    server: &Server,
    url: &str,
    correlation: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<PurgeFigures> {
    let content_before = content_bytes(url).await?;
    let pool = PgPool::connect(url).await?;
    let runs_before = purging_runs(&pool).await?.len();
    let release = async {
        tokio::time::sleep(RELEASE_AFTER).await;
        let answer = reqwest::Client::new()
            .delete(format!(
                "{}/api/v1/audit/legal-hold/{correlation}",
                server.base
            ))
            .json(&serde_json::json!({
                "release_reason": "the benchmark purges it now",
                "requested_by": "audit-bench"
            }))
            .send()
            .await?;
        ensure!(
            answer.status().is_success(),
            "the hold was not released: {}",
            answer.status()
        );
        anyhow::Ok(())
    };
    let ((load, latency), released) =
        tokio::join!(load::open_loop(&server.base, rate, duration), release);
    released?;
    // The purge may outlast the load.
    let run = loop {
        let runs = purging_runs(&pool).await?;
        if let Some(run) = runs.into_iter().nth(runs_before) {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    pool.close().await;
    let at = |field: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(run[field]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(|| anyhow::anyhow!("the run has no {field}: {run}"))?
            .with_timezone(&Utc))
    };
    let took = (at("finished_at")? - at("started_at")?).to_std()?;
    Ok(PurgeFigures {
        events: run["purged"].as_u64().unwrap_or_default(),
        dropped_partitions: run["dropped_partitions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or_default(),
        took,
        content_before,
        content_after: content_bytes(url).await?,
        load,
        latency,
    })
}

/// The retention runs that purged something, oldest first (their `event_data`).
async fn purging_runs(pool: &PgPool) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(sqlx::query_scalar(
        "SELECT event_data FROM audit_events \
         WHERE event_type = 'datastorage.retention.run' AND (event_data->>'purged')::int8 > 0 \
         ORDER BY seq",
    )
    .fetch_all(pool)
    .await?)
}
