//! The service killed with SIGKILL, and Redis restarted, while events wait in the DLQ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::ServerProcess;
use crate::helpers::{start_on, AppOptions, Backend, TestDb};
use crate::outage::{identified_event, wait_for_drain};
use crate::proxy::postgres_proxy;
use crate::redis_server::RedisServer;

async fn wait_for_count(db: &TestDb, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.count().await < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events stored after 60 s",
            db.count().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_full_journal_loses_nothing() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let proxy = postgres_proxy().await;
    let data = tempfile::tempdir().unwrap();
    let url = proxy.url_for(&db.url());
    let args = [
        "--database-url",
        url.as_str(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--replay-poll-interval",
        "100ms",
        "--store-retry-interval",
        "200ms",
    ];
    let mut server = ServerProcess::start(&args).await;
    proxy.cut();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let (id, e) = identified_event("rr-killed");
        let r = client
            .post(format!("{}/api/v1/audit/events", server.base))
            .json(&e)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(id);
    }
    let stats: serde_json::Value = client
        .get(format!("{}/api/v1/admin/dlq", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["depth"], 200);
    nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    server.child.wait().await.unwrap();
    assert_eq!(db.count().await, 0);

    proxy.restore();
    let server = ServerProcess::start(&args).await;
    wait_for_count(&db, 200).await;
    // Entries are acknowledged just after their commit: wait until the queue says it is empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: serde_json::Value = client
            .get(format!("{}/api/v1/admin/dlq", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["depth"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "DLQ not drained: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.assert_each_stored_once(&ids).await;
    assert_eq!(db.assert_seq_gap_free().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_queued_entries_loses_nothing() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let db = Arc::new(db);
    let proxy = postgres_proxy().await;
    let redis_dir = tempfile::tempdir().unwrap();
    let Some(mut redis) = RedisServer::start(redis_dir.path().to_path_buf()).await else {
        return;
    };
    let options = AppOptions {
        database_url: Some(proxy.url_for(&db.url())),
        dlq_url: Some(redis.url()),
        ..AppOptions::default()
    };
    let app = start_on(db.clone(), Backend::Postgres, options).await;
    proxy.cut();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let (id, e) = identified_event("rr-redis-restart");
        assert_eq!(app.post("/api/v1/audit/events", &e).await.0, 202);
        ids.push(id);
    }
    redis.restart().await;
    proxy.restore();
    wait_for_count(&db, 200).await;
    wait_for_drain(&app).await;
    db.assert_each_stored_once(&ids).await;
    assert_eq!(db.assert_seq_gap_free().await, 200);
}
