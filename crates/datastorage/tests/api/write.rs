//! Single-event writes: create, idempotent replay, conflict, every validation rule, body limit
//! and body budget.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{event, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_stores;

on_both_stores!(
    create_stores_the_event_with_seq_and_hash,
    identical_replay_answers_200_and_stores_nothing,
    same_id_with_other_content_is_a_conflict,
    every_validation_rule_answers_400_and_stores_nothing,
    all_errors_are_reported_at_once,
    get_answers_the_event_or_404,
);

async fn create_stores_the_event_with_seq_and_hash(app: TestApp) {
    let mut body = event("rr-create");
    body["namespace"] = json!("prod");
    body["duration_ms"] = json!(12);
    let (status, stored) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["seq"], 1);
    assert_eq!(stored["actor_id"], "notification-service");
    assert_eq!(stored["leaf_hash"].as_str().unwrap().len(), 64);

    let id = stored["event_id"].as_str().unwrap();
    assert_eq!(app.db.count().await, 1);
    let row = app
        .db
        .text(&format!(
            "SELECT correlation_id || '|' || event_type || '|' || namespace || '|' || duration_ms \
             FROM audit_events WHERE event_id = '{id}'"
        ))
        .await;
    assert_eq!(row, "rr-create|notification.message.sent|prod|12");
    // The stored hash is the one the model computes from the answered content.
    let answered: audit_model::StoredEvent = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(answered.event.leaf_hash(), answered.leaf_hash);
}

async fn identical_replay_answers_200_and_stores_nothing(app: TestApp) {
    let mut body = event("rr-replay");
    body["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-0c1d2e3f4a5b");
    body["event_timestamp"] = json!("2026-01-02T03:04:05.123456Z");
    let (first, stored) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(first, 201);
    let (second, mut again) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(second, 200, "{again}");
    assert_eq!(
        (stored["message"].as_str(), again["message"].as_str()),
        (
            Some("audit event stored"),
            Some("an identical audit event was already stored; nothing was added")
        )
    );
    again["message"] = stored["message"].clone();
    assert_eq!(again, stored);
    assert_eq!(app.db.count().await, 1);
}

async fn same_id_with_other_content_is_a_conflict(app: TestApp) {
    let id = "0190b5a2-1c3d-7e4f-8a9b-0c1d2e3f4a5c";
    let mut body = event("rr-conflict");
    body["event_id"] = json!(id);
    body["event_timestamp"] = json!("2026-01-02T03:04:05Z");
    assert_eq!(app.post("/api/v1/audit/events", &body).await.0, 201);
    body["event_data"] = json!({"channel": "email"});
    let (status, problem) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(status, 409);
    assert!(problem["type"].as_str().unwrap().ends_with("/conflict"));
    assert_eq!(problem["value"], id);
    assert_eq!(app.db.count().await, 1);
    let channel = app
        .db
        .text(&format!(
            "SELECT CAST(event_data AS TEXT) FROM audit_events WHERE event_id = '{id}'"
        ))
        .await;
    assert!(channel.contains("slack"), "stored row changed: {channel}");
}

/// (description, change to a valid event, the field that must be named)
type Rule = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

fn rules() -> Vec<Rule> {
    let long = "x".repeat(256);
    let mut deep = json!(1);
    for _ in 0..11 {
        deep = json!({ "d": deep });
    }
    let big = json!({ "blob": "x".repeat(256 * 1024) });
    let mut rules: Vec<Rule> = Vec::new();
    for field in [
        "event_type",
        "event_category",
        "event_action",
        "event_outcome",
        "correlation_id",
        "event_data",
    ] {
        rules.push((
            "missing required field",
            Box::new(move |v: &mut Value| {
                v.as_object_mut().unwrap().remove(field);
            }),
            field,
        ));
    }
    for field in [
        "event_type",
        "event_category",
        "event_action",
        "correlation_id",
        "actor_id",
        "actor_type",
        "resource_type",
        "resource_id",
        "resource_name",
        "namespace",
        "cluster_id",
        "trace_id",
        "span_id",
        "error_code",
    ] {
        let long = long.clone();
        rules.push((
            "string over 255 characters",
            Box::new(move |v: &mut Value| v[field] = json!(long)),
            field,
        ));
    }
    rules.push((
        "blank string",
        Box::new(|v| v["correlation_id"] = json!("   ")),
        "correlation_id",
    ));
    rules.push((
        "string of the wrong type",
        Box::new(|v| v["event_type"] = json!(5)),
        "event_type",
    ));
    rules.push((
        "outcome outside the enum",
        Box::new(|v| v["event_outcome"] = json!("maybe")),
        "event_outcome",
    ));
    rules.push((
        "event_id not a UUID",
        Box::new(|v| v["event_id"] = json!("abc")),
        "event_id",
    ));
    rules.push((
        "parent_event_id not a UUID",
        Box::new(|v| v["parent_event_id"] = json!("abc")),
        "parent_event_id",
    ));
    rules.push((
        "timestamp not RFC 3339",
        Box::new(|v| v["event_timestamp"] = json!("yesterday")),
        "event_timestamp",
    ));
    rules.push((
        "timestamp a leap second",
        Box::new(|v| v["event_timestamp"] = json!("2016-12-31T23:59:60Z")),
        "event_timestamp",
    ));
    rules.push((
        "event_data not an object",
        Box::new(|v| v["event_data"] = json!([1, 2])),
        "event_data",
    ));
    rules.push((
        "event_data nested too deep",
        Box::new(move |v| v["event_data"] = deep.clone()),
        "event_data",
    ));
    rules.push((
        "event_data over 256 KiB",
        Box::new(move |v| v["event_data"] = big.clone()),
        "event_data",
    ));
    rules.push((
        "negative duration",
        Box::new(|v| v["duration_ms"] = json!(-1)),
        "duration_ms",
    ));
    rules.push((
        "retention of zero days",
        Box::new(|v| v["retention_days"] = json!(0)),
        "retention_days",
    ));
    rules.push((
        "unknown top-level field",
        Box::new(|v| v["colour"] = json!("red")),
        "colour",
    ));
    rules.push((
        "severity over 50 characters",
        Box::new(|v| v["severity"] = json!("s".repeat(51))),
        "severity",
    ));
    rules
}

async fn every_validation_rule_answers_400_and_stores_nothing(app: TestApp) {
    for (what, change, field) in rules() {
        let mut body = event("rr-invalid");
        change(&mut body);
        let (status, problem) = app.post("/api/v1/audit/events", &body).await;
        assert_eq!(status, 400, "{what}: {problem}");
        assert!(problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/validation-error"));
        let errors = problem["field_errors"].as_object().unwrap();
        assert!(
            errors.contains_key(field),
            "{what}: {field} not named in {problem}"
        );
        assert_eq!(
            errors.len(),
            1,
            "{what}: only {field} is wrong, got {problem}"
        );
    }
    for (what, raw) in [("not JSON", "{\"event_type\":"), ("not an object", "[1]")] {
        let r = app
            .client
            .post(app.url("/api/v1/audit/events"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(app.db.count().await, 0, "a refused event was stored");
}

async fn all_errors_are_reported_at_once(app: TestApp) {
    let body = json!({
        "event_type": "", "event_outcome": "maybe", "duration_ms": -5,
        "event_data": "nope", "surprise": true
    });
    let (status, problem) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(status, 400);
    let fields: Vec<&String> = problem["field_errors"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        fields,
        [
            "correlation_id",
            "duration_ms",
            "event_action",
            "event_category",
            "event_data",
            "event_outcome",
            "event_type",
            "surprise"
        ]
    );
    assert_eq!(app.db.count().await, 0);
}

async fn get_answers_the_event_or_404(app: TestApp) {
    let (_, mut stored) = app.post("/api/v1/audit/events", &event("rr-get")).await;
    let id = stored["event_id"].as_str().unwrap().to_string();
    let (status, got) = app.get(&format!("/api/v1/audit/events/{id}")).await;
    assert_eq!(status, 200);
    // The write's answer is the event as read, and what happened.
    stored.as_object_mut().unwrap().remove("message");
    assert_eq!(got, stored);
    assert_eq!(got["version"], got["event_version"]);
    let (status, problem) = app
        .get("/api/v1/audit/events/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert!(problem["type"].as_str().unwrap().ends_with("/not-found"));
    let (status, problem) = app.get("/api/v1/audit/events/not-a-uuid").await;
    assert_eq!(status, 400);
    assert!(problem["field_errors"]["event_id"].is_string());
}

#[tokio::test]
async fn bodies_above_the_limit_answer_413_and_store_nothing() {
    let options = AppOptions {
        body_limit_bytes: Some(4096),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut body = event("rr-big");
    body["event_data"] = json!({"blob": "x".repeat(8192)});
    let (status, problem) = app.post("/api/v1/audit/events", &body).await;
    assert_eq!(status, 413);
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("/payload-too-large"));
    assert_eq!(app.db.count().await, 0);
}

#[tokio::test]
async fn problems_carry_the_request_id() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let r = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .header("x-request-id", "req-12345")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-12345");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["instance"], "urn:request-id:req-12345");
    let r = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers().contains_key("x-request-id"),
        "a request id is generated when absent"
    );
}

/// The value of a counter on `/metrics` (0 when not yet recorded).
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_request_beyond_the_body_budget_waits_for_room_then_both_are_stored() {
    let options = AppOptions {
        body_limit_bytes: Some(4096),
        body_budget_bytes: Some(4096),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    // A request that announces 3 000 bytes and sends none holds nothing of the budget.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    silent
        .write_all(
            format!("POST /api/v1/audit/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 3000\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // The first request declares 3 000 bytes and sends all but 100 of them: it holds what it
    // sent (about 2 850 of the budget's 4 096) until its body is complete and it is answered.
    let mut first = event("rr-budget-first");
    first["event_data"] = json!({"pad": "x".repeat(2800)});
    let first = serde_json::to_vec(&first).unwrap();
    assert!((2900..3100).contains(&first.len()));
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/audit/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        first.len()
    );
    let (sent, rest) = first.split_at(first.len() - 100);
    held.write_all(head.as_bytes()).await.unwrap();
    held.write_all(sent).await.unwrap();
    let sent_len = sent.len() as f64;
    crate::helpers::eventually("the first body to be read as far as it came", || async {
        (counter(&app, "datastorage_body_budget_held_bytes").await >= sent_len).then_some(())
    })
    .await;

    // The second (about 1 500 bytes) does not fit beside it: it waits, and nothing is stored.
    let mut second = event("rr-budget-second");
    second["event_data"] = json!({"pad": "y".repeat(1300)});
    let waiting = {
        let client = app.client.clone();
        let url = app.url("/api/v1/audit/events");
        tokio::spawn(async move { client.post(url).json(&second).send().await })
    };
    crate::helpers::eventually("the second request to wait for room", || async {
        (counter(&app, "datastorage_body_budget_waits_total").await >= 1.0).then_some(())
    })
    .await;
    assert!(!waiting.is_finished(), "the second request waits");
    assert_eq!(app.db.count().await, 0);

    // The first body completes: its request is answered, its share returns, the second goes on.
    held.write_all(rest).await.unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let second = waiting.await.unwrap().unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(app.db.count().await, 2);
    for correlation in ["rr-budget-first", "rr-budget-second"] {
        let (status, page) = app
            .get(&format!(
                "/api/v1/audit/events?correlation_id={correlation}"
            ))
            .await;
        assert_eq!(status, 200);
        assert_eq!(page["data"].as_array().unwrap().len(), 1, "{correlation}");
    }
}
