//! Many concurrent writers: exactly one row per event, `seq` gap-free.

use futures::future::join_all;

use crate::helpers::{event, TestApp};
use crate::on_both_stores;

on_both_stores!(fifty_writers_store_ten_thousand_events_gap_free);

async fn fifty_writers_store_ten_thousand_events_gap_free(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let tasks = (0..50).map(|t| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(200);
            for i in 0..200 {
                let (status, stored) = app
                    .post("/api/v1/audit/events", &event(&format!("rr-{t}-{i}")))
                    .await;
                assert_eq!(status, 201, "{stored}");
                ids.push(stored["seq"].as_i64().unwrap());
            }
            ids
        })
    });
    let mut seqs: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=10_000).collect::<Vec<_>>(),
        "answered seqs are not 1..=10000"
    );
    assert_eq!(app.db.assert_seq_gap_free().await, 10_000);
    assert_eq!(
        app.db
            .scalar("SELECT count(DISTINCT correlation_id) FROM audit_events")
            .await,
        10_000
    );
}

/// Several ingest writers in one process commit concurrently and still keep `seq` gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_seq_gap_free() {
    let options = crate::helpers::AppOptions {
        ingest_writers: Some(4),
        batch_max_events: Some(16),
        ..crate::helpers::AppOptions::default()
    };
    let Some(app) =
        crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, options).await
    else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let tasks = (0..40).map(|t| {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let (status, stored) = app
                    .post("/api/v1/audit/events", &event(&format!("rr-w-{t}-{i}")))
                    .await;
                assert_eq!(status, 201, "{stored}");
            }
        })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(app.db.assert_seq_gap_free().await, 2000);
}
