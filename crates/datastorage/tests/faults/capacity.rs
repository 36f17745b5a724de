//! A full DLQ refuses (503) instead of evicting; when both the store and the DLQ are down,
//! nothing is acknowledged.

use std::sync::Arc;

use crate::helpers::{start_on, AppOptions, Backend, TestDb};
use crate::outage::{identified_event, wait_for_drain};
use crate::proxy::postgres_proxy;
use crate::redis_server::RedisServer;

async fn full_dlq_refuses_then_recovers(dlq: &str) {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let db = Arc::new(db);
    let proxy = postgres_proxy().await;
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = match dlq {
        "redis" => match RedisServer::start(redis_dir.path().to_path_buf()).await {
            Some(r) => Some(r),
            None => return,
        },
        _ => None,
    };
    let options = AppOptions {
        database_url: Some(proxy.url_for(&db.url())),
        dlq_url: redis.as_ref().map(RedisServer::url),
        dlq_capacity: Some(10),
        ..AppOptions::default()
    };
    let app = start_on(db.clone(), Backend::Postgres, options).await;
    proxy.cut();
    let mut queued = Vec::new();
    for _ in 0..10 {
        let (id, e) = identified_event("rr-full");
        let (status, body) = app.post("/api/v1/audit/events", &e).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["event_id"].as_str()),
            (Some("accepted"), Some(id.as_str()))
        );
        queued.push(id);
    }
    let (_, e) = identified_event("rr-full");
    let r = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let problem: serde_json::Value = r.json().await.unwrap();
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("/service-unavailable"));
    assert!(
        problem["detail"].as_str().unwrap().contains("full"),
        "{problem}"
    );
    let (_, stats) = app.get("/api/v1/admin/dlq").await;
    assert_eq!(
        (stats["depth"].as_u64(), stats["capacity"].as_u64()),
        (Some(10), Some(10)),
        "nothing evicted"
    );

    let text = app.metrics().await;
    for name in [
        "datastorage_dlq_enqueued_total{reason=",
        "datastorage_audit_traces_total{service=\"notification\",status=\"dlq_fallback\"}",
        "datastorage_dlq_depth{backend=",
        "datastorage_dlq_oldest_age_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }

    proxy.restore();
    wait_for_drain(&app).await;
    assert_eq!(db.count().await, 10);
    let text = app.metrics().await;
    assert!(
        text.contains("datastorage_dlq_replayed_total"),
        "replays are counted"
    );
    db.assert_each_stored_once(&queued).await;
    let (_, e) = identified_event("rr-full");
    assert_eq!(
        app.post("/api/v1/audit/events", &e).await.0,
        201,
        "accepts again after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_dlq_refuses_without_evicting() {
    full_dlq_refuses_then_recovers("journal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_dlq_refuses_without_evicting() {
    full_dlq_refuses_then_recovers("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_dlq_down_acknowledges_nothing() {
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
    redis.kill();
    for _ in 0..5 {
        let (_, e) = identified_event("rr-down");
        let (status, problem) = app.post("/api/v1/audit/events", &e).await;
        assert_eq!(status, 503, "{problem}");
    }
    let (_, batch_item) = identified_event("rr-down");
    assert_eq!(
        app.post(
            "/api/v1/audit/events/batch",
            &serde_json::json!([batch_item])
        )
        .await
        .0,
        503
    );
    let (status, _) = app.get("/health/ready").await;
    assert_eq!(status, 503, "not ready when nothing can take writes");
    proxy.restore();
    redis.restart().await;
    let (_, e) = identified_event("rr-down");
    assert_eq!(app.post("/api/v1/audit/events", &e).await.0, 201);
    assert_eq!(
        db.count().await,
        1,
        "only the event written after recovery is stored"
    );
    let (_, stats) = app.get("/api/v1/admin/dlq").await;
    assert_eq!(stats["depth"], 0);
}
