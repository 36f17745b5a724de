//! DLQ scenarios: the ingest rate while the database is down (writes go to the DLQ), and how
//! fast a full DLQ drains into PostgreSQL once it is back.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;

use crate::db::BenchDb;
use crate::load::{self, LoadResult};
use crate::server::Server;

/// What the DLQ scenarios measured for one backend.
pub struct DlqFigures {
    pub backend: &'static str,
    /// Single-event writes while the database is down.
    pub down: LoadResult,
    pub drained: u64,
    pub drain_time: Duration,
}

impl DlqFigures {
    pub fn drain_rate(&self) -> f64 {
        self.drained as f64 / self.drain_time.as_secs_f64().max(1e-9)
    }
}

async fn depth(http: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let v: Value = http
        .get(format!("{base}/api/v1/admin/dlq"))
        .send()
        .await?
        .json()
        .await?;
    v["depth"].as_u64().context("DLQ stats without depth")
}

/// Runs both DLQ scenarios against `backend` (`journal` or `redis`).
pub async fn run(
    pg: &str,
    bin: &Path,
    backend: &'static str,
    clients: usize,
    duration: Duration,
    drain_events: u64,
) -> anyhow::Result<DlqFigures> {
    let db = BenchDb::create(pg, bin).await?;
    let target = pg
        .trim_start_matches("postgres://")
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let proxy = fault_proxy::Proxy::start(target.parse().context("PostgreSQL address")?).await?;
    let data = tempfile::tempdir()?;
    let mut args = vec![
        "--database-url".to_string(),
        proxy.url_for(&db.url, &target),
        "--data-dir".to_string(),
        data.path().display().to_string(),
        "--dlq-capacity".to_string(),
        "100000000".to_string(),
        "--replay-poll-interval".to_string(),
        "100ms".to_string(),
    ];
    if backend == "redis" {
        args.extend([
            "--dlq-url".to_string(),
            "redis://127.0.0.1:6379".to_string(),
            "--dlq-redis-prefix".to_string(),
            format!("bench:{}", uuid::Uuid::new_v4().simple()),
        ]);
    }
    let server = Server::start(bin, &args).await?;
    let http = reqwest::Client::new();
    proxy.cut();
    let down = load::closed_loop(&server.base, clients, duration, load::Shape::Single).await?;
    ensure!(
        down.events > 0,
        "no write was queued while the database was down"
    );
    // Fill the queue to the drain size with batch writes.
    let mut queued = depth(&http, &server.base).await?;
    let mut i = 0u64;
    while queued < drain_events {
        let n = (drain_events - queued).min(500) as usize;
        let batch: Vec<Value> = (0..n)
            .map(|_| {
                i += 1;
                load::event(9999, i)
            })
            .collect();
        http.post(format!("{}/api/v1/audit/events/batch", server.base))
            .json(&batch)
            .send()
            .await?;
        queued = depth(&http, &server.base).await?;
    }
    let started = Instant::now();
    proxy.restore();
    while depth(&http, &server.base).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the DLQ did not drain in 10 minutes"
        );
    }
    let drain_time = started.elapsed();
    server.stop().await?;
    let stored = db.count().await? as u64;
    ensure!(
        stored == queued,
        "{queued} events queued but {stored} stored after the drain"
    );
    db.drop_db().await?;
    Ok(DlqFigures {
        backend,
        down,
        drained: queued,
        drain_time,
    })
}
