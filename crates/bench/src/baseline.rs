//! Baselines straight to PostgreSQL, with the row shape and indexes of `audit_events` (the
//! database is migrated by `datastorage migrate`, so the schema is the service's own).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_model::AuditEvent;
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::load::{event, LoadResult};

const COLUMNS: &str = "seq, event_id, event_version, event_timestamp, event_type, event_category, \
    event_action, event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, \
    namespace, event_data, retention_days, leaf_hash, received_at";

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
            let mut q =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO audit_events ({COLUMNS}) "));
            q.push_values(rows.iter().enumerate(), |mut b, (k, (e, h))| {
                b.push_bind(seq + k as i64)
                    .push_bind(e.event_id())
                    .push_bind(e.event_version())
                    .push_bind(e.event_timestamp())
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
                    .push_bind(e.retention_days())
                    .push_bind(h)
                    .push_bind(Utc::now());
            });
            q.build().execute(&mut *conn).await?;
        }
        Method::Copy => {
            let mut text = String::with_capacity(n * 700);
            for (k, (e, h)) in rows.iter().enumerate() {
                copy_line(&mut text, seq + k as i64, e, h);
            }
            let mut copy = conn
                .copy_in_raw(&format!("COPY audit_events ({COLUMNS}) FROM STDIN"))
                .await?;
            copy.send(text.into_bytes()).await?;
            copy.finish().await?;
        }
    }
    Ok(())
}

/// One row in COPY text format.
pub fn copy_line(out: &mut String, seq: i64, e: &AuditEvent, hash: &[u8]) {
    let ts = audit_model::timestamp::format(&e.event_timestamp());
    let data = serde_json::Value::Object(e.event_data().clone()).to_string();
    let fields = [
        seq.to_string(),
        e.event_id().to_string(),
        e.event_version().to_string(),
        ts,
        e.event_type().to_string(),
        e.event_category().to_string(),
        e.event_action().to_string(),
        e.event_outcome().as_str().to_string(),
        e.actor_type().to_string(),
        e.actor_id().to_string(),
        e.resource_type().to_string(),
        e.resource_id().to_string(),
        e.correlation_id().to_string(),
        e.namespace().unwrap_or_default().to_string(),
        data,
        e.retention_days().to_string(),
        format!("\\x{}", hex(hash)),
        audit_model::timestamp::format(&Utc::now()),
    ];
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
    let mut conn = <PgConnection as sqlx::Connection>::connect(url).await?;
    let chunk = 20_000u64;
    let mut seq = 0i64;
    let started = Utc::now() - chrono::Duration::seconds(big as i64);
    while (seq as u64) < n {
        let mut text = String::with_capacity(chunk as usize * 700);
        for _ in 0..chunk.min(n - seq as u64) {
            seq += 1;
            let mut v = event(0, seq as u64);
            v["correlation_id"] =
                serde_json::json!(format!("rr-log-{}", seq as u64 % correlations));
            if let Some(k) = (seq as u64).checked_sub(n - big) {
                let event_type = REMEDIATION_TYPES[k as usize % REMEDIATION_TYPES.len()];
                v["correlation_id"] = serde_json::json!(BIG_REMEDIATION);
                v["event_type"] = serde_json::json!(event_type);
                v["event_category"] = serde_json::json!(event_type.split('.').next());
                v["event_timestamp"] = serde_json::json!(audit_model::timestamp::format(
                    &(started + chrono::Duration::seconds(k as i64))
                ));
                if event_type.ends_with("transition") || event_type.ends_with("transitioned") {
                    let phase = format!("Phase{}", k % 7);
                    v["event_data"] =
                        serde_json::json!({"from_phase": "Pending", "to_phase": phase});
                }
            }
            let e = AuditEvent::parse(v, Utc::now()).expect("bench events are valid");
            copy_line(&mut text, seq, &e, e.leaf_hash().as_bytes());
        }
        let mut copy = conn
            .copy_in_raw(&format!("COPY audit_events ({COLUMNS}) FROM STDIN"))
            .await?;
        copy.send(text.into_bytes()).await?;
        copy.finish().await?;
    }
    sqlx::query("UPDATE log_head SET last_seq = $1")
        .bind(seq)
        .execute(&mut conn)
        .await?;
    sqlx::query("ANALYZE audit_events")
        .execute(&mut conn)
        .await?;
    Ok(())
}
