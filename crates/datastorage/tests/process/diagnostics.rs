//! Diagnostics never stall the data path: with the service's standard error going to a pipe
//! nobody reads, or to a file on a disk that fills, every request keeps its answer, liveness
//! answers, every acknowledged event is stored, and the lines that could not be written are
//! counted in `datastorage_log_lines_dropped_total`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{ServerProcess, SmallDisk};

/// One request with a deadline: an answer, or a failure naming what hung.
async fn answered(request: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Writes one event and checks liveness; both must answer 2xx.
async fn write_and_check(http: &reqwest::Client, base: &str, correlation: &str, i: usize) {
    let event = json!({
        "event_type": "notification.message.sent",
        "event_category": "notification",
        "event_action": "sent",
        "event_outcome": "success",
        "correlation_id": correlation,
        "event_data": {"i": i},
    });
    let write = http
        .post(format!("{base}/api/v1/audit/events"))
        .header("Prefer", "answers=native")
        .json(&event);
    let status = answered(write, "a write").await.status();
    assert!(status.is_success(), "write {i}: {status}");
    let live = answered(http.get(format!("{base}/health/live")), "liveness").await;
    assert_eq!(live.status(), 200, "liveness after write {i}");
}

/// The log lines the service says it dropped.
async fn dropped_lines(http: &reqwest::Client, base: &str) -> u64 {
    let text = answered(http.get(format!("{base}/metrics")), "/metrics")
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("datastorage_log_lines_dropped_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// How many events of `correlation` the service stored.
async fn stored(http: &reqwest::Client, base: &str, correlation: &str) -> usize {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/audit/events?correlation_id={correlation}&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = answered(http.get(url).header("Prefer", "answers=native"), "a query")
            .await
            .json()
            .await
            .unwrap();
        count += page["data"].as_array().expect("a page of events").len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return count,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_nobody_reads_does_not_stall_the_service() {
    let dir = tempfile::tempdir().unwrap();
    // Trace level: every request logs dozens of lines, so the pipe (64 KiB) and the writer's
    // queue fill after a few hundred requests.
    let (server, unread) = ServerProcess::start_undrained(
        &["--data-dir", dir.path().to_str().unwrap()],
        &[("RUST_LOG", "trace")],
    )
    .await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while dropped_lines(&http, &base).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no line dropped after {written} writes: is standard error read?"
        );
        for _ in 0..50 {
            write_and_check(&http, &base, "rr-unread-log", written).await;
            written += 1;
        }
    }
    // The sink is stuck: the service goes on answering.
    for _ in 0..200 {
        write_and_check(&http, &base, "rr-unread-log", written).await;
        written += 1;
    }
    assert_eq!(stored(&http, &base, "rr-unread-log").await, written);
    assert!(dropped_lines(&http, &base).await > 0);
    eprintln!("{written} writes answered with standard error unread");
    drop(unread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_on_a_full_disk_does_not_stall_the_service() {
    let Some(disk) = SmallDisk::mount(1024 * 1024) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let log_path = disk.path().join("datastorage.log");
    let mut server = ServerProcess::start_logging_to(
        &["--data-dir", data.path().to_str().unwrap()],
        &[("RUST_LOG", "debug")],
        &log_path,
    )
    .await;
    let base = server.base.clone();
    disk.fill();
    let http = reqwest::Client::new();
    for i in 0..300 {
        write_and_check(&http, &base, "rr-full-log", i).await;
    }
    assert_eq!(stored(&http, &base, "rr-full-log").await, 300);
    // The log did not grow: the disk is full and the lines went nowhere.
    let size = std::fs::metadata(&log_path).unwrap().len();
    for i in 300..400 {
        write_and_check(&http, &base, "rr-full-log", i).await;
    }
    assert_eq!(std::fs::metadata(&log_path).unwrap().len(), size);
    server.child.kill().await.unwrap();
}
