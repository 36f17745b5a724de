//! Baselines straight to PostgreSQL, with the row shape and indexes of the log (the database is
//! migrated by `datastorage migrate`, so the schema is the service's own): each event is a row
//! of `audit_leaves` and a row of `audit_content`, written in one statement or one transaction.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_model::AuditEvent;
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::load::{event, LoadResult};

/// The leaf's columns a bench event fills.
const LEAF_COLUMNS: &str =
    "seq, event_id, event_timestamp, retention_days, leaf_hash, received_at, committed_at";

/// The content's columns a bench event fills: its own, then its copy of the leaf.
const CONTENT_COLUMNS: &str = "seq, event_timestamp, retention_days, event_version, event_type, \
    event_category, event_action, event_outcome, actor_type, actor_id, resource_type, \
    resource_id, correlation_id, namespace, event_data, event_id, leaf_hash, received_at, \
    committed_at";

/// A parsed event and its hash, as the service would store it.
fn row(client: usize, i: u64) -> (AuditEvent, Vec<u8>) {
    let e = AuditEvent::parse(event(client, i), Utc::now()).expect("bench events are valid");
    let h = e.leaf_hash().as_bytes().to_vec();
    (e, h)
}

/// How a baseline writes `n` rows starting at `seq` on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// (a) one INSERT per transaction (autocommit).
    SingleInsert,
    /// (b) one multi-row INSERT of the batch per transaction.
    MultiRow,
    /// (c) one COPY of the batch.
    Copy,
}

async fn write(
    conn: &mut PgConnection,
    method: Method,
    client: usize,
    first: u64,
    seq: i64,
    n: usize,
) -> sqlx::Result<()> {
    let rows: Vec<(AuditEvent, Vec<u8>)> = (0..n as u64).map(|k| row(client, first + k)).collect();
    match method {
        Method::SingleInsert | Method::MultiRow => {
            let now = Utc::now();
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "WITH leaves AS (INSERT INTO audit_leaves ({LEAF_COLUMNS}) "
            ));
            q.push_values(rows.iter().enumerate(), |mut b, (k, (e, h))| {
                b.push_bind(seq + k as i64)
                    .push_bind(e.event_id())
                    .push_bind(e.event_timestamp())
                    .push_bind(e.retention_days())
                    .push_bind(h)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(format!(") INSERT INTO audit_content ({CONTENT_COLUMNS}) "));
            q.push_values(rows.iter().enumerate(), |mut b, (k, (e, h))| {
                b.push_bind(seq + k as i64)
                    .push_bind(e.event_timestamp())
                    .push_bind(e.retention_days())
                    .push_bind(e.event_version())
                    .push_bind(e.event_type())
                    .push_bind(e.event_category())
                    .push_bind(e.event_action())
                    .push_bind(e.event_outcome().as_str())
                    .push_bind(e.actor_type())
                    .push_bind(e.actor_id())
                    .push_bind(e.resource_type())
                    .push_bind(e.resource_id())
                    .push_bind(e.correlation_id())
                    .push_bind(e.namespace())
                    .push_bind(sqlx::types::Json(e.event_data()))
                    .push_bind(e.event_id())
                    .push_bind(h)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *conn).await?;
        }
        Method::Copy => {
            let mut lines = CopyLines::default();
            for (k, (e, h)) in rows.iter().enumerate() {
                lines.push(seq + k as i64, e, h);
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            lines.copy(&mut tx).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Events in COPY text format: a line of `audit_leaves` and one of `audit_content` each.
#[derive(Default)]
pub struct CopyLines {
    leaves: String,
    content: String,
}

impl CopyLines {
    /// The event `e`, with its leaf hash, as `seq`.
    pub fn push(&mut self, seq: i64, e: &AuditEvent, hash: &[u8]) {
        let ts = audit_model::timestamp::format(&e.event_timestamp());
        let (seq, retention) = (seq.to_string(), e.retention_days().to_string());
        let (id, hash) = (e.event_id().to_string(), format!("\\x{}", hex(hash)));
        // Received and committed at once, as the service commits what it receives.
        let now = audit_model::timestamp::format(&Utc::now());
        copy_line(
            &mut self.leaves,
            &[&seq, &id, &ts, &retention, &hash, &now, &now],
        );
        copy_line(
            &mut self.content,
            &[
                &seq,
                &ts,
                &retention,
                e.event_version(),
                e.event_type(),
                e.event_category(),
                e.event_action(),
                e.event_outcome().as_str(),
                e.actor_type(),
                e.actor_id(),
                e.resource_type(),
                e.resource_id(),
                e.correlation_id(),
                e.namespace().unwrap_or_default(),
                &serde_json::Value::Object(e.event_data().clone()).to_string(),
                &id,
                &hash,
                &now,
                &now,
            ],
        );
    }

    /// Copies the lines into their tables on `conn` (in the caller's transaction, if any).
    pub async fn copy(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        for (table, columns, text) in [
            ("audit_leaves", LEAF_COLUMNS, self.leaves),
            ("audit_content", CONTENT_COLUMNS, self.content),
        ] {
            let mut copy = conn
                .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
                .await?;
            copy.send(text.into_bytes()).await?;
            copy.finish().await?;
        }
        Ok(())
    }
}

/// One row of `fields` in COPY text format.
fn copy_line(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        for ch in f.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
    out.push('\n');
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `clients` connections writing batches of `batch` rows with `method` for `duration`.
pub async fn run(
    url: &str,
    method: Method,
    clients: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let batch = if method == Method::SingleInsert {
        1
    } else {
        batch
    };
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(url)
        .await?;
    // A turn of a paired measurement continues the log of the turn before it.
    let head: i64 = sqlx::query_scalar("SELECT last_seq FROM log_head")
        .fetch_one(&pool)
        .await?;
    let seq = Arc::new(AtomicI64::new(head));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (pool, seq, stop) = (pool.clone(), seq.clone(), stop.clone());
            tokio::spawn(async move {
                let mut r = LoadResult::default();
                let mut i = 0u64;
                let mut conn = pool.acquire().await?;
                while !stop.load(Ordering::Relaxed) {
                    let first = seq.fetch_add(batch as i64, Ordering::Relaxed) + 1;
                    match write(&mut conn, method, c, i, first, batch).await {
                        Ok(()) => r.events += batch as u64,
                        Err(_) => r.errors += 1,
                    }
                    i += batch as u64;
                }
                anyhow::Ok(r)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = LoadResult::default();
    for t in tasks {
        let r = t.await??;
        total.events += r.events;
        total.errors += r.errors;
    }
    total.elapsed = started.elapsed();
    let written = seq.load(Ordering::Relaxed);
    sqlx::query("UPDATE log_head SET last_seq = $1")
        .bind(written)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(total)
}

/// The correlation of the large remediation [`fill_log`] writes.
pub const BIG_REMEDIATION: &str = "rr-log-big";

/// The event types of the large remediation, in turn: the six services' lifecycles.
const REMEDIATION_TYPES: [&str; 12] = [
    "gateway.signal.received",
    "signalprocessing.phase.transition",
    "signalprocessing.signal.processed",
    "orchestrator.lifecycle.transitioned",
    "aianalysis.aiagent.submit",
    "aianalysis.aiagent.result",
    "aianalysis.analysis.completed",
    "workflowexecution.selection.completed",
    "workflowexecution.execution.started",
    "workflowexecution.workflow.completed",
    "effectiveness.assessment.completed",
    "notification.message.sent",
];

/// Fills a log with `n` events over `correlations` correlation ids (`rr-log-<k>`), by COPY;
/// the last `big` of them form one remediation ([`BIG_REMEDIATION`]) of every service's event
/// types, one second apart.
pub async fn fill_log(url: &str, n: u64, correlations: u64, big: u64) -> anyhow::Result<()> {
    let started = Utc::now() - chrono::Duration::seconds(big as i64);
    copy_events(url, n, |seq, v| {
        v["correlation_id"] = serde_json::json!(format!("rr-log-{}", seq % correlations));
        if let Some(k) = seq.checked_sub(n - big) {
            let event_type = REMEDIATION_TYPES[k as usize % REMEDIATION_TYPES.len()];
            v["correlation_id"] = serde_json::json!(BIG_REMEDIATION);
            v["event_type"] = serde_json::json!(event_type);
            v["event_category"] = serde_json::json!(event_type.split('.').next());
            v["event_timestamp"] = serde_json::json!(audit_model::timestamp::format(
                &(started + chrono::Duration::seconds(k as i64))
            ));
            if event_type.ends_with("transition") || event_type.ends_with("transitioned") {
                let phase = format!("Phase{}", k % 7);
                v["event_data"] = serde_json::json!({"from_phase": "Pending", "to_phase": phase});
            }
        }
    })
    .await
}

/// Appends `n` events of `correlation` by COPY, stamped `at` (a millisecond apart) and kept
/// one day: a month of expired events for the retention scenarios.
pub async fn fill_expired(
    url: &str,
    n: u64,
    at: chrono::DateTime<Utc>,
    correlation: &str,
) -> anyhow::Result<()> {
    copy_events(url, n, |k, v| {
        v["correlation_id"] = serde_json::json!(correlation);
        v["retention_days"] = serde_json::json!(1);
        v["event_timestamp"] = serde_json::json!(audit_model::timestamp::format(
            &(at + chrono::Duration::milliseconds(k as i64 % 86_400_000))
        ));
    })
    .await
}

/// Appends `n` bench events after the log head by COPY, the `k`-th (from 1) shaped by
/// `shape(k, event)`, each with its leaf hash and its month's partition made first, as the
/// service stores them; moves the head and vacuums and analyses the tables.
async fn copy_events(
    url: &str,
    n: u64,
    mut shape: impl FnMut(u64, &mut serde_json::Value),
) -> anyhow::Result<()> {
    let mut conn = <PgConnection as sqlx::Connection>::connect(url).await?;
    let head: i64 = sqlx::query_scalar("SELECT last_seq FROM log_head")
        .fetch_one(&mut conn)
        .await?;
    let chunk = 20_000u64;
    let mut k = 0u64;
    let mut months = std::collections::HashSet::new();
    while k < n {
        let mut lines = CopyLines::default();
        for _ in 0..chunk.min(n - k) {
            k += 1;
            let seq = head + k as i64;
            let mut v = event(0, seq as u64);
            shape(k, &mut v);
            let e = AuditEvent::parse(v, Utc::now()).expect("bench events are valid");
            let at = e.event_timestamp();
            if months.insert(at.format("%Y-%m").to_string()) {
                sqlx::query("SELECT audit_content_partition_for($1)")
                    .bind(at)
                    .execute(&mut conn)
                    .await?;
            }
            lines.push(seq, &e, e.leaf_hash().as_bytes());
        }
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        lines.copy(&mut tx).await?;
        tx.commit().await?;
    }
    sqlx::query("UPDATE log_head SET last_seq = $1")
        .bind(head + n as i64)
        .execute(&mut conn)
        .await?;
    // Vacuumed as autovacuum would have (its insert threshold) on a server where it runs: the
    // rows hinted committed and the visibility map set, so that reads do neither (a log of
    // years has been through it long before it is read).
    sqlx::query("VACUUM ANALYZE audit_leaves, audit_content")
        .execute(&mut conn)
        .await?;
    Ok(())
}
