//! Contract tests: the client against the real `datastorage` on PostgreSQL.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_client::{AuditClient, CloseReport, RecordError};
use audit_model::SeedRecord;
use helpers::{event, spawn_app, start_on, AppOptions, Backend, TestApp, TestDb};
use serde_json::json;
use uuid::Uuid;

fn fast(builder: audit_client::AuditClientBuilder) -> audit_client::AuditClientBuilder {
    builder
        .flush_interval(Duration::from_millis(50))
        .retry(3, Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(5))
        .service_name("contract-test")
}

async fn stored_ids(db: &TestDb) -> HashSet<Uuid> {
    let TestDb::Postgres { pool, .. } = db else {
        panic!("contract tests run on PostgreSQL")
    };
    sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM audit_events")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_from_twenty_tasks_arrive_exactly_once() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let client = fast(AuditClient::builder(&app.base))
        .batch_size(500)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(5000);
                for i in 0..5000 {
                    loop {
                        match client.record(event(&format!("rr-{t}-{}", i / 100))) {
                            Ok(id) => {
                                ids.push(id);
                                break;
                            }
                            // The producer is faster than the network: wait for room.
                            Err(RecordError::BufferFull) => tokio::task::yield_now().await,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                ids
            })
        })
        .collect();
    let mut recorded = HashSet::new();
    for t in tasks {
        recorded.extend(t.await.unwrap());
    }
    let report = client.close(Duration::from_secs(60)).await;
    assert_eq!(recorded.len(), 100_000);
    assert_eq!(report.sent, 100_000, "{report:?}");
    assert_eq!(
        report.duplicates + report.rejected + report.spilled,
        0,
        "{report:?}"
    );
    assert_eq!(app.db.count().await, 100_000);
    assert_eq!(stored_ids(&app.db).await, recorded);
}

/// Stops the app gracefully and starts a new one on the same port and database after `pause`.
async fn restart_after(app: TestApp, pause: Duration) -> TestApp {
    let addr = app.base.trim_start_matches("http://").to_string();
    let db = app.db.clone();
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();
    tokio::time::sleep(pause).await;
    let options = AppOptions {
        listen: Some(addr),
        ..AppOptions::default()
    };
    start_on(db, Backend::Postgres, options).await
}

async fn outage(spill: bool) -> Option<(CloseReport, HashSet<Uuid>, HashSet<Uuid>, i64)> {
    let app = spawn_app(Backend::Postgres).await?;
    let dir = tempfile::tempdir().unwrap();
    let mut builder = fast(AuditClient::builder(&app.base)).batch_size(50);
    if spill {
        builder = builder.spill_dir(dir.path());
    }
    let client = builder.build().unwrap();
    let recorded = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let writer = {
        let (client, recorded) = (client.clone(), recorded.clone());
        tokio::spawn(async move {
            for i in 0..3000 {
                if let Ok(id) = client.record(event(&format!("rr-outage-{i}"))) {
                    recorded.lock().unwrap().insert(id);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let app = restart_after(app, Duration::from_secs(5)).await;
    writer.await.unwrap();
    let report = client.close(Duration::from_secs(60)).await;
    let recorded = recorded.lock().unwrap().clone();
    let stored = stored_ids(&app.db).await;
    let count = app.db.count().await;
    Some((report, recorded, stored, count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_outage_loses_nothing_with_a_spill() {
    let Some((report, recorded, stored, count)) = outage(true).await else {
        return;
    };
    assert!(report.spilled > 0, "the outage spilled nothing: {report:?}");
    assert_eq!(report.dropped + report.rejected, 0, "{report:?}");
    assert_eq!(stored, recorded, "every recorded event is stored");
    assert_eq!(count as usize, recorded.len(), "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spill_the_drops_are_exactly_the_counted_ones() {
    let Some((report, recorded, stored, count)) = outage(false).await else {
        return;
    };
    assert!(report.dropped > 0, "the outage dropped nothing: {report:?}");
    assert_eq!(report.spilled, 0);
    assert!(stored.is_subset(&recorded));
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert_eq!(count as u64, report.sent, "{report:?}");
    assert_eq!(
        recorded.len() as u64 - count as u64,
        report.dropped,
        "{report:?}"
    );
}

const CHILD_SPILL: &str = "AUDIT_CLIENT_CRASH_SPILL_DIR";

/// Run as a child process: records into a spill (Data Storage unreachable), reports the ids,
/// then waits to be killed.
#[tokio::test]
async fn crash_child_spiller() {
    let Ok(dir) = std::env::var(CHILD_SPILL) else {
        return;
    };
    let client = fast(AuditClient::builder("http://127.0.0.1:9"))
        .retry(1, Duration::from_millis(1), Duration::from_millis(1))
        .spill_dir(&dir)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..500 {
        ids.push(client.record(event(&format!("rr-crash-{i}"))).unwrap());
    }
    client.flush().await;
    let report = client.report();
    assert_eq!(report.spilled, 500, "{report:?}");
    for id in ids {
        println!("spilled {id}");
    }
    println!("ready");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_spill_is_resent_by_the_next_client() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_spiller",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_SPILL, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut spilled = HashSet::new();
    {
        use std::io::BufRead;
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            let line = line.unwrap();
            // The test harness may print its own words on the same line before ours.
            if let Some((_, id)) = line.split_once("spilled ") {
                spilled.insert(Uuid::parse_str(id.trim()).unwrap());
            }
            if line.ends_with("ready") {
                break;
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert_eq!(spilled.len(), 500);

    let client = fast(AuditClient::builder(&app.base))
        .spill_dir(dir.path())
        .build()
        .unwrap();
    let report = client.close(Duration::from_secs(30)).await;
    assert_eq!(report.sent, 500, "{report:?}");
    assert_eq!(stored_ids(&app.db).await, spilled);
    assert_eq!(app.db.count().await, 500);
}

/// The bodies a flaky front forwarded, in order.
type Forwarded = Arc<std::sync::Mutex<Vec<String>>>;

/// A stand-in that answers 503 (Retry-After: 0) to the first requests, then forwards to the real
/// Data Storage; it counts the requests it saw and keeps the bodies it forwarded.
async fn flaky_front(
    target: String,
    failures: usize,
    status: u16,
) -> (String, Arc<AtomicUsize>, Forwarded) {
    use axum::body::Bytes;
    use axum::extract::{OriginalUri, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let seen = Arc::new(AtomicUsize::new(0));
    let forwarded = Forwarded::default();
    let state = (
        target,
        seen.clone(),
        forwarded.clone(),
        reqwest::Client::new(),
    );
    async fn handle(
        State((target, seen, forwarded, http)): State<(
            String,
            Arc<AtomicUsize>,
            Forwarded,
            reqwest::Client,
        )>,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
        body: Bytes,
        failures: usize,
        status: u16,
    ) -> axum::response::Response {
        if seen.fetch_add(1, Ordering::SeqCst) < failures {
            let status = StatusCode::from_u16(status).unwrap();
            return (status, [("retry-after", "0")], "not now").into_response();
        }
        forwarded
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        // The request's own headers go on (its content type, its answers preference).
        let mut forward = reqwest::header::HeaderMap::new();
        for name in ["content-type", "prefer"] {
            if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
                forward.insert(name, value.parse().unwrap());
            }
        }
        let r = http
            .post(format!("{target}{}", uri.path()))
            .headers(forward)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.bytes().await.unwrap()).into_response()
    }
    let router = axum::Router::new()
        .fallback(move |s, u, h, b| handle(s, u, h, b, failures, status))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen, forwarded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_stored_once_and_a_refused_item_is_not_retried() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    // An event stored beforehand; the client will send the same id with other content.
    let mut original = event("rr-flaky");
    original["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-00000000abcd");
    original["event_timestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(app.post("/api/v1/audit/events", &original).await.0, 201);
    let (front, seen, forwarded) = flaky_front(app.base.clone(), 2, 503).await;
    let rejections = Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = rejections.clone();
    let client = fast(AuditClient::builder(&front))
        .retry(5, Duration::from_millis(10), Duration::from_millis(50))
        .on_rejected(move |r| heard.lock().unwrap().push(r))
        .build()
        .unwrap();
    let good = client.record(event("rr-flaky")).unwrap();
    let mut conflicting = original.clone();
    conflicting["event_data"] = json!({"forged": true});
    client.record(conflicting).unwrap();
    let report = client.close(Duration::from_secs(30)).await;
    assert_eq!(
        (report.sent, report.rejected, report.dropped),
        (1, 1, 0),
        "{report:?}"
    );
    // The refusal reached the caller's hook, naming the event (the 503s did not: retried).
    let rejections = rejections.lock().unwrap().clone();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(
        rejections[0].event_id.to_string(),
        "0190b5a2-1c3d-7e4f-8a9b-00000000abcd"
    );
    assert!(!rejections[0].reason.is_empty());
    // The client may send the two items together or one after the other; either way the two
    // 503s are the only failed requests and each item is forwarded exactly once (the refused
    // one is not retried).
    let forwarded = forwarded.lock().unwrap().clone();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2 + forwarded.len(),
        "{forwarded:?}"
    );
    let sent_with = |id: &str| forwarded.iter().filter(|b| b.contains(id)).count();
    assert_eq!(
        sent_with("0190b5a2-1c3d-7e4f-8a9b-00000000abcd"),
        1,
        "{forwarded:?}"
    );
    assert_eq!(sent_with(&good.to_string()), 1, "{forwarded:?}");
    assert_eq!(app.db.count().await, 2);
    assert!(stored_ids(&app.db).await.contains(&good));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_never_blocks_when_the_server_is_unreachable() {
    // Nothing listens on port 9 (discard); every request fails, and each would take time.
    let client = AuditClient::builder("http://127.0.0.1:9")
        .buffer_capacity(1000)
        .batch_size(100)
        .request_timeout(Duration::from_secs(10))
        .retry(3, Duration::from_secs(1), Duration::from_secs(5))
        .build()
        .unwrap();
    let mut full = 0u64;
    let mut slowest = Duration::ZERO;
    for i in 0..5000 {
        let started = Instant::now();
        match client.record(event(&format!("rr-blocked-{i}"))) {
            Ok(_) => {}
            Err(RecordError::BufferFull) => full += 1,
            Err(e) => panic!("{e}"),
        }
        slowest = slowest.max(started.elapsed());
    }
    assert!(full >= 3900, "the buffer filled: {full} refusals");
    assert_eq!(client.report().dropped, full, "every refusal is counted");
    // The bound is far below one request timeout or one backoff step: record never waits on I/O.
    assert!(
        slowest < Duration::from_millis(500),
        "record took {slowest:?}"
    );
}

/// Memory stays bounded with a spill directory too: past the buffer, events wait for the disk in
/// a queue as large as the buffer, and past that `record` refuses (counted), never queueing
/// without bound. On a single-threaded runtime nothing drains while `record` is called in a
/// loop, so the two queues fill exactly.
#[tokio::test(flavor = "current_thread")]
async fn the_queue_to_the_disk_spill_is_bounded() {
    let spill = tempfile::tempdir().unwrap();
    let client = AuditClient::builder("http://127.0.0.1:9")
        .buffer_capacity(3)
        .retry(1, Duration::from_millis(1), Duration::from_millis(1))
        .request_timeout(Duration::from_secs(1))
        .spill_dir(spill.path())
        .build()
        .unwrap();
    let mut kept = 0;
    let mut refused = 0;
    for i in 0..10 {
        match client.record(event(&format!("rr-bounded-{i}"))) {
            Ok(_) => kept += 1,
            Err(RecordError::SpillBehind) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        (kept, refused),
        (6, 4),
        "three in the buffer, three on their way to disk"
    );
    assert_eq!(client.report().dropped, 4);
    // What was kept ends on disk (nothing answers at the server's address).
    let report = client.close(Duration::from_secs(10)).await;
    assert_eq!((report.spilled, report.dropped), (6, 4), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_helper_is_accepted_by_the_real_server() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let client = fast(AuditClient::builder(&app.base)).build().unwrap();
    let t = chrono::Utc::now();
    client
        .record_notification(&audit_model::NotificationAudit {
            remediation_id: "rr-typed".into(),
            notification_id: "n-typed".into(),
            recipient: "#ops".into(),
            channel: "slack".into(),
            message_summary: "hello".into(),
            status: "sent".into(),
            sent_at: t,
            escalation_level: 0,
            delivery_status: Some("200 OK".into()),
            error_message: None,
        })
        .unwrap();
    let records: Vec<(&str, serde_json::Value)> = vec![
        (
            "signal_processing_audit",
            json!({"remediation_id": "rr-typed", "signal_id": "s", "alert_fingerprint": "f", "environment": "prod", "severity": "critical", "status": "received", "processing_start_time": t}),
        ),
        (
            "orchestration_audit",
            json!({"remediation_id": "rr-typed", "remediation_name": "r", "overall_phase": "pending", "start_time": t}),
        ),
        (
            "ai_analysis_audit",
            json!({"remediation_id": "rr-typed", "ai_analysis_id": "a", "alert_fingerprint": "f", "environment": "prod", "severity": "info", "investigation_start_time": t, "confidence_score": 0.5, "completion_status": "completed"}),
        ),
        (
            "workflow_execution_audit",
            json!({"remediation_id": "rr-typed", "workflow_execution_id": "w", "workflow_name": "n", "workflow_version": "1", "total_steps": 1, "steps_completed": 1, "steps_failed": 0, "outcome": "success", "status": "completed", "completed_at": t}),
        ),
        (
            "effectiveness_audit",
            json!({"assessment_id": "e", "remediation_id": "rr-typed", "action_type": "restart", "traditional_score": 0.5, "confidence": 0.5, "completed_at": t}),
        ),
    ];
    let rules = audit_model::RecordRules::new(chrono::Utc::now());
    for (view, body) in &records {
        let ok = match *view {
            "signal_processing_audit" => client.record_signal_processing(
                &audit_model::SignalProcessingAudit::parse(body.clone(), &rules).unwrap(),
            ),
            "orchestration_audit" => client.record_orchestration(
                &audit_model::OrchestrationAudit::parse(body.clone(), &rules).unwrap(),
            ),
            "ai_analysis_audit" => client.record_ai_decision(
                &audit_model::AiAnalysisAudit::parse(body.clone(), &rules).unwrap(),
            ),
            "workflow_execution_audit" => client.record_execution(
                &audit_model::WorkflowExecutionAudit::parse(body.clone(), &rules).unwrap(),
            ),
            _ => client.record_effectiveness(
                &audit_model::EffectivenessAudit::parse(body.clone(), &rules).unwrap(),
            ),
        };
        ok.unwrap();
    }
    // An invalid typed record is the caller's error at once.
    let mut bad = audit_model::NotificationAudit::parse(
        json!({"remediation_id": "r", "notification_id": "n", "recipient": "x", "channel": "slack", "message_summary": "m", "status": "sent", "sent_at": t}),
        &rules,
    )
    .unwrap();
    bad.channel = "pigeon".into();
    assert!(matches!(
        client.record_notification(&bad),
        Err(RecordError::Invalid(_))
    ));
    let report = client.close(Duration::from_secs(30)).await;
    assert_eq!((report.sent, report.rejected), (6, 0), "{report:?}");
    for view in [
        "notification_audit",
        "signal_processing_audit",
        "orchestration_audit",
        "ai_analysis_audit",
        "workflow_execution_audit",
        "effectiveness_audit",
    ] {
        assert_eq!(
            app.db
                .scalar(&format!(
                    "SELECT count(*) FROM {view} WHERE remediation_id = 'rr-typed'"
                ))
                .await,
            1,
            "{view}"
        );
    }
    // Re-sending the same records is idempotent on the server.
    let again = fast(AuditClient::builder(&app.base)).build().unwrap();
    for (view, body) in &records[..1] {
        assert_eq!(*view, "signal_processing_audit");
        again
            .record_signal_processing(
                &audit_model::SignalProcessingAudit::parse(body.clone(), &rules).unwrap(),
            )
            .unwrap();
    }
    let report = again.close(Duration::from_secs(30)).await;
    assert_eq!((report.sent, report.duplicates), (0, 1));
    assert_eq!(app.db.count().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_tokens_are_retried_with_the_rotated_token() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "sa-token").unwrap();
    for status in [401, 403, 429, 408] {
        let (front, seen, _) = flaky_front(app.base.clone(), 1, status).await;
        let client = fast(AuditClient::builder(&front))
            .token(audit_client::TokenSource::File(dir.path().join("token")))
            .build()
            .unwrap();
        let id = client.record(event("rr-token")).unwrap();
        let report = client.close(Duration::from_secs(30)).await;
        assert_eq!(
            (report.sent, report.dropped),
            (1, 0),
            "{status}: {report:?}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2, "{status}: retried once");
        assert!(stored_ids(&app.db).await.contains(&id));
    }
    // Other 4xx answers are not retried.
    let (front, seen, _) = flaky_front(app.base.clone(), 1, 404).await;
    let client = fast(AuditClient::builder(&front)).build().unwrap();
    client.record(event("rr-token")).unwrap();
    let report = client.close(Duration::from_secs(30)).await;
    assert_eq!((report.sent, report.rejected), (0, 1), "{report:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// Against a service that rate-limits it, the client slows down to what it is allowed, waiting
/// as `Retry-After` says, and delivers every event exactly once: nothing dropped, nothing
/// spilled, no attempt spent on the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_client_slows_down_and_drops_nothing() {
    let Some(app) = helpers::spawn_app_with(
        Backend::Postgres,
        AppOptions {
            rate_limit: Some((400, 200)),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let client = fast(AuditClient::builder(&app.base))
        .batch_size(100)
        .build()
        .unwrap();
    let mut recorded = HashSet::new();
    for i in 0..1200 {
        loop {
            match client.record(event(&format!("rr-rate-{}", i / 100))) {
                Ok(id) => {
                    recorded.insert(id);
                    break;
                }
                Err(RecordError::BufferFull) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let report = client.close(Duration::from_secs(60)).await;
    assert_eq!(report.sent, 1200, "{report:?}");
    assert_eq!(
        report.dropped + report.spilled + report.rejected + report.duplicates,
        0,
        "{report:?}"
    );
    assert_eq!(stored_ids(&app.db).await, recorded);
    let limited: f64 = app
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("datastorage_rate_limited_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        limited > 0.0,
        "the client was never limited: the test tests nothing"
    );
}

#[tokio::test]
async fn an_https_service_of_a_private_ca_gets_every_event_with_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_pki::TestCa::new("cluster CA");
    let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "datastorage");
    let ca_file = ca.write(dir.path(), "ca");
    let tokens_file = dir.path().join("tokens.yaml");
    let token = datastorage::auth::tokens::create(
        &tokens_file,
        datastorage::auth::tokens::TokenEntry::new(
            "contract-writer",
            [datastorage::auth::Role::Writer],
        ),
    )
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let Some(app) = helpers::spawn_app_with(
        Backend::Postgres,
        AppOptions {
            tokens_file: Some(tokens_file),
            tls: Some(datastorage::config::TlsSettings {
                cert_file: Some(cert),
                key_file: Some(key),
                ..Default::default()
            }),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    assert!(app.base.starts_with("https://"));
    // Without the CA the service is not trusted: nothing is sent, everything is kept.
    let untrusting = fast(AuditClient::builder(&app.base))
        .token(audit_client::TokenSource::File(token_file.clone()))
        .retry(1, Duration::from_millis(10), Duration::from_millis(10))
        .spill_dir(dir.path().join("spill"))
        .build()
        .unwrap();
    untrusting.record(event("rr-https-untrusted")).unwrap();
    let report = untrusting.close(Duration::from_secs(10)).await;
    assert_eq!((report.sent, report.spilled), (0, 1), "{report:?}");

    let client = fast(AuditClient::builder(&app.base))
        .token(audit_client::TokenSource::File(token_file))
        .ca_file(ca_file)
        .build()
        .unwrap();
    let recorded: HashSet<Uuid> = (0..50)
        .map(|i| {
            client
                .record(event(&format!("rr-https-{}", i % 5)))
                .unwrap()
        })
        .collect();
    let report = client.close(Duration::from_secs(30)).await;
    assert_eq!(report.sent, 50, "{report:?}");
    assert_eq!(stored_ids(&app.db).await, recorded);
    let TestDb::Postgres { pool, .. } = app.db.as_ref() else {
        unreachable!()
    };
    let writers: Vec<String> = sqlx::query_scalar("SELECT DISTINCT submitted_by FROM audit_events")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(writers, ["contract-writer"]);
}
