//! Baselines straight to PostgreSQL, with the row shape and indexes of `audit_events`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_model::AuditEvent;
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;

use crate::load::{event, LoadResult};

const INSERT_ONE: &str =
    "INSERT INTO audit_events (seq, event_id, event_version, event_timestamp, \
    event_type, event_category, event_action, event_outcome, actor_type, actor_id, resource_type, \
    resource_id, resource_name, correlation_id, parent_event_id, trace_id, span_id, namespace, \
    cluster_id, severity, duration_ms, error_code, error_message, event_data, retention_days, \
    leaf_hash, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
    $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)";

/// A parsed event and its hash, made before the clock starts.
fn row(client: usize, i: u64) -> (AuditEvent, Vec<u8>) {
    let e = AuditEvent::parse(event(client, i), Utc::now()).expect("bench events are valid");
    let h = e.leaf_hash().to_vec();
    (e, h)
}

/// (a) One INSERT per transaction (autocommit) from `clients` connections.
pub async fn single_row_inserts(
    url: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(url)
        .await?;
    let seq = Arc::new(AtomicI64::new(0));
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
                    i += 1;
                    let (e, hash) = row(c, i);
                    let s = seq.fetch_add(1, Ordering::Relaxed) + 1;
                    let done = sqlx::query(INSERT_ONE)
                        .bind(s)
                        .bind(e.event_id)
                        .bind(&e.event_version)
                        .bind(e.event_timestamp)
                        .bind(&e.event_type)
                        .bind(&e.event_category)
                        .bind(&e.event_action)
                        .bind(e.event_outcome.as_str())
                        .bind(&e.actor_type)
                        .bind(&e.actor_id)
                        .bind(&e.resource_type)
                        .bind(&e.resource_id)
                        .bind(&e.resource_name)
                        .bind(&e.correlation_id)
                        .bind(e.parent_event_id)
                        .bind(&e.trace_id)
                        .bind(&e.span_id)
                        .bind(&e.namespace)
                        .bind(&e.cluster_id)
                        .bind(&e.severity)
                        .bind(e.duration_ms)
                        .bind(&e.error_code)
                        .bind(&e.error_message)
                        .bind(sqlx::types::Json(&e.event_data))
                        .bind(e.retention_days)
                        .bind(hash)
                        .bind(Utc::now())
                        .execute(&mut *conn)
                        .await;
                    match done {
                        Ok(_) => r.events += 1,
                        Err(_) => r.errors += 1,
                    }
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
    pool.close().await;
    Ok(total)
}
