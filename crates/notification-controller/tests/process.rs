//! The `notification-controller` binary as operators run it: configured by environment
//! variables and a kubeconfig, elected leader through a Lease, serving health and metrics,
//! and on SIGTERM stopping cleanly: audit records flushed to Data Storage, Lease released.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;
mod support;

use std::time::Duration;

use helpers::{spawn_app, Backend, TestDb};
use notification_controller::crd::Phase;
use serde_json::json;
use support::binary;
use support::fake_api::FakeApiServer;
use support::receivers::ReceiverServer;

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_delivers_reports_metrics_and_stops_cleanly() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let api = FakeApiServer::start().await;
    let http = ReceiverServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The Slack webhook URL is a secret: mounted as a file.
    let slack_file = dir.path().join("slack-webhook-url");
    std::fs::write(&slack_file, format!("{}/slack\n", http.url)).unwrap();
    let metrics_port = binary::free_port();
    let mut child = binary::command(&api, &app.base, dir.path(), metrics_port)
        .env("SLACK_WEBHOOK_URL_FILE", &slack_file)
        .env("WEBHOOK_DEFAULT_URL", format!("{}/hook", http.url))
        .env("WEBHOOK_HMAC_SECRET", "k")
        .spawn()
        .unwrap();

    let base = format!("http://127.0.0.1:{metrics_port}");
    let web = reqwest::Client::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(r) = web.get(format!("{base}/health/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "the controller never became ready");

    let nr = binary::deliver(&api, json!(["slack", "webhook", "console"])).await;
    assert_eq!(nr.status.unwrap().phase, Some(Phase::Sent));
    // The final event is published after the status write's audit records and metrics.
    api.api
        .wait_for("events", |e| e["reason"] == "NotificationSent")
        .await;
    assert_eq!(http.receivers.on("/slack").len(), 1);
    let lease = &api.api.objects("leases")[0];
    assert_eq!(lease["spec"]["holderIdentity"], "notification-controller-0");

    let metrics = web
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for channel in ["slack", "webhook", "console"] {
        let labels = [
            "namespace=\"ops\"",
            "status=\"success\"",
            &format!("channel=\"{channel}\""),
        ];
        assert_eq!(
            sample(&metrics, "notification_deliveries_total", &labels),
            Some(1.0),
            "{metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "notification_phase",
            &["namespace=\"ops\"", "phase=\"Sent\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "notification_circuit_breaker_state",
            &["channel=\"slack\""]
        ),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("notification_delivery_duration_seconds"),
        "{metrics}"
    );
    // The audit client's families are there, and every family has its HELP text.
    assert_eq!(
        sample(
            &metrics,
            "audit_client_events_recorded_total",
            &["service=\"notification-controller\""]
        )
        .map(|n| n > 0.0),
        Some(true),
        "{metrics}"
    );
    let undescribed: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !metrics.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(undescribed.is_empty(), "no HELP: {undescribed:?}");

    // SIGTERM: the audit client is flushed and the Lease released before the process exits.
    let exit = binary::stop(&mut child).await;
    assert!(exit.success(), "{exit:?}");
    let TestDb::Postgres { pool, .. } = app.db.as_ref() else {
        unreachable!()
    };
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-2041'")
            .fetch_one(pool)
            .await
            .unwrap();
    // 3 phase changes (Pending, Sending, Sent), 3 attempts, 3 delivery records.
    assert_eq!(stored, 9);
    let lease = &api.api.objects("leases")[0];
    assert_eq!(lease["spec"]["holderIdentity"], serde_json::Value::Null);
}
