//! Live-stream subscribers that stop reading: the service does not buffer what they are owed
//! (sixteen of them are owed some 880 MB while 55 MB of events are written, and the service
//! grows by what the writes alone cost and a page per stream), and once a subscriber reads
//! again it gets every event, in order, from the database.

use std::time::Duration;

use serde_json::json;

use crate::child::ServerProcess;
use crate::helpers::SseReader;

/// The process's resident set, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_grow_the_services_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&["--data-dir", dir.path().to_str().unwrap()]).await;
    let pid = server.child.id().unwrap();
    let http = reqwest::Client::new();
    let pad = "x".repeat(1000);
    let write = |n: usize| {
        let batch: Vec<_> = (0..n)
            .map(|i| {
                json!({
                    "event_type": "notification.message.sent",
                    "event_category": "notification",
                    "event_action": "sent",
                    "event_outcome": "success",
                    "correlation_id": "rr-slow",
                    "event_data": {"i": i, "pad": pad},
                })
            })
            .collect();
        let request = http
            .post(format!("{}/api/v1/audit/events/batch", server.base))
            .header("Prefer", "answers=native")
            .json(&batch);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for _ in 0..2 {
        write(1000).await;
    }

    // Sixteen subscribers ask for everything from the first event, then read nothing.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let response = http
            .get(format!(
                "{}/api/v1/audit/events/stream?after_seq=0",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        stalled.push(response);
    }
    let before = rss(pid);
    for _ in 0..20 {
        write(1000).await;
    }
    let middle = rss(pid);
    for _ in 0..20 {
        write(1000).await;
    }
    let after = rss(pid);
    // Each is owed 42 000 events of about 1.3 kB (some 55 MB); buffered, that would be
    // 880 MB, 430 MB of it in the second half. The writes alone grow the service by some 25 MB
    // here (SQLite's cache, the allocator); each stream holds a page of events and the
    // connection's write buffer, which it has filled in the first half.
    let mib = |bytes: u64| bytes / (1024 * 1024);
    assert!(
        after.saturating_sub(before) < 150 * 1024 * 1024,
        "the service grew from {} to {} MiB while 16 subscribers did not read",
        mib(before),
        mib(after)
    );
    assert!(
        after.saturating_sub(middle) < 40 * 1024 * 1024,
        "the service grew from {} to {} MiB in the second half",
        mib(middle),
        mib(after)
    );

    // Reading again: every event, once, in order.
    let mut stream = SseReader::new(stalled.swap_remove(0));
    drop(stalled);
    let mut expected = 1;
    while expected <= 42_000 {
        let (id, event) = stream
            .next_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the stream stopped before seq {expected}"));
        assert_eq!(id, expected);
        assert_eq!(event["correlation_id"], "rr-slow");
        expected += 1;
    }
}
