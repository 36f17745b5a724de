//! SIGTERM during load: readiness turns 503 at once, and every acknowledged event is stored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::child::ServerProcess;
use crate::helpers::{event, Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let url = db.url();
    let server = ServerProcess::start(&[
        "--database-url",
        &url,
        "--shutdown-delay",
        "1s",
        "--drain-timeout",
        "10s",
    ])
    .await;
    let base = server.base.clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();

    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (client, base, acked, attempts) = (
                client.clone(),
                base.clone(),
                acked.clone(),
                attempts.clone(),
            );
            tokio::spawn(async move {
                // Write until the server stops answering; bounded so the test always ends.
                for i in 0..100_000 {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let sent = client
                        .post(format!("{base}/api/v1/audit/events"))
                        .json(&event(&format!("rr-{w}-{i}")))
                        .send()
                        .await;
                    let Ok(r) = sent else { break };
                    if r.status() == 201 {
                        let v: serde_json::Value = r.json().await.expect("json answer");
                        acked
                            .lock()
                            .unwrap()
                            .push(v["event_id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect();

    // Let load build up: wait until some writes are acknowledged.
    tokio::time::timeout(Duration::from_secs(30), async {
        while acked.lock().unwrap().len() < 300 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server acknowledges writes");
    let before = acked.lock().unwrap().len();
    server.terminate();

    // Readiness turns 503 at once while the listener is still open (propagation delay).
    // The signal is handled asynchronously: poll until the probe says so. The listener stays
    // open for the 1 s propagation delay, so the probe must see the 503 before it closes.
    let mut turned = false;
    for _ in 0..200 {
        let probe = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("listener still open during the propagation delay");
        if probe.status() == 503 {
            turned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(turned, "readiness did not turn 503 after SIGTERM");

    let mut server = server;
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("the server exits within the drain timeout")
        .expect("wait");
    assert!(status.success(), "datastorage exited with {status}");
    for w in writers {
        w.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before,
        "writes were acknowledged during the propagation delay"
    );
    let stored = db.count().await;
    assert!(stored as usize >= acked.len());
    db.assert_each_stored_once(&acked).await;
    db.assert_seq_gap_free().await;
}
