//! Probes, metrics, the OpenAPI document and unknown routes.

use crate::helpers::{event, spawn_app, Backend, TestApp};
use crate::on_both_stores;

on_both_stores!(ready_reports_the_store_and_turns_503_when_draining);

async fn ready_reports_the_store_and_turns_503_when_draining(app: TestApp) {
    let (status, live) = app.get("/health/live").await;
    assert_eq!((status, live["status"].as_str()), (200, Some("alive")));
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, 200);
    let want = match app.backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    assert_eq!(ready["store"]["backend"], want);
    assert_eq!(ready["store"]["ok"], true);
    assert_eq!(ready["dlq"]["backend"], "journal");
    assert_eq!(ready["dlq"]["ok"], true);
    // The platform's probes: the same state in their shape.
    let (status, healthz) = app.get("/healthz").await;
    assert_eq!((status, healthz["status"].as_str()), (200, Some("healthy")));
    let stamp = healthz["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );
    let (status, readyz) = app.get("/readyz").await;
    assert_eq!((status, readyz["status"].as_str()), (200, Some("ready")));
    assert_eq!(readyz["store"]["backend"], want);
    assert_eq!(readyz["store"]["ok"], true);
    assert!(readyz.get("reason").is_none(), "{readyz}");
    app.shutdown.begin();
    // The test app has no propagation delay, so the listener may already be closing; if a
    // probe is answered, it must be a 503 (with the platform's reason on /readyz).
    if let Ok(r) = app.client.get(app.url("/health/ready")).send().await {
        assert_eq!(r.status(), 503);
    }
    if let Ok(r) = app.client.get(app.url("/readyz")).send().await {
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["reason"], "shutting_down");
    }
    app.handle
        .await
        .expect("server task")
        .expect("clean shutdown");
}

#[tokio::test]
async fn metrics_use_the_platform_names() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    app.post("/api/v1/audit/events", &event("rr-metrics")).await;
    let mut bad = event("rr-metrics");
    bad["event_outcome"] = serde_json::json!("maybe");
    app.post("/api/v1/audit/events", &bad).await;
    let text = app.metrics().await;
    for name in [
        "datastorage_audit_traces_total{service=\"notification\",status=\"success\"}",
        "datastorage_write_duration_seconds_bucket{table=\"audit_events\"",
        "datastorage_audit_lag_seconds_bucket{service=\"notification\"",
        "datastorage_validation_failures_total{field=\"event_outcome\",reason=\"invalid_value\"}",
        "datastorage_ingest_batch_size_bucket",
        "datastorage_ingest_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_are_described_per_route_and_pass_promtool() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for _ in 0..3 {
        let (status, _) = app.post("/api/v1/audit/events", &event("rr-metrics")).await;
        assert_eq!(status, 201);
    }
    // The newest checkpoint's size and time.
    let checkpoint = crate::helpers::checkpoint_covering(&app, 3).await;
    let signed = chrono::DateTime::parse_from_rfc3339(checkpoint["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let (status, _) = app.get("/api/v1/audit/events/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/no/such/path").await;
    assert_eq!(status, 404);
    let text = app.metrics().await;
    // By route template (not the path), method and status.
    let posted = r#"datastorage_http_requests_total{route="/api/v1/audit/events",method="POST",status="201"}"#;
    assert_eq!(sample(&text, posted), Some(3.0), "{text}");
    let templated = r#"datastorage_http_requests_total{route="/api/v1/audit/events/{event_id}",method="GET",status="400"}"#;
    assert_eq!(sample(&text, templated), Some(1.0), "{text}");
    let unmatched =
        r#"datastorage_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    assert_eq!(sample(&text, unmatched), Some(1.0), "{text}");
    let timed = r#"datastorage_http_request_duration_seconds_count{route="/api/v1/audit/events",method="POST"}"#;
    assert_eq!(sample(&text, timed), Some(3.0), "{text}");
    let build = format!(
        r#"datastorage_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    let rss = sample(&text, "process_resident_memory_bytes")
        .unwrap_or_else(|| panic!("no process_resident_memory_bytes in {text}"));
    assert!(rss > 1e6, "{rss}");
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n >= 3.0));
    // The log's head, the DLQ's capacity, the holds in force.
    assert_eq!(
        sample(&text, "datastorage_log_head_seq"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "datastorage_dlq_capacity"),
        Some(1_000_000.0),
        "{text}"
    );
    assert_eq!(sample(&text, "datastorage_legal_holds_active"), Some(0.0));
    assert_eq!(
        sample(&text, "datastorage_tree_size"),
        checkpoint["tree_size"].as_f64()
    );
    let at = sample(&text, "datastorage_checkpoint_timestamp_seconds").expect("its time");
    assert_eq!(at.floor() as i64, signed, "{text}");
    // Every family has its HELP text.
    let undescribed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !text.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(undescribed.is_empty(), "no HELP: {undescribed:?}");
    // And Prometheus's own linter has nothing to say.
    let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is missing under CI (.ci/run installs Debian's prometheus)"
        );
        eprintln!(
            "SKIPPED the promtool check: promtool is not installed (apt-get install prometheus)"
        );
        return;
    };
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[tokio::test]
async fn served_openapi_matches_the_committed_copy() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../api/openapi.json"
    ))
    .expect("api/openapi.json is committed");
    let generated = datastorage::http::openapi::document();
    assert!(
        committed == generated,
        "api/openapi.json is stale: run `cargo run -p datastorage -- openapi > api/openapi.json`"
    );
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (status, served) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(&committed).unwrap()
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/audit/events",
        "/api/v1/audit/events/batch",
        "/api/v1/audit/events/{event_id}",
        "/health/ready",
    ] {
        assert!(served["paths"][path].is_object(), "{path} not documented");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let r = app
        .client
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app
        .client
        .delete(app.url("/api/v1/audit/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_connection_buffer_is_bounded_and_still_reads_larger_bodies() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    // A request head is held in the read buffer whole, so a head well above it is refused
    // (hyper's default buffer would take this one).
    let r = app
        .client
        .get(app.url("/health/live"))
        .header("x-padding", "p".repeat(160 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = app
        .client
        .get(app.url("/health/live"))
        .header("x-padding", "p".repeat(32 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A body many times the buffer is read in several reads, and every event in it is stored.
    let batch: Vec<_> = (0..400)
        .map(|i| {
            let mut e = event("rr-large-body");
            e["event_data"] = serde_json::json!({"i": i, "note": "n".repeat(2048)});
            e
        })
        .collect();
    let body = serde_json::Value::Array(batch);
    assert!(body.to_string().len() > 800 * 1024);
    let (status, answer) = app.post("/api/v1/audit/events/batch", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["summary"]["created"], 400);
    assert_eq!(app.db.count().await, 400);
}
