//! The batch endpoint: per-item results, mixed valid and invalid items, limits.

use serde_json::{json, Value};

use crate::helpers::{event, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_stores;

on_both_stores!(
    mixed_batch_stores_the_valid_items_only,
    malformed_batches_are_refused_whole
);

async fn mixed_batch_stores_the_valid_items_only(app: TestApp) {
    let mut existing = event("rr-batch");
    existing["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-000000000001");
    existing["event_timestamp"] = json!("2026-01-02T03:04:05Z");
    assert_eq!(app.post("/api/v1/audit/events", &existing).await.0, 201);

    let mut conflicting = existing.clone();
    conflicting["event_data"] = json!({"changed": true});
    let mut invalid = event("rr-batch");
    invalid["event_outcome"] = json!("maybe");
    invalid["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-0000000000ff");
    let mut twice = event("rr-batch");
    twice["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-000000000002");
    twice["event_timestamp"] = json!("2026-01-02T03:04:06Z");
    let batch = json!([
        event("rr-batch"),
        invalid,
        existing,
        conflicting,
        twice,
        twice,
        event("rr-batch"),
        json!({"event_type": "no.fields"})
    ]);

    let (status, answer) = app.post("/api/v1/audit/events/batch", &batch).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "created",
            "rejected",
            "duplicate",
            "rejected",
            "created",
            "duplicate",
            "created",
            "rejected"
        ]
    );
    let indexes: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(answer["results"][1]["error"]
        .as_str()
        .unwrap()
        .contains("event_outcome"));
    // A refused item is answered with the id it claims, when it claims one.
    assert_eq!(
        answer["results"][1]["event_id"],
        "0190b5a2-1c3d-7e4f-8a9b-0000000000ff"
    );
    assert!(answer["results"][7]["event_id"].is_null(), "{answer}");
    assert!(answer["results"][7]["error"]
        .as_str()
        .unwrap()
        .contains("validation error"));
    // An item that is not an object at all makes the body no batch of events.
    let mut not_events = batch.clone();
    not_events[7] = json!("not an event");
    let (refused, problem) = app.post("/api/v1/audit/events/batch", &not_events).await;
    assert_eq!(refused, 400, "{problem}");
    assert!(problem["field_errors"]["body"]
        .as_str()
        .unwrap()
        .contains("item(s) 7"));
    assert!(answer["results"][3]["error"]
        .as_str()
        .unwrap()
        .contains("conflict"));
    assert_eq!(answer["results"][4]["seq"], answer["results"][5]["seq"]);
    assert_eq!(
        answer["summary"],
        json!({"total": 8, "created": 3, "duplicate": 2, "rejected": 3, "queued": 0})
    );
    assert_eq!(app.db.count().await, 4);
    app.db.assert_seq_gap_free().await;
}

async fn malformed_batches_are_refused_whole(app: TestApp) {
    let too_many = Value::Array(vec![event("x"); 1001]).to_string();
    let valid_then_cut = format!("[{},", event("x"));
    for (body, says) in [
        (r#"{"not": "an array"}"#, "must be a JSON array of events"),
        ("[]", "must hold at least one event"),
        (too_many.as_str(), "must hold at most 1000 events"),
        (valid_then_cut.as_str(), "invalid JSON"),
        ("not JSON", "invalid JSON"),
    ] {
        let r = app
            .client
            .post(app.url("/api/v1/audit/events/batch"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{says}");
        let problem: Value = r.json().await.unwrap();
        let detail = problem["field_errors"]["body"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{says}: {problem}");
    }
    assert_eq!(app.db.count().await, 0, "a refused batch stored events");
}

#[tokio::test]
async fn the_batch_limit_is_configurable() {
    let options = AppOptions {
        batch_max_items: Some(3),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let (status, _) = app
        .post(
            "/api/v1/audit/events/batch",
            &json!([event("a"), event("a"), event("a"), event("a")]),
        )
        .await;
    assert_eq!(status, 400);
    let (status, answer) = app
        .post(
            "/api/v1/audit/events/batch",
            &json!([event("a"), event("a"), event("a")]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["summary"]["created"], 3);
    assert_eq!(app.db.count().await, 3);
}
