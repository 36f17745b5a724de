//! The query API: every filter, time ranges, order, keyset pagination.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{event, TestApp};
use crate::on_both_stores;

on_both_stores!(
    each_filter_selects_exactly_its_events,
    time_range_and_relative_since,
    pagination_walks_every_event_once,
    bad_parameters_are_named
);

/// Stores a small, varied log: 12 events, each field cycling through a few values.
async fn seed(app: &TestApp) -> Vec<Value> {
    let mut batch = Vec::new();
    for i in 0..12 {
        let mut e = event(&format!("rr-{}", i % 3));
        e["event_type"] = json!(format!("type.{}", i % 2));
        e["event_category"] = json!(["notification", "analysis", "orchestration"][i % 3]);
        e["event_outcome"] = json!(["success", "failure", "pending", "success"][i % 4]);
        e["resource_type"] = json!(format!("kind-{}", i % 2));
        e["resource_id"] = json!(format!("res-{}", i % 4));
        e["actor_id"] = json!(format!("actor-{}", i % 3));
        e["namespace"] = json!(format!("ns-{}", i % 2));
        e["event_timestamp"] = json!(format!("2026-03-01T00:00:{:02}Z", i));
        batch.push(e);
    }
    let (status, answer) = app
        .post("/api/v1/audit/events/batch", &Value::Array(batch.clone()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["summary"]["created"], 12);
    batch
}

async fn each_filter_selects_exactly_its_events(app: TestApp) {
    let seeded = seed(&app).await;
    for param in [
        "correlation_id",
        "event_type",
        "event_category",
        "event_outcome",
        "resource_type",
        "resource_id",
        "actor_id",
        "namespace",
    ] {
        let values: HashSet<&str> = seeded.iter().map(|e| e[param].as_str().unwrap()).collect();
        for value in values {
            let (status, page) = app
                .get(&format!("/api/v1/audit/events?{param}={value}&limit=1000"))
                .await;
            assert_eq!(status, 200);
            let got: Vec<&str> = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_timestamp"].as_str().unwrap())
                .collect();
            let mut want: Vec<String> = seeded
                .iter()
                .filter(|e| e[param] == value)
                .map(|e| {
                    audit_model::timestamp::format(
                        &audit_model::timestamp::parse(e["event_timestamp"].as_str().unwrap())
                            .unwrap(),
                    )
                })
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {param}={value}");
        }
    }
    let (_, page) = app
        .get("/api/v1/audit/events?correlation_id=rr-1&event_outcome=failure")
        .await;
    let got: Vec<&Value> = page["data"].as_array().unwrap().iter().collect();
    assert!(got
        .iter()
        .all(|e| e["correlation_id"] == "rr-1" && e["event_outcome"] == "failure"));
    assert_eq!(
        got.len(),
        seeded
            .iter()
            .filter(|e| e["correlation_id"] == "rr-1" && e["event_outcome"] == "failure")
            .count()
    );
}

async fn time_range_and_relative_since(app: TestApp) {
    seed(&app).await;
    let (_, page) = app
        .get("/api/v1/audit/events?since=2026-03-01T00:00:03Z&until=2026-03-01T00:00:05Z")
        .await;
    let seconds: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_timestamp"].as_str().unwrap()[17..19])
        .collect();
    assert_eq!(seconds, ["03", "04", "05"]);
    // Relative: the seeded events are months old, a fresh one is not.
    assert_eq!(
        app.post("/api/v1/audit/events", &event("rr-now")).await.0,
        201
    );
    let (_, page) = app.get("/api/v1/audit/events?since=1h").await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["correlation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["rr-now"]);
}

async fn pagination_walks_every_event_once(app: TestApp) {
    let mut batch = Vec::new();
    for i in 0..25 {
        let mut e = event("rr-page");
        // Pairs share a timestamp, so the seq tie-break matters (and differ in content: the
        // same content at the same time is one event).
        e["event_timestamp"] = json!(format!("2026-03-01T00:01:{:02}Z", i / 2));
        e["event_data"]["i"] = json!(i);
        batch.push(e);
    }
    assert_eq!(
        app.post("/api/v1/audit/events/batch", &Value::Array(batch))
            .await
            .0,
        200
    );
    for order in ["asc", "desc"] {
        let mut seen: Vec<i64> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path =
                format!("/api/v1/audit/events?correlation_id=rr-page&limit=7&order={order}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = app.get(&path).await;
            assert_eq!(status, 200, "{page}");
            // Every page counts every match, the cursor aside.
            assert_eq!(page["pagination"]["total"], 25, "{page}");
            pages += 1;
            seen.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        let mut want: Vec<i64> = (1..=25).collect();
        if order == "desc" {
            want.reverse();
        }
        assert_eq!(seen, want, "order {order}");
    }
    // By offset: the total is every match's count, whether the page ends the matches, holds
    // all of them, or starts past them.
    for (params, len, more) in [
        ("limit=7&offset=7", 7, true),
        ("limit=7&offset=21", 4, false),
        ("limit=30", 25, false),
        ("limit=7&offset=25", 0, false),
        ("limit=7&offset=40", 0, false),
    ] {
        let (status, page) = app
            .get(&format!(
                "/api/v1/audit/events?correlation_id=rr-page&{params}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["data"].as_array().unwrap().len(), len, "{params}");
        assert_eq!(page["pagination"]["total"], 25, "{params}: {page}");
        assert_eq!(page["pagination"]["has_more"], more, "{params}: {page}");
    }
    let (_, none) = app.get("/api/v1/audit/events?correlation_id=rr-none").await;
    assert_eq!(none["pagination"]["total"], 0, "{none}");
}

async fn bad_parameters_are_named(app: TestApp) {
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("since=last-week", "since"),
        ("until=soon", "until"),
        ("cursor=!!", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, problem) = app.get(&format!("/api/v1/audit/events?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            problem["field_errors"][param].is_string(),
            "{query}: {problem}"
        );
    }
}
