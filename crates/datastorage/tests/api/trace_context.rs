//! The caller's W3C trace context: events that carry none get the trace id and span id of the
//! caller's `traceparent` (single, batch and typed writes), those that carry their own keep it,
//! a malformed header is ignored, and the same event sent again from another trace is a
//! duplicate (the first trace kept), not a conflict.

use serde_json::{json, Value};

use crate::helpers::{event, TestApp};
use crate::on_both_stores;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

async fn post_traced(app: &TestApp, path: &str, body: &Value, traceparent: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("traceparent", traceparent)
        .header("prefer", "answers=native")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn stored(app: &TestApp, event_id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/audit/events/{event_id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn events_take_the_callers_trace_unless_they_carry_their_own(app: TestApp) {
    let header = traceparent(TRACE, SPAN);
    // One event without a trace: it takes the caller's.
    let (status, body) = post_traced(&app, "/api/v1/audit/events", &event("rr-t"), &header).await;
    assert_eq!(status, 201, "{body}");
    let first = body["event_id"].as_str().unwrap().to_string();
    let row = stored(&app, &first).await;
    assert_eq!(
        (row["trace_id"].as_str(), row["span_id"].as_str()),
        (Some(TRACE), Some(SPAN))
    );

    // A batch: the event with its own trace keeps it.
    let mut own = event("rr-t");
    own["trace_id"] = json!("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    own["span_id"] = json!("bbbbbbbbbbbbbbbb");
    let (status, body) = post_traced(
        &app,
        "/api/v1/audit/events/batch",
        &json!([event("rr-t"), own]),
        &header,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored(&app, &ids[0]).await["trace_id"], TRACE);
    let kept = stored(&app, &ids[1]).await;
    assert_eq!(kept["trace_id"], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(kept["span_id"], "bbbbbbbbbbbbbbbb");

    // A typed record: its event takes the caller's trace.
    let record = json!({
        "remediation_id": "rr-t", "notification_id": "n-t", "recipient": "oncall@example.com",
        "channel": "email", "message_summary": "Disk full", "status": "sent",
        "sent_at": "2026-11-27T11:00:00Z"
    });
    let (status, body) = post_traced(&app, "/api/v1/audit/notifications", &record, &header).await;
    assert_eq!(status, 201, "{body}");
    let record_event = body["event_id"].as_str().unwrap().to_string();
    assert_eq!(stored(&app, &record_event).await["trace_id"], TRACE);

    // A malformed header is no trace.
    let (status, body) =
        post_traced(&app, "/api/v1/audit/events", &event("rr-t"), "00-zz-yy-01").await;
    assert_eq!(status, 201, "{body}");
    let untraced = stored(&app, body["event_id"].as_str().unwrap()).await;
    assert_eq!(
        untraced.get("trace_id").cloned().unwrap_or(Value::Null),
        Value::Null
    );

    // The first event again, from another trace (a writer re-recording after a restart): a
    // duplicate, and the stored trace is the first one.
    let mut again = event("rr-t");
    again["event_id"] = json!(first);
    again["event_timestamp"] = row["event_timestamp"].clone();
    let other = traceparent("11111111111111111111111111111111", "2222222222222222");
    let (status, body) = post_traced(&app, "/api/v1/audit/events", &again, &other).await;
    assert_eq!(status, 200, "a duplicate: {body}");
    assert_eq!(stored(&app, &first).await["trace_id"], TRACE);
    // The typed record again from another trace: a duplicate too.
    let (status, body) = post_traced(&app, "/api/v1/audit/notifications", &record, &other).await;
    assert_eq!(status, 200, "a duplicate: {body}");

    // Nothing else was written: 5 events, every one still verifying against the log.
    let (status, page) = app.get("/api/v1/audit/events?correlation_id=rr-t").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 5, "{page}");
    app.assert_log_verifies(5).await;
}

on_both_stores!(events_take_the_callers_trace_unless_they_carry_their_own);
