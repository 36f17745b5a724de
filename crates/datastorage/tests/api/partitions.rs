//! PostgreSQL keeps the log's leaves for ever and the events' content in monthly partitions:
//! retention drops a month whose events all expired and none is held, purges the rest row by
//! row, and the log still verifies; the service makes the partitions itself; a log written by
//! the schema before migrates in place.

use std::sync::Arc;

use audit_model::{AuditEvent, EventField, NotificationAudit, RecordRules, SeedRecord};
use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Utc};
use datastorage::retention::run_once;
use datastorage::store::DroppedPartition;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    event, eventually, spawn_app_with, start_on, write_as_before, AppOptions, Backend, TestApp,
    TestDb,
};

/// The 15th of the month `months_ago` months before this one (UTC).
fn in_month(months_ago: u32) -> DateTime<Utc> {
    let now = Utc::now();
    let first = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    first.checked_sub_months(Months::new(months_ago)).unwrap() + Duration::days(14)
}

/// The content partition of the month of `at`.
fn partition_of(at: DateTime<Utc>) -> String {
    format!("audit_content_{}", at.format("%Y_%m"))
}

/// An event of `correlation` stamped `at`, kept `retention_days`.
fn dated(correlation: &str, at: DateTime<Utc>, retention_days: i64, i: usize) -> Value {
    let mut e = event(correlation);
    e["event_timestamp"] = json!(audit_model::timestamp::format(&at));
    e["retention_days"] = json!(retention_days);
    e["event_data"] = json!({"i": i});
    e
}

fn pool_of(app: &TestApp) -> &PgPool {
    match app.db.as_ref() {
        TestDb::Postgres { pool, .. } => pool,
        TestDb::Sqlite { .. } => unreachable!("a PostgreSQL test"),
    }
}

async fn partition_exists(app: &TestApp, name: &str) -> bool {
    app.db
        .scalar(&format!(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_content'::regclass AND c.relname = '{name}'"
        ))
        .await
        == 1
}

/// Writes `batch` in one request; the stored events' ids, in order.
async fn write(app: &TestApp, batch: Vec<Value>) -> Vec<String> {
    let (status, written) = app.post("/api/v1/audit/events/batch", &json!(batch)).await;
    assert_eq!(status, 200, "{written}");
    written["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

async fn status_of(app: &TestApp, id: &str) -> u16 {
    app.get(&format!("/api/v1/audit/events/{id}")).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_months_are_dropped_whole_and_the_rest_purged_row_by_row() {
    let Some(app) = spawn_app_with(Backend::Postgres, AppOptions::default()).await else {
        return;
    };
    app.place_hold("rr-held").await;
    let (oldest, old, recent) = (in_month(4), in_month(3), in_month(2));
    // Four months ago: one event kept ten years. Three months ago: 50 events kept a day. Two
    // months ago: 20 events kept a day and one under hold. Now: two events.
    let kept = write(&app, vec![dated("rr-kept", oldest, 3650, 0)]).await;
    let expired = write(&app, (0..50).map(|i| dated("rr-a", old, 1, i)).collect()).await;
    let mut batch: Vec<Value> = (0..20).map(|i| dated("rr-b", recent, 1, i)).collect();
    batch.push(dated("rr-held", recent, 1, 20));
    let mixed = write(&app, batch).await;
    let fresh = write(&app, vec![event("rr-now"), event("rr-now")]).await;
    for at in [oldest, old, recent, Utc::now()] {
        assert!(partition_exists(&app, &partition_of(at)).await, "{at}");
    }

    let store = app.open_store().await;
    let report = run_once(store.as_ref(), 7, Utc::now()).await.unwrap();
    // Three months ago went whole; two months ago row by row, the held event kept.
    assert_eq!(report.dropped_partitions.len(), 1, "{report:?}");
    let DroppedPartition {
        partition,
        events,
        first_seq,
        last_seq,
    } = &report.dropped_partitions[0];
    assert_eq!(
        (partition.as_str(), *events, last_seq - first_seq + 1),
        (partition_of(old).as_str(), 50, 50)
    );
    assert_eq!((report.purged, report.held), (70, 1), "{report:?}");
    assert_eq!(report.batches, 3, "20 rows in batches of 7");
    assert!(!partition_exists(&app, &partition_of(old)).await);
    let recorded = app
        .db
        .scalar("SELECT events FROM retention_dropped_partitions")
        .await;
    assert_eq!(recorded, 50);
    let left = app
        .db
        .scalar(&format!("SELECT count(*) FROM {}", partition_of(recent)))
        .await;
    assert_eq!(
        left, 1,
        "only the held event's content is left of that month"
    );
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE purged_at IS NOT NULL")
            .await,
        70
    );
    assert_eq!(status_of(&app, &expired[17]).await, 410);
    assert_eq!(status_of(&app, &mixed[3]).await, 410);
    assert_eq!(status_of(&app, &mixed[20]).await, 200);
    assert_eq!(status_of(&app, &kept[0]).await, 200);
    assert_eq!(status_of(&app, &fresh[1]).await, 200);
    let (_, listed) = app.get("/api/v1/audit/events?correlation_id=rr-a").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
    // The drop is history: it cannot be unsaid.
    let err = app
        .db
        .execute("DELETE FROM retention_dropped_partitions")
        .await
        .expect_err("the record of a drop is append-only");
    assert!(err.contains("append-only"), "{err}");
    let total = app.db.count().await;
    let verified = app.assert_log_verifies(total).await;
    assert_eq!(verified.purged, 70, "{verified:?}");

    // A late event of the dropped month gets its partition again; the dropped stay purged.
    let late = write(&app, vec![dated("rr-late", old, 3650, 0)]).await;
    assert!(partition_exists(&app, &partition_of(old)).await);
    let (status, back) = app.get(&format!("/api/v1/audit/events/{}", late[0])).await;
    assert_eq!((status, &back["correlation_id"]), (200, &json!("rr-late")));
    assert_eq!(status_of(&app, &expired[0]).await, 410);

    // Released, the hold no longer keeps its month: the next run drops it whole.
    app.release_hold("rr-held").await;
    let report = run_once(store.as_ref(), 7, Utc::now()).await.unwrap();
    let dropped: Vec<(&str, i64)> = report
        .dropped_partitions
        .iter()
        .map(|d| (d.partition.as_str(), d.events))
        .collect();
    assert_eq!(dropped, [(partition_of(recent).as_str(), 1)]);
    assert_eq!((report.purged, report.batches), (1, 0), "{report:?}");
    assert_eq!(status_of(&app, &mixed[20]).await, 410);
    assert_eq!(status_of(&app, &late[0]).await, 200);
    let total = app.db.count().await;
    let verified = app.assert_log_verifies(total).await;
    assert_eq!(verified.purged, 71, "{verified:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_makes_the_partitions_ahead_and_for_any_month_an_event_names() {
    let Some(app) = spawn_app_with(Backend::Postgres, AppOptions::default()).await else {
        return;
    };
    // This month's and the next two, made at the start.
    let now = Utc::now();
    for ahead in 0..=datastorage::retention::PARTITIONS_AHEAD {
        let month = partition_of(now.checked_add_months(Months::new(ahead)).unwrap());
        eventually("the partitions ahead", || async {
            partition_exists(&app, &month).await.then_some(())
        })
        .await;
    }
    // Made again, nothing new.
    let store = app.open_store().await;
    let created = store
        .prepare_partitions(now, datastorage::retention::PARTITIONS_AHEAD)
        .await
        .unwrap();
    assert_eq!(created, Vec::<String>::new());
    store.close().await;
    // An event from long ago: its month's partition is made by the append.
    let long_ago = Utc.with_ymd_and_hms(2021, 2, 3, 4, 5, 6).unwrap();
    assert!(!partition_exists(&app, "audit_content_2021_02").await);
    let id = write(&app, vec![dated("rr-long-ago", long_ago, 3650, 9)]).await;
    assert!(partition_exists(&app, "audit_content_2021_02").await);
    let (status, back) = app.get(&format!("/api/v1/audit/events/{}", id[0])).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["event_data"], json!({"i": 9}));
    let rows = app
        .db
        .scalar("SELECT count(*) FROM audit_content_2021_02")
        .await;
    assert_eq!(rows, 1);
}

/// Every row of the log as JSON, in seq order, as the one view reads it.
async fn log_rows(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(e) FROM audit_events e ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_schema_before_migrates_in_place() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    db.migrate_before(9).await;
    // Events over three months, a typed record among them, written as that schema stored them.
    let months = [in_month(5), in_month(1), Utc::now()];
    let mut events: Vec<AuditEvent> = (0..30)
        .map(|i| {
            let at = months[i % 3] - Duration::minutes(i as i64);
            let retention = if i == 3 { 1 } else { 2555 };
            AuditEvent::parse(dated("rr-migrated", at, retention, i), Utc::now()).unwrap()
        })
        .collect();
    let record = NotificationAudit::parse(
        json!({
            "remediation_id": "rr-migrated", "notification_id": "n-1", "recipient": "#ops",
            "channel": "slack", "message_summary": "Pod restarted", "status": "sent",
            "sent_at": "2026-11-01T00:00:00Z", "escalation_level": 0, "delivery_status": "200 OK"
        }),
        &RecordRules {
            now: Utc::now(),
            embedding_dimension: 1536,
        },
    )
    .unwrap();
    events.push(record.to_event(Utc::now().into()));
    write_as_before(&db, &events, &[EventField::ReceivedAt]).await;
    // The fourth event (seq 4) expired: purged as that schema did, its content blanked in place.
    let blank: Vec<String> = [
        "event_version",
        "event_type",
        "event_category",
        "event_action",
        "event_outcome",
        "actor_type",
        "actor_id",
        "resource_type",
        "resource_id",
        "correlation_id",
        "event_data",
    ]
    .iter()
    .map(|c| format!("{c} = NULL"))
    .collect();
    db.execute(&format!(
        "UPDATE audit_events SET purged_at = now(), {} WHERE seq = 4",
        blank.join(", ")
    ))
    .await
    .unwrap();
    let TestDb::Postgres { pool, .. } = &db else {
        unreachable!()
    };
    let before = log_rows(pool).await;
    assert_eq!(before.len(), 31);
    let record_before = db.scalar("SELECT count(*) FROM notification_audit").await;
    assert_eq!(record_before, 1);

    // The service migrates it: every row reads as it did, column for column.
    let app = start_on(Arc::new(db), Backend::Postgres, AppOptions::default()).await;
    assert_eq!(log_rows(pool_of(&app)).await, before);
    for at in months {
        assert!(partition_exists(&app, &partition_of(at)).await, "{at}");
    }
    assert_eq!(app.db.scalar("SELECT count(*) FROM audit_leaves").await, 31);
    // Without the `(event_type, seq)` index no read used (migration 0012), on every partition.
    let type_seq = app
        .db
        .scalar("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%(event_type text_pattern_ops, seq)%'")
        .await;
    assert_eq!(type_seq, 0);
    assert_eq!(
        app.db.scalar("SELECT count(*) FROM audit_content").await,
        30
    );
    // Each content row holds its leaf's copy, and the queries read it from there.
    assert_eq!(
        app.db
            .scalar(
                "SELECT count(*) FROM audit_content c JOIN audit_leaves l USING (seq) \
                 WHERE (c.event_id, c.leaf_hash, c.received_at, c.submitted_by, c.committed_at) \
                   IS NOT DISTINCT FROM \
                   (l.event_id, l.leaf_hash, l.received_at, l.submitted_by, l.committed_at)"
            )
            .await,
        30
    );
    let (status, page) = app
        .get("/api/v1/audit/events?correlation_id=rr-migrated&limit=100")
        .await;
    assert_eq!(status, 200, "{page}");
    let mut listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let mut held: Vec<&str> = before
        .iter()
        .filter(|e| e["purged_at"].is_null())
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    held.sort_unstable();
    assert_eq!((listed.len(), listed), (30, held));
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM notification_audit")
            .await,
        1
    );
    let (status, page) = app
        .get("/api/v1/audit/notifications?remediation_id=rr-migrated")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["notification_id"], "n-1");
    assert_eq!(
        status_of(&app, &events[3].event_id().to_string()).await,
        410
    );
    let (status, back) = app
        .get(&format!("/api/v1/audit/events/{}", events[7].event_id()))
        .await;
    assert_eq!((status, &back["event_data"]), (200, &json!({"i": 7})));
    // It goes on: a new event, and every proof over old and new rows.
    let new = write(&app, vec![event("rr-after")]).await;
    assert_eq!(status_of(&app, &new[0]).await, 200);
    let total = app.db.count().await;
    let verified = app.assert_log_verifies(total).await;
    assert_eq!((verified.events, verified.purged), (32, 1), "{verified:?}");
}
