//! The journal DLQ and the service's log on one small disk that fills while PostgreSQL is away:
//! every request gets an answer (202 while the journal takes the event, 503 once it cannot),
//! liveness answers throughout, and once the database is back the journal drains without a
//! restart; every event answered 202 is stored exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::child::{ServerProcess, SmallDisk};
use crate::helpers::{Backend, TestDb};
use crate::outage::identified_event;
use crate::proxy::postgres_proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_journal_and_the_log_loses_nothing_and_drains_without_a_restart() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let Some(disk) = SmallDisk::mount(2 * 1024 * 1024) else {
        return;
    };
    let proxy = postgres_proxy().await;
    let data = tempfile::tempdir().unwrap();
    let url = proxy.url_for(&db.url());
    let dlq = format!("file://{}", disk.path().join("dlq").display());
    let mut server = ServerProcess::start_logging_to(
        &[
            "--database-url",
            &url,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--dlq-url",
            &dlq,
            "--replay-poll-interval",
            "100ms",
            "--store-retry-interval",
            "200ms",
        ],
        &[("RUST_LOG", "debug")],
        &disk.path().join("datastorage.log"),
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    proxy.cut();

    // Write until the disk is full and a few hundred more have been refused.
    let mut answers: HashMap<String, u16> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut refused = 0;
    while refused < 300 {
        assert!(
            Instant::now() < deadline,
            "the disk did not fill within 120 s ({} answers)",
            answers.len()
        );
        let batch: Vec<_> = (0..20)
            .map(|w| identified_event(&format!("rr-full-{w}")))
            .collect();
        let sent = batch.into_iter().map(|(id, e)| {
            let request = http
                .post(format!("{}/api/v1/audit/events", server.base))
                .json(&e);
            async move {
                let r = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("no answer: {e}"));
                (id, r.status().as_u16())
            }
        });
        for (id, status) in futures::future::join_all(sent).await {
            assert!(matches!(status, 202 | 503), "{id}: {status}");
            refused += usize::from(status == 503);
            answers.insert(id, status);
        }
        let live = http
            .get(format!("{}/health/live", server.base))
            .send()
            .await
            .expect("liveness answers");
        assert_eq!(live.status(), 200);
    }
    let parked = answers.values().filter(|s| **s == 202).count();
    assert!(
        parked > 0,
        "the journal took nothing before the disk filled"
    );

    // The database comes back; the journal drains by itself.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: serde_json::Value = http
            .get(format!("{}/api/v1/admin/dlq", server.base))
            .send()
            .await
            .expect("the DLQ's state answers")
            .json()
            .await
            .unwrap();
        if stats["depth"] == 0 && db.count().await >= parked as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained within 60 s of the database's return: {stats}, {} stored of {parked}",
            db.count().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| **s == 202)
        .map(|(id, _)| id)
        .collect();
    db.assert_each_stored_once(&acked).await;
    assert_eq!(
        db.count().await as usize,
        acked.len(),
        "nothing refused was stored"
    );
    db.assert_seq_gap_free().await;
    server.child.kill().await.unwrap();
    eprintln!("{parked} events parked on the full disk, {refused} refused, all parked stored once");
}
