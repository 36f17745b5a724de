//! Legal hold and retention over HTTP: holds and releases are audit events, the retention worker
//! purges only expired events no hold keeps, and the purged log still verifies.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    checkpoint_covering, event, eventually, spawn_app_with, AppOptions, Backend, TestApp,
};
use crate::on_both_stores;

const HOLD: &str = "/api/v1/audit/legal-hold";

/// The log's events of `event_type` under `correlation`.
async fn events_of(app: &TestApp, correlation: &str, event_type: &str) -> Vec<Value> {
    let (status, page) = app
        .get(&format!(
            "/api/v1/audit/events?correlation_id={correlation}&event_type={event_type}&limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn legal_holds_are_placed_listed_released_and_audited(app: TestApp) {
    let body = json!({"correlation_id": "rr-case", "reason": "case 2041", "requested_by": "legal@example.com"});
    let (status, hold) = app.post(HOLD, &body).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(
        (
            &hold["correlation_id"],
            &hold["reason"],
            &hold["placed_by"],
            &hold["released_at"]
        ),
        (
            &json!("rr-case"),
            &json!("case 2041"),
            &json!("legal@example.com"),
            &Value::Null
        )
    );
    // A retry answers the same hold; another reason is a conflict.
    let (status, again) = app.post(HOLD, &body).await;
    assert_eq!((status, &again["id"]), (200, &hold["id"]), "{again}");
    let (status, problem) = app
        .post(
            HOLD,
            &json!({"correlation_id": "rr-case", "reason": "another"}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("case 2041"));

    let (status, list) = app.get(HOLD).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], hold["id"]);

    // The hold is an event of the held correlation, stored once despite the retry.
    let placed = events_of(&app, "rr-case", "datastorage.legal_hold.placed").await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0]["actor_id"], "legal@example.com");
    assert_eq!(placed[0]["event_data"]["reason"], "case 2041");
    assert_eq!(placed[0]["event_data"]["id"], hold["id"]);

    let release = json!({"release_reason": "case closed", "requested_by": "legal@example.com"});
    let path = format!("{HOLD}/rr-case");
    let (status, released) = app.send(Method::DELETE, &path, &release).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["release_reason"], "case closed");
    assert!(released["released_at"].is_string());
    // A retried release answers the released hold; a release of nothing is 404.
    let (status, again) = app.send(Method::DELETE, &path, &release).await;
    assert_eq!((status, &again["id"]), (200, &hold["id"]), "{again}");
    let (status, problem) = app
        .send(Method::DELETE, &path, &json!({"release_reason": "other"}))
        .await;
    assert_eq!(status, 404, "{problem}");
    let releases = events_of(&app, "rr-case", "datastorage.legal_hold.released").await;
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0]["event_data"]["release_reason"], "case closed");

    let (_, active) = app.get(HOLD).await;
    assert_eq!(active["data"], json!([]));
    let (_, history) = app
        .get(&format!(
            "{HOLD}?include_released=true&correlation_id=rr-case"
        ))
        .await;
    assert_eq!(history["data"].as_array().unwrap().len(), 1);
    // Held again after release: a new hold.
    let (status, second) = app.post(HOLD, &body).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["id"], hold["id"]);
}

on_both_stores!(legal_holds_are_placed_listed_released_and_audited);

async fn bad_hold_requests_change_nothing(app: TestApp) {
    for (body, field) in [
        (json!({"reason": "r"}), "correlation_id"),
        (json!({"correlation_id": "rr-x"}), "reason"),
        (
            json!({"correlation_id": " ", "reason": "r"}),
            "correlation_id",
        ),
        (
            json!({"correlation_id": "rr-x", "reason": "r", "until": "2030"}),
            "until",
        ),
        (
            json!({"correlation_id": "x".repeat(256), "reason": "r"}),
            "correlation_id",
        ),
        (json!(["rr-x"]), "$"),
    ] {
        let (status, problem) = app.post(HOLD, &body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(
            problem["field_errors"][field].is_string(),
            "{body}: {problem}"
        );
    }
    let (status, problem) = app
        .send(Method::DELETE, &format!("{HOLD}/rr-x"), &json!({}))
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["field_errors"]["release_reason"].is_string());
    let (status, problem) = app.get(&format!("{HOLD}?include_released=maybe")).await;
    assert_eq!(status, 400, "{problem}");
    // Nor can a client write an event that passes for one of Data Storage's own.
    let mut forged = event("rr-x");
    forged["event_type"] = json!("datastorage.legal_hold.released");
    let (status, problem) = app.post("/api/v1/audit/events", &forged).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["field_errors"]["event_type"]
        .as_str()
        .unwrap()
        .contains("reserved"));
    assert_eq!(app.db.scalar("SELECT count(*) FROM legal_holds").await, 0);
    assert_eq!(app.db.count().await, 0);
}

on_both_stores!(bad_hold_requests_change_nothing);

/// An event stamped `days_ago` and kept for one day.
fn expired(correlation: &str, days_ago: i64, i: usize) -> Value {
    let mut e = event(correlation);
    e["event_timestamp"] = json!(audit_model::timestamp::format(
        &(chrono::Utc::now() - chrono::Duration::days(days_ago))
    ));
    e["retention_days"] = json!(1);
    e["event_data"] = json!({"i": i});
    e
}

/// The retention runs recorded so far.
async fn runs(app: &TestApp) -> Vec<Value> {
    events_of(app, "datastorage-retention", "datastorage.retention.run").await
}

/// Waits for a run that purged something, and answers how many it purged.
async fn next_purge(app: &TestApp, seen: usize) -> (usize, u64) {
    eventually("a retention run that purges", || async {
        let runs = runs(app).await;
        runs.iter()
            .skip(seen)
            .position(|r| r["event_data"]["purged"].as_u64() > Some(0))
            .map(|i| {
                (
                    seen + i + 1,
                    runs[seen + i]["event_data"]["purged"].as_u64().unwrap(),
                )
            })
    })
    .await
}

async fn retention_purges_expired_unheld_events_and_the_log_still_verifies(backend: Backend) {
    let options = AppOptions {
        retention_interval: Some("100ms".into()),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    // The hold comes first: the worker runs from the start.
    app.place_hold("rr-held").await;
    let mut batch: Vec<Value> = (0..3).map(|i| expired("rr-old", 10, i)).collect();
    batch.push(expired("rr-held", 10, 3));
    batch.push(event("rr-new"));
    let (status, written) = app.post("/api/v1/audit/events/batch", &json!(batch)).await;
    assert_eq!(status, 200, "{written}");
    let id = |i: usize| {
        written["results"][i]["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let (seen, purged) = next_purge(&app, 0).await;
    assert_eq!(purged, 3);
    let purged_rows = app
        .db
        .scalar(
            "SELECT count(*) FROM audit_events WHERE purged_at IS NOT NULL AND event_data IS NULL",
        )
        .await;
    assert_eq!(purged_rows, 3);
    let (status, problem) = app.get(&format!("/api/v1/audit/events/{}", id(0))).await;
    assert_eq!(status, 410, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("purged"));
    let (status, held) = app.get(&format!("/api/v1/audit/events/{}", id(3))).await;
    assert_eq!(
        (status, &held["event_data"]["i"]),
        (200, &json!(3)),
        "{held}"
    );
    let last_run = &runs(&app).await[seen - 1];
    assert_eq!(last_run["event_data"]["held"], 1, "{last_run}");

    // Every checkpoint still verifies; the purged rows are reported as purged.
    let total = app.db.count().await;
    checkpoint_covering(&app, total).await;
    let store = app.open_store().await;
    let report = datastorage::evidence::verify::verify_store(&store, &app.verifier().await)
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.purged, 3);
    // Every run is recorded, so the log grows while the worker runs.
    assert!(report.events >= total as u64, "{report:?}");

    // Released, the hold no longer keeps the event: the next run purges it.
    app.release_hold("rr-held").await;
    let (_, purged) = next_purge(&app, seen).await;
    assert_eq!(purged, 1);
    let (status, _) = app.get(&format!("/api/v1/audit/events/{}", id(3))).await;
    assert_eq!(status, 410);
    let (status, fresh) = app.get(&format!("/api/v1/audit/events/{}", id(4))).await;
    assert_eq!(status, 200, "{fresh}");
    let total = app.db.count().await;
    checkpoint_covering(&app, total).await;
    let report = datastorage::evidence::verify::verify_store(&store, &app.verifier().await)
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.purged, 4);
}

#[tokio::test]
async fn retention_on_postgres() {
    retention_purges_expired_unheld_events_and_the_log_still_verifies(Backend::Postgres).await;
}

#[tokio::test]
async fn retention_on_sqlite() {
    retention_purges_expired_unheld_events_and_the_log_still_verifies(Backend::Sqlite).await;
}
