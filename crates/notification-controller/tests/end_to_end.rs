//! End to end: controller → audit-client → `datastorage` → PostgreSQL. The controller runs its
//! real loop against the fake API server and delivers to real receivers; the audit trail is read
//! back from the database.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use audit_client::AuditClient;
use helpers::{spawn_app, start_on, AppOptions, Backend, TestApp, TestDb};
use notification_controller::crd::Phase;
use notification_controller::losses::Auditing;
use serde_json::{json, Value};
use support::harness::{all_channels_spec, Harness};

const CORRELATION: &str = "rr-2041";
/// 4 phase changes, 5 attempts (Slack fails twice), 3 delivery records.
const EXPECTED_EVENTS: i64 = 12;

fn audit_client(base: &str, spill: &std::path::Path) -> Auditing {
    Auditing::build(audit_builder(base, spill)).unwrap()
}

fn audit_builder(base: &str, spill: &std::path::Path) -> audit_client::AuditClientBuilder {
    AuditClient::builder(base)
        .flush_interval(Duration::from_millis(50))
        .retry(2, Duration::from_millis(20), Duration::from_millis(100))
        .request_timeout(Duration::from_secs(2))
        .spill_dir(spill)
        .service_name("notification-controller")
}

fn three_channels_slack_failing_twice(h: &Harness) -> Value {
    h.http.receivers.script("/slack", &[503, 503]);
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["slack", "webhook", "console"]);
    spec
}

fn pool(db: &TestDb) -> &sqlx::PgPool {
    match db {
        TestDb::Postgres { pool, .. } => pool,
        TestDb::Sqlite { .. } => panic!("end-to-end tests run on PostgreSQL"),
    }
}

async fn stored_count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE correlation_id = $1")
        .bind(CORRELATION)
        .fetch_one(pool(db))
        .await
        .unwrap()
}

/// Checks the exact trail of the three-channel notification.
async fn assert_trail(db: &TestDb) {
    let pool = pool(db);
    let rows: Vec<(String, Value, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT event_type, event_data, resource_id, namespace, actor_id, event_id::text \
         FROM audit_events WHERE correlation_id = $1 ORDER BY seq",
    )
    .bind(CORRELATION)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, EXPECTED_EVENTS, "{rows:#?}");
    let distinct: std::collections::HashSet<&str> = rows.iter().map(|r| r.5.as_str()).collect();
    assert_eq!(distinct.len(), rows.len(), "an event was stored twice");
    for (event_type, _, resource, _, actor, _) in &rows {
        assert_eq!(actor, "notification-controller");
        if event_type.starts_with("notification.delivery.") {
            // The typed record's subject is its notification_id: the object's uid, unique
            // across namespaces and re-creations.
            assert!(uuid::Uuid::parse_str(resource).is_ok(), "{resource}");
        } else {
            assert_eq!(resource, "disk-full");
        }
    }

    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *by_type.entry(r.0.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_type,
        BTreeMap::from([
            ("notification.delivery.sent", 3),
            ("notification.message.failed", 2),
            ("notification.message.sent", 3),
            ("notification.phase.transitioned", 4),
        ])
    );

    let mut phases: Vec<(Value, Value)> = rows
        .iter()
        .filter(|r| r.0 == "notification.phase.transitioned")
        .map(|r| (r.1["old_phase"].clone(), r.1["new_phase"].clone()))
        .collect();
    phases.sort_by_key(|(_, new)| {
        ["Pending", "Sending", "Retrying", "Sent"]
            .iter()
            .position(|p| new == p)
    });
    assert_eq!(
        phases,
        [
            (Value::Null, json!("Pending")),
            (json!("Pending"), json!("Sending")),
            (json!("Sending"), json!("Retrying")),
            (json!("Retrying"), json!("Sent")),
        ]
    );
    for r in rows
        .iter()
        .filter(|r| r.0 == "notification.phase.transitioned")
    {
        assert_eq!(r.3.as_deref(), Some("ops"));
    }

    let mut slack: Vec<(i64, String)> = rows
        .iter()
        .filter(|r| r.0.starts_with("notification.message.") && r.1["channel"] == "slack")
        .map(|r| {
            (
                r.1["attempt"].as_i64().unwrap(),
                r.1["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    slack.sort();
    assert_eq!(
        slack,
        [
            (1, "failed".into()),
            (2, "failed".into()),
            (3, "success".into())
        ]
    );

    let records: Vec<(String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT channel, recipient, status, delivery_status, message_summary \
         FROM notification_audit WHERE remediation_id = $1 ORDER BY channel",
    )
    .bind(CORRELATION)
    .fetch_all(pool)
    .await
    .unwrap();
    let summary = "Disk full on node-1".to_string();
    assert_eq!(
        records,
        [
            (
                "console".into(),
                "console".into(),
                "sent".into(),
                Some("written to stdout".into()),
                summary.clone()
            ),
            (
                "slack".into(),
                "#ops".into(),
                "sent".into(),
                Some("200 OK".into()),
                summary.clone()
            ),
            (
                "webhook".into(),
                "default".into(),
                "sent".into(),
                Some("200 OK".into()),
                summary
            ),
        ]
    );
}

/// The three-channel notification delivered by the controller (Slack failing twice), its
/// trail flushed to `app`; `None` when the harness cannot run here.
async fn deliver_three_channels(app: &TestApp, spill: &std::path::Path) -> Option<Auditing> {
    let audit = audit_client(&app.base, spill);
    let h = Harness::start(false, Some(audit.clone())).await?;
    h.create(three_channels_slack_failing_twice(&h)).await;
    let status = h.finished("disk-full").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Sent));
    audit.client.flush().await;
    Some(audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_exactly_the_expected_trail() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let spill = tempfile::tempdir().unwrap();
    let Some(audit) = deliver_three_channels(&app, spill.path()).await else {
        return;
    };
    assert_trail(&app.db).await;
    let report = audit.client.close(Duration::from_secs(5)).await;
    assert_eq!(
        (report.sent, report.rejected, report.dropped),
        (12, 0, 0),
        "{report:?}"
    );
    assert_timeline(&app).await;
}

/// The remediation's timeline joins the phases, the attempts and the typed records into the
/// notification's one lifecycle, complete.
async fn assert_timeline(app: &TestApp) {
    let (status, timeline) = app
        .get(&format!(
            "/api/v1/audit/remediations/{CORRELATION}/timeline"
        ))
        .await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["summary"]["event_count"], EXPECTED_EVENTS);
    assert_eq!(timeline["summary"]["completeness"], 100, "{timeline:#}");
    assert_eq!(
        timeline["summary"]["outcomes"],
        json!({"notification": "success"})
    );
    let lifecycles = timeline["lifecycles"].as_array().unwrap();
    assert_eq!(lifecycles.len(), 1, "{timeline:#}");
    let notification = &lifecycles[0];
    assert_eq!(notification["event_count"], EXPECTED_EVENTS);
    assert_eq!(notification["failures"], 2);
    assert_eq!(notification["outcome"], "success");
    assert_eq!(notification["findings"], json!([]));
    let phases: Vec<&str> = notification["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["Pending", "Sending", "Retrying", "Sent"]);
}

/// The same trail on the embedded SQLite store, read back as the remediation's timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_of_the_trail_on_sqlite() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let spill = tempfile::tempdir().unwrap();
    let Some(audit) = deliver_three_channels(&app, spill.path()).await else {
        return;
    };
    let report = audit.client.close(Duration::from_secs(5)).await;
    assert_eq!((report.sent, report.dropped), (12, 0), "{report:?}");
    assert_timeline(&app).await;
}

/// Stops Data Storage (gracefully) and returns what is needed to start it again on the same
/// address and database.
async fn stop(app: TestApp) -> (String, std::sync::Arc<TestDb>) {
    let addr = app.base.trim_start_matches("http://").to_string();
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();
    (addr, app.db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_data_storage_down_the_trail_arrives_later_once() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let spill = tempfile::tempdir().unwrap();
    let audit = audit_client(&app.base, spill.path());
    let (addr, db) = stop(app).await;

    let Some(h) = Harness::start(false, Some(audit.clone())).await else {
        return;
    };
    h.create(three_channels_slack_failing_twice(&h)).await;
    let status = h.finished("disk-full").await.status.unwrap();
    assert_eq!(
        status.phase,
        Some(Phase::Sent),
        "auditing must not hold delivery back"
    );
    audit.client.flush().await;
    let spilled = audit.client.report().spilled;
    assert!(
        spilled > 0,
        "nothing was spilled: {:?}",
        audit.client.report()
    );
    assert_eq!(stored_count(&db).await, 0);

    // Data Storage comes back: the spill is re-sent.
    let options = AppOptions {
        listen: Some(addr),
        ..AppOptions::default()
    };
    let _app = start_on(db.clone(), Backend::Postgres, options).await;
    let arrived = tokio::time::timeout(Duration::from_secs(60), async {
        while stored_count(&db).await < EXPECTED_EVENTS {
            audit.client.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "only {} events arrived",
        stored_count(&db).await
    );
    assert_trail(&db).await;
    let report = audit.client.close(Duration::from_secs(5)).await;
    assert_eq!(report.dropped, 0, "{report:?}");
}

/// With authentication on, the controller writes with its own token (from a file, as the
/// projected ServiceAccount token is mounted): every event of its trail carries its principal,
/// and the same token cannot write another service's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_the_trail_carries_the_controllers_principal() {
    use datastorage::auth::tokens::{self, TokenEntry};
    use datastorage::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens.yaml");
    let token = tokens::create(
        &tokens_file,
        TokenEntry::new("notification-controller", [Role::Writer])
            .with_event_types(["notification."]),
    )
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let Some(app) = helpers::spawn_app_with(
        Backend::Postgres,
        AppOptions {
            tokens_file: Some(tokens_file),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let spill = tempfile::tempdir().unwrap();
    let audit = Auditing::build(
        audit_builder(&app.base, spill.path()).token(audit_client::TokenSource::File(token_file)),
    )
    .unwrap();
    let Some(h) = Harness::start(false, Some(audit.clone())).await else {
        return;
    };
    h.create(three_channels_slack_failing_twice(&h)).await;
    let status = h.finished("disk-full").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Sent));
    audit.client.flush().await;
    assert_trail(&app.db).await;
    let writers: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT submitted_by, count(*) FROM audit_events WHERE correlation_id = $1 GROUP BY 1",
    )
    .bind(CORRELATION)
    .fetch_all(pool(&app.db))
    .await
    .unwrap();
    assert_eq!(
        writers,
        [(Some("notification-controller".to_string()), EXPECTED_EVENTS)]
    );
    // The controller's token cannot write another service's trail.
    let forged = reqwest::Client::new()
        .post(app.url("/api/v1/audit/events"))
        .bearer_auth(&token)
        .json(&json!({
            "event_type": "workflowexecution.workflow.completed", "event_category": "workflowexecution",
            "event_action": "completed", "event_outcome": "success", "correlation_id": CORRELATION,
            "event_data": {}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(stored_count(&app.db).await, EXPECTED_EVENTS);
    let report = audit.client.close(Duration::from_secs(5)).await;
    assert_eq!(
        (report.sent, report.rejected, report.dropped),
        (12, 0, 0),
        "{report:?}"
    );
}
