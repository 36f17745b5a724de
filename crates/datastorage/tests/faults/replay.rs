//! Replays: of events that were in fact stored, of conflicting events, and of events the store
//! keeps failing.

use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::dlq::DlqEntry;
use serde_json::json;

use crate::helpers::{spawn_app_with, AppOptions, Backend, TestApp};
use crate::outage::{identified_event, wait_for_drain};

async fn app_with(dlq: &str, schedule: Option<&str>) -> Option<TestApp> {
    let options = AppOptions {
        dlq_url: (dlq == "redis").then(|| "redis://127.0.0.1:6379".to_string()),
        dlq_redis_prefix: Some(format!("test:{}", uuid::Uuid::new_v4().simple())),
        replay_schedule: schedule.map(str::to_string),
        replay_poll_interval: Some("1h".into()),
        ..AppOptions::default()
    };
    if dlq == "redis"
        && redis::Client::open("redis://127.0.0.1:6379")
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err()
    {
        return crate::helpers::service_missing("Redis", "connection refused");
    }
    spawn_app_with(Backend::Postgres, options).await
}

/// The commit succeeded but its answer was lost, so the event is both stored and queued.
async fn replay_of_a_stored_event_is_done_not_duplicated(dlq: &str) {
    let Some(app) = app_with(dlq, None).await else {
        return;
    };
    let (_, e) = identified_event("rr-lost-answer");
    assert_eq!(app.post("/api/v1/audit/events", &e).await.0, 201);
    let event = AuditEvent::parse(e, Utc::now()).unwrap();
    app.dlq
        .enqueue(vec![DlqEntry::new(event, "commit answer lost")])
        .await
        .unwrap();
    let (status, report) = app
        .client
        .post(app.url("/api/v1/admin/dlq/replay"))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, 200);
    let report: serde_json::Value = report.json().await.unwrap();
    assert_eq!(
        report,
        json!({"replayed": 0, "duplicates": 1, "requeued": 0, "dead_lettered": 0, "remaining": 0})
    );
    assert_eq!(app.db.count().await, 1);
    // The replay itself is in the access trail.
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE event_type = 'datastorage.access.dlq'")
            .await,
        1
    );
    let (_, stats) = app.get("/api/v1/admin/dlq").await;
    assert_eq!(
        (stats["depth"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(0), Some(0))
    );
}

/// A queued event whose id is stored with other content is a dead letter, listed with its reason,
/// and an operator can put it back.
async fn conflicting_replay_becomes_a_dead_letter(dlq: &str) {
    let Some(app) = app_with(dlq, None).await else {
        return;
    };
    let (id, e) = identified_event("rr-conflict");
    assert_eq!(app.post("/api/v1/audit/events", &e).await.0, 201);
    let mut changed = e.clone();
    changed["event_data"] = json!({"forged": true});
    let event = AuditEvent::parse(changed, Utc::now()).unwrap();
    app.dlq
        .enqueue(vec![DlqEntry::new(event, "test")])
        .await
        .unwrap();
    let report: serde_json::Value = app
        .client
        .post(app.url("/api/v1/admin/dlq/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["dead_lettered"], 1);
    let (status, page) = app.get("/api/v1/admin/dlq/dead-letters?limit=10").await;
    assert_eq!(status, 200);
    let letters = page["data"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event"]["event_id"], id.as_str());
    assert!(letters[0]["reason"].as_str().unwrap().contains("conflict"));
    assert_eq!(app.db.count().await, 1);
    let stored = app
        .db
        .text(&format!(
            "SELECT CAST(event_data AS TEXT) FROM audit_events WHERE event_id = '{id}'"
        ))
        .await;
    assert!(!stored.contains("forged"), "the stored event is unchanged");

    let letter_id = letters[0]["id"].as_str().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/admin/dlq/dead-letters/{letter_id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, stats) = app.get("/api/v1/admin/dlq").await;
    assert_eq!(
        (stats["depth"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(1), Some(0))
    );
    let r = app
        .client
        .post(app.url(&format!("/api/v1/admin/dlq/dead-letters/{letter_id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// The store answers but refuses one event with a transient error every time: the entry follows
/// the backoff schedule, then becomes a dead letter; other events are unaffected.
async fn replay_failures_follow_the_schedule_then_dead_letter(dlq: &str) {
    let Some(app) = app_with(dlq, Some("10ms,10ms")).await else {
        return;
    };
    app.db
        .execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.correlation_id = 'rr-poison' THEN RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = '40001'; END IF; \
             RETURN NEW; END $$",
        )
        .await
        .unwrap();
    app.db
        .execute("CREATE TRIGGER poison BEFORE INSERT ON audit_content FOR EACH ROW EXECUTE FUNCTION poison()")
        .await
        .unwrap();
    let (_, poison) = identified_event("rr-poison");
    let (status, body) = app.post("/api/v1/audit/events", &poison).await;
    assert_eq!(status, 202, "a transient failure parks the event: {body}");
    let mut dead = 0;
    for _ in 0..100 {
        let report: serde_json::Value = app
            .client
            .post(app.url("/api/v1/admin/dlq/replay"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        dead += report["dead_lettered"].as_u64().unwrap();
        if dead > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The poison, and any access event that shared one of its failing batches (the trail of
    // these replay requests, written while the poison was being replayed).
    assert!(dead >= 1);
    let (_, page) = app.get("/api/v1/admin/dlq/dead-letters").await;
    let letters = page["data"].as_array().unwrap();
    assert!(
        letters
            .iter()
            .all(|l| l["event"]["correlation_id"] == "rr-poison"
                || l["event"]["event_type"] == "datastorage.access.dlq"),
        "{page}"
    );
    let letter = letters
        .iter()
        .find(|l| l["event"]["correlation_id"] == "rr-poison")
        .unwrap();
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("exhausted 3 replay attempts"),
        "{letter}"
    );
    // Other events are unaffected (the failure just now may still route one through the DLQ).
    let (_, ok) = identified_event("rr-fine");
    assert!(matches!(
        app.post("/api/v1/audit/events", &ok).await.0,
        201 | 202
    ));
    let r = app
        .client
        .post(app.url("/api/v1/admin/dlq/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for_drain(&app).await;
    assert_eq!(app.db.count().await, 1);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-fine'")
            .await,
        1
    );
}

macro_rules! on_both_backends {
    ($($test:ident),*) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$test("redis").await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn journal() {
                    super::$test("journal").await;
                }
            }
        )*
    };
}

on_both_backends!(
    replay_of_a_stored_event_is_done_not_duplicated,
    conflicting_replay_becomes_a_dead_letter,
    replay_failures_follow_the_schedule_then_dead_letter
);
