//! The longest values the CRD allows, the same name in two namespaces, and secrets in a webhook
//! URL and a message body, end to end: controller → audit-client → `datastorage` → PostgreSQL,
//! with the process's log captured as the binary writes it (at debug level, the Kubernetes
//! client included). Every record is stored, none is refused, and no secret reaches a log line,
//! a status, a Kubernetes event or a stored row.
//!
//! One test in this binary: it installs the process-wide logger.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;
mod support;

use std::time::Duration;

use audit_client::AuditClient;
use audit_model::limits::{fit, MAX_SHORT};
use helpers::{spawn_app, Backend, TestDb};
use notification_controller::logging::MemoryLog;
use notification_controller::losses::Auditing;
use serde_json::json;
use support::harness::{all_channels_spec, Harness};

const URL_SECRET: &str = "tok-8f2c61d5e0b4";
const BODY_SECRET: &str = "hunter2-7d1a";

fn pool(db: &TestDb) -> &sqlx::PgPool {
    match db {
        TestDb::Postgres { pool, .. } => pool,
        TestDb::Sqlite { .. } => panic!("this test runs on PostgreSQL"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_values_and_same_names_are_stored_and_no_secret_is_written_anywhere() {
    let log = MemoryLog::default();
    let writer = log.clone();
    let _no_traces = notification_controller::logging::install(
        tracing_subscriber::EnvFilter::new("debug"),
        move || writer.clone(),
        &audit_tracing::TraceSettings::off("notification-controller"),
    );
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let spill = tempfile::tempdir().unwrap();
    let audit = Auditing::build(
        AuditClient::builder(&app.base)
            .flush_interval(Duration::from_millis(50))
            .spill_dir(spill.path())
            .service_name("notification-controller"),
    )
    .unwrap();
    let Some(h) = Harness::start(true, Some(audit.clone())).await else {
        return;
    };

    // The longest value the CRD allows in every field that reaches a record.
    let name = format!("n{}", "x".repeat(252)); // a Kubernetes name: 253 characters
    let hook = format!("{}/hook/", h.http.url);
    let query = format!("?token={URL_SECRET}");
    let path = "p".repeat(2048 - hook.len() - query.len());
    let webhook_url = format!("{hook}{path}{query}");
    assert_eq!(webhook_url.len(), 2048);
    let teams = "T".repeat(256);
    let slack = format!("#{}", "c".repeat(79));
    let remediation = format!("rr-{}", "r".repeat(997)); // metadata values have no limit
                                                         // 254 characters: a 64-character local part and a domain of three labels.
    let email = format!(
        "{}@{}.{}.{}",
        "e".repeat(64),
        "d".repeat(63),
        "d".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(email.len(), 254);
    let phone = "+123456789012345"; // E.164 at its longest
    let mut spec = all_channels_spec();
    spec["channels"] = json!(["webhook", "teams", "slack", "email", "sms"]);
    spec["recipients"] = json!([{
        "webhookURL": webhook_url, "teams": teams, "slack": slack, "email": email, "phone": phone
    }]);
    spec["subject"] = json!("S".repeat(500));
    spec["body"] = json!(format!("db password={BODY_SECRET} in the logs"));
    spec["metadata"] = json!({"remediationRequestName": remediation});
    // The same name in two namespaces, and an object this version cannot read.
    let ops = h.create_raw("ops", &name, spec.clone()).await;
    let dev = h.create_raw("dev", &name, spec.clone()).await;
    let mut unreadable = spec.clone();
    unreadable["channels"] = json!(["pagerduty"]);
    h.create_raw("ops", "from-a-newer-crd", unreadable).await;

    for ns in ["ops", "dev"] {
        let done = h.finished_in(ns, &name).await;
        assert_eq!(done["status"]["phase"], "Sent", "{done}");
    }
    h.api
        .api
        .wait_for("events", |e| {
            e["regarding"]["name"] == "from-a-newer-crd" && e["reason"] == "Unreadable"
        })
        .await;
    assert_eq!(h.http.receivers.on(&format!("/hook/{path}")).len(), 2);
    audit.client.flush().await;
    let report = audit.client.close(Duration::from_secs(10)).await;
    assert_eq!(
        (report.rejected, report.dropped, report.spilled),
        (0, 0, 0),
        "{report:?}"
    );

    // Every typed record is stored: five targets for each object, told apart by its uid.
    let pool = pool(&app.db);
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT notification_id, channel, recipient, status, remediation_id \
         FROM notification_audit ORDER BY notification_id, channel",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10, "{rows:#?}");
    let origin = h.http.url.clone();
    for object in [&ops, &dev] {
        let uid = object["metadata"]["uid"].as_str().unwrap();
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == uid).collect();
        let by_channel: Vec<(&str, &str, &str)> = mine
            .iter()
            .map(|r| (r.1.as_str(), r.2.as_str(), r.3.as_str()))
            .collect();
        assert_eq!(
            by_channel,
            [
                ("email", email.as_str(), "sent"),
                ("slack", slack.as_str(), "sent"),
                ("sms", phone, "sent"),
                ("teams", &*fit(&teams, MAX_SHORT), "sent"),
                ("webhook", origin.as_str(), "sent"),
            ]
        );
        for r in mine {
            assert_eq!(r.4, fit(&remediation, MAX_SHORT));
        }
    }
    assert_eq!(fit(&teams, MAX_SHORT).chars().count(), MAX_SHORT);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(pool)
        .await
        .unwrap();
    // Each object: three phase changes (Pending, Sending, Sent), five attempts, five records.
    assert_eq!(stored, 2 * (3 + 5 + 5));

    // No secret anywhere it could stay: stored rows, statuses, events, the log.
    for secret in [URL_SECRET, BODY_SECRET] {
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events e WHERE to_jsonb(e)::text LIKE '%' || $1 || '%'",
        )
        .bind(secret)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(rows, 0, "{secret} is stored");
        for o in h.api.api.objects("notificationrequests") {
            assert!(
                !o["status"].to_string().contains(secret),
                "{secret} in a status: {o}"
            );
        }
        for e in h.api.api.objects("events") {
            assert!(!e.to_string().contains(secret), "{secret} in an event: {e}");
        }
        let text = log.text();
        let leaks: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} in the log: {leaks:#?}");
    }
    let text = log.text();
    assert!(
        text.contains("cannot read this NotificationRequest"),
        "the log was captured"
    );
}
