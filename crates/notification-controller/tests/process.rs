//! The `notification-controller` binary as operators run it: configured by environment
//! variables and a kubeconfig, elected leader through a Lease, serving health and metrics,
//! and on SIGTERM stopping cleanly: audit records flushed to Data Storage, Lease released.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;
mod support;

use std::process::Stdio;
use std::time::Duration;

use helpers::{spawn_app, Backend, TestDb};
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::Api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use notification_controller::crd::{NotificationRequest, Phase};
use serde_json::json;
use support::fake_api::FakeApiServer;
use support::harness::all_channels_spec;
use support::receivers::ReceiverServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: ops}}}}]\n",
            api.url
        ),
    )
    .unwrap();
    // The Slack webhook URL is a secret: mounted as a file.
    let slack_file = dir.path().join("slack-webhook-url");
    std::fs::write(&slack_file, format!("{}/slack\n", http.url)).unwrap();
    let metrics_port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_notification-controller"))
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("DATA_STORAGE_URL", &app.base)
        .env("AUDIT_SPILL_DIR", dir.path().join("spill"))
        .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("POD_NAMESPACE", "ops")
        .env("POD_NAME", "notification-controller-0")
        .env("SLACK_WEBHOOK_URL_FILE", &slack_file)
        .env("WEBHOOK_DEFAULT_URL", format!("{}/hook", http.url))
        .env("WEBHOOK_HMAC_SECRET", "k")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
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

    let notifications: Api<NotificationRequest> = Api::namespaced(api.client(), "ops");
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["slack", "webhook", "console"]);
    let nr: NotificationRequest = serde_json::from_value(json!({
        "apiVersion": "notification.kubernaut.ai/v1alpha1", "kind": "NotificationRequest",
        "metadata": {"name": "disk-full", "namespace": "ops"}, "spec": spec,
    }))
    .unwrap();
    notifications
        .create(&PostParams::default(), &nr)
        .await
        .unwrap();
    let done = |nr: Option<&NotificationRequest>| {
        nr.and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.completion_time.is_some())
    };
    let nr = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(notifications.clone(), "disk-full", done),
    )
    .await
    .expect("not delivered in time")
    .unwrap()
    .unwrap();
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

    // SIGTERM: the audit client is flushed and the Lease released before the process exits.
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the controller did not stop")
        .unwrap();
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
