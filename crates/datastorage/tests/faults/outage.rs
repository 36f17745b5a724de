//! PostgreSQL goes away for 3 s in the middle of 10 s of load from 50 writers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{event, start_on, AppOptions, Backend, TestApp, TestDb};
use crate::proxy::postgres_proxy;

/// Every id that was answered, with its status.
pub type Answers = Arc<Mutex<HashMap<String, u16>>>;

/// An event with a client-chosen id.
pub fn identified_event(tag: &str) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let mut e = event(tag);
    e["event_id"] = json!(id);
    e["event_timestamp"] = json!(audit_model::timestamp::format(&chrono::Utc::now()));
    (id, e)
}

/// Waits until the app's DLQ is empty (its admin API says so).
pub async fn wait_for_drain(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, stats) = app.get("/api/v1/admin/dlq").await;
        if status == 200 && stats["depth"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "DLQ not drained within 60 s: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the final log against the answers: every 201/202 stored exactly once, nothing else
/// stored, `seq` gap-free.
pub async fn assert_exactly_once(db: &TestDb, answers: &HashMap<String, u16>) -> (usize, usize) {
    let acked: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| matches!(s, 201 | 202))
        .map(|(id, _)| id)
        .collect();
    let queued = answers.values().filter(|s| **s == 202).count();
    db.assert_each_stored_once(&acked).await;
    let stored = db.count().await as usize;
    let refused = answers.values().filter(|s| **s == 503).count();
    assert!(
        stored >= acked.len() && stored <= acked.len() + refused,
        "stored {stored}, acknowledged {}",
        acked.len()
    );
    db.assert_seq_gap_free().await;
    (acked.len(), queued)
}

async fn outage_mid_load(dlq: &str) {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let db = Arc::new(db);
    let proxy = postgres_proxy().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let dlq_url = match dlq {
        "redis" => Some("redis://127.0.0.1:6379".to_string()),
        _ => None,
    };
    if dlq_url.is_some()
        && redis::Client::open("redis://127.0.0.1:6379")
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err()
    {
        crate::helpers::service_missing::<()>("Redis", "connection refused");
        return;
    }
    let options = AppOptions {
        database_url: Some(proxy.url_for(&db.url())),
        dlq_url,
        dlq_redis_prefix: Some(prefix),
        ..AppOptions::default()
    };
    let app = Arc::new(start_on(db.clone(), Backend::Postgres, options).await);
    let answers: Answers = Arc::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(10);
    let writers: Vec<_> = (0..50)
        .map(|w| {
            let (app, answers) = (app.clone(), answers.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let (id, e) = identified_event(&format!("rr-outage-{w}"));
                    let r = app
                        .client
                        .post(app.url("/api/v1/audit/events"))
                        .json(&e)
                        .send()
                        .await
                        .expect("the service answers");
                    answers.lock().unwrap().insert(id, r.status().as_u16());
                }
            })
        })
        .collect();
    tokio::time::sleep_until((started + Duration::from_millis(3500)).into()).await;
    proxy.cut();
    tokio::time::sleep_until((started + Duration::from_millis(6500)).into()).await;
    proxy.restore();
    for w in writers {
        w.await.unwrap();
    }
    wait_for_drain(&app).await;
    let answers = answers.lock().unwrap().clone();
    let unexpected: Vec<u16> = answers
        .values()
        .copied()
        .filter(|s| !matches!(s, 201 | 202))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 201/202: {unexpected:?}"
    );
    let (acked, queued) = assert_exactly_once(&db, &answers).await;
    assert!(queued > 0, "the outage parked nothing in the DLQ");
    eprintln!("{dlq}: {acked} events acknowledged, {queued} of them through the DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_loses_nothing_with_the_journal_dlq() {
    outage_mid_load("journal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_loses_nothing_with_the_redis_dlq() {
    outage_mid_load("redis").await;
}
