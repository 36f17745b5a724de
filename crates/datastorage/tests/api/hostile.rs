//! What a careless or hostile client sends: each is refused with a problem and stores nothing,
//! and a slow or stalled client costs only its own request.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{event, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_stores;

/// The status and problem of an answer, asserting it is an RFC 7807 problem.
async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    (status, body)
}

/// A leap second, in the unified event and in a typed record's time: refused, nothing stored.
async fn a_leap_second_is_refused_everywhere(app: TestApp) {
    let mut e = event("rr-leap");
    e["event_timestamp"] = json!("2016-12-31T23:59:60Z");
    let (status, body) = app.post("/api/v1/audit/events", &e).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["field_errors"]["event_timestamp"]
        .as_str()
        .unwrap()
        .contains("leap second"));
    let record = json!({
        "notification_id": "n-leap", "remediation_id": "rr-leap", "recipient": "ops",
        "channel": "slack", "message_summary": "x", "status": "sent",
        "sent_at": "2016-12-31T23:59:60Z"
    });
    let (status, body) = app.post("/api/v1/audit/notifications", &record).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["field_errors"]["sent_at"].is_string(), "{body}");
    assert_eq!(app.db.count().await, 0);
}

/// A NUL in any text parameter: 400 naming it, on every route that takes text, with no word
/// from the database.
async fn a_nul_in_a_parameter_is_refused_naming_it(app: TestApp) {
    let gets = [
        (
            "/api/v1/audit/events?correlation_id=a%00b",
            "correlation_id",
        ),
        ("/api/v1/audit/events?event_type=a%00", "event_type"),
        ("/api/v1/audit/events?event_category=%00", "event_category"),
        ("/api/v1/audit/events?event_outcome=%00", "event_outcome"),
        ("/api/v1/audit/events?resource_type=%00", "resource_type"),
        ("/api/v1/audit/events?resource_id=%00", "resource_id"),
        ("/api/v1/audit/events?actor_id=%00", "actor_id"),
        ("/api/v1/audit/events?namespace=%00", "namespace"),
        ("/api/v1/audit/notifications?channel=%00", "channel"),
        ("/api/v1/audit/notifications/n%00", "id"),
        (
            "/api/v1/audit/legal-hold?correlation_id=%00",
            "correlation_id",
        ),
        ("/api/v1/audit/export?correlation_id=%00", "correlation_id"),
    ];
    for (path, name) in gets {
        let (status, body) = problem(app.client.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["field_errors"][name].is_string(), "{path}: {body}");
    }
    let release = app
        .client
        .delete(app.url("/api/v1/audit/legal-hold/rr%00x"))
        .json(&json!({"release_reason": "done"}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(release).await;
    assert_eq!(status, 400);
    assert!(body["field_errors"]["correlation_id"].is_string(), "{body}");
    for (path, body) in [
        (
            "/api/v1/audit/verify-chain",
            json!({"correlation_id": "a\u{0}b"}),
        ),
        (
            "/api/v1/audit/legal-hold",
            json!({"correlation_id": "a\u{0}b", "reason": "case 1"}),
        ),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["field_errors"]["correlation_id"]
                .as_str()
                .unwrap()
                .contains("NUL"),
            "{path}: {answer}"
        );
    }
    assert_eq!(app.db.count().await, 0);
    let holds = app.db.scalar("SELECT count(*) FROM legal_holds").await;
    assert_eq!(holds, 0);
}

/// A parameter given twice is refused, naming it.
async fn a_repeated_parameter_is_refused(app: TestApp) {
    let answer = app
        .client
        .get(app.url("/api/v1/audit/events?limit=1&limit=1000"))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(answer).await;
    assert_eq!(status, 400);
    assert!(body["field_errors"]["limit"].is_string(), "{body}");
}

/// Bodies that are not JSON, or compressed, are refused before they are read: a browser can
/// send these cross-origin without a preflight.
async fn only_json_bodies_are_taken(app: TestApp) {
    let text = event("rr-media").to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        for path in ["/api/v1/audit/events", "/api/v1/audit/events/batch"] {
            let mut request = app.client.post(app.url(path)).body(text.clone());
            if let Some(t) = content_type {
                request = request.header("content-type", t);
            }
            let (status, body) = problem(request.send().await.unwrap()).await;
            assert_eq!(status, 415, "{content_type:?} {path}: {body}");
        }
    }
    let gzip = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = problem(gzip).await;
    assert_eq!(status, 415);
    assert!(body["detail"].as_str().unwrap().contains("gzip"));
    assert_eq!(app.db.count().await, 0);

    // No CORS headers unless configured, for a simple request or a preflight.
    let from_a_page = app
        .client
        .get(app.url("/api/v1/audit/events"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(from_a_page
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/audit/events"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
}

/// Duplicate keys, at the top or inside `event_data`, in events and records.
async fn duplicate_keys_are_refused_naming_them(app: TestApp) {
    let cases = [
        (
            "/api/v1/audit/events",
            r#"{"event_type":"a.b","event_type":"c.d","event_category":"c","event_action":"x","event_outcome":"success","correlation_id":"rr-dup","event_data":{}}"#,
            "event_type",
        ),
        (
            "/api/v1/audit/events",
            r#"{"event_type":"a.b","event_category":"c","event_action":"x","event_outcome":"success","correlation_id":"rr-dup","event_data":{"n":{"k":1,"k":2}}}"#,
            "event_data.n.k",
        ),
        (
            "/api/v1/audit/notifications",
            r#"{"notification_id":"n1","notification_id":"n2","remediation_id":"rr-dup","recipient":"ops","channel":"slack","message_summary":"x","status":"sent","sent_at":"2026-01-01T00:00:00Z"}"#,
            "notification_id",
        ),
    ];
    for (path, text, key) in cases {
        let answer = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        let (status, body) = problem(answer).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["field_errors"][key]
                .as_str()
                .unwrap()
                .contains("more than once"),
            "{body}"
        );
    }
    let batch = format!("[{}]", cases[1].1);
    let answer = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .header("content-type", "application/json")
        .body(batch)
        .send()
        .await
        .unwrap();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["results"][0]["status"], "rejected", "{body}");
    assert!(body["results"][0]["error"]
        .as_str()
        .unwrap()
        .contains("event_data.n.k"));
    assert_eq!(app.db.count().await, 0);
}

/// A batch whose items are not all objects is not a batch of events: 400, nothing stored.
async fn a_batch_of_non_objects_is_refused_whole(app: TestApp) {
    for body in [
        json!([[null, null]]),
        json!([event("rr-mixed"), 42]),
        json!([null]),
    ] {
        let (status, answer) = app.post("/api/v1/audit/events/batch", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["field_errors"]["body"]
                .as_str()
                .unwrap()
                .contains("JSON object"),
            "{answer}"
        );
    }
    assert_eq!(app.db.count().await, 0);
}

/// The reserved prefix, however it is spelled.
async fn the_reserved_prefix_is_refused_however_spelled(app: TestApp) {
    for spelling in [
        "DataStorage.legal_hold.placed",
        "data\u{200b}storage.x",
        "ｄａｔａｓｔｏｒａｇｅ.x",
    ] {
        let mut e = event("rr-prefix");
        e["event_type"] = json!(spelling);
        let (status, body) = app.post("/api/v1/audit/events", &e).await;
        assert_eq!(status, 400, "{spelling:?}: {body}");
    }
    assert_eq!(app.db.count().await, 0);
}

/// A request id that is not a short token is replaced, not echoed.
async fn an_unusable_request_id_is_replaced(app: TestApp) {
    let long = "a".repeat(500);
    for sent in [long.as_str(), "a b<script>", "ok\"quote"] {
        let answer = app
            .client
            .get(app.url("/api/v1/audit/events/not-a-uuid"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let echoed = answer.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_ne!(echoed, sent);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        let (_, body) = problem(answer).await;
        assert_eq!(body["instance"], format!("urn:request-id:{echoed}"));
    }
    let kept = app
        .client
        .get(app.url("/api/v1/audit/events/not-a-uuid"))
        .header("x-request-id", "trace-0af7651916cd43dd")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-0af7651916cd43dd");
}

/// What hyper refuses before any handler runs (a malformed head, one too large) is answered
/// with a problem too.
async fn the_http_layers_refusals_are_problems(app: TestApp) {
    let addr = app.base.trim_start_matches("http://").to_string();
    let oversized = format!(
        "GET /api/v1/audit/events HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(56 * 1024)
    );
    let bad_header = "GET /api/v1/audit/events HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n";
    for (raw, status) in [(oversized.as_str(), 431), (bad_header, 400)] {
        let answer = raw_exchange(&addr, raw.as_bytes()).await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        let problem: Value = serde_json::from_str(body).expect(body);
        assert_eq!(problem["status"], status);
    }
}

/// Sends `raw` on a new connection and reads the answer until the server closes it.
async fn raw_exchange(addr: &str, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read all of a large head.
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

on_both_stores!(
    a_leap_second_is_refused_everywhere,
    a_nul_in_a_parameter_is_refused_naming_it,
    a_repeated_parameter_is_refused,
    only_json_bodies_are_taken,
    duplicate_keys_are_refused_naming_them,
    a_batch_of_non_objects_is_refused_whole,
    the_reserved_prefix_is_refused_however_spelled,
    an_unusable_request_id_is_replaced,
    the_http_layers_refusals_are_problems,
);

/// The head of a POST whose body never (or slowly) comes.
fn stalled_head(addr: &str, length: usize) -> String {
    format!(
        "POST /api/v1/audit/events/batch HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// Stalled and slow uploads, each announcing a body at the size limit, are more than the body
/// budget holds; other writers keep writing while they hang, and the stalled ones are still
/// waiting (unanswered) when the writers are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_slow_uploads_cost_only_their_own_requests() {
    let options = AppOptions {
        body_read_timeout: Some("60s".into()),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Postgres, options).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let limit = 5 * 1024 * 1024;
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(stalled_head(&addr, limit).as_bytes())
            .await
            .unwrap();
        stalled.push(s);
    }
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(stalled_head(&addr, limit).as_bytes())
            .await
            .unwrap();
        s.write_all(b"[").await.unwrap();
        slow.push(s);
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url) = (app.client.clone(), app.url("/api/v1/audit/events/batch"));
            tokio::spawn(async move {
                for i in 0..25 {
                    let batch: Vec<Value> = (0..4)
                        .map(|j| event(&format!("rr-writer-{w}-{i}-{j}")))
                        .collect();
                    let r = client.post(&url).json(&batch).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for (i, s) in slow.iter_mut().enumerate() {
        // The slow ones trickle a little meanwhile.
        s.write_all(format!("{{\"k\":{i}}}").as_bytes())
            .await
            .unwrap();
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(app.db.count().await, 400, "every writer's events stored");
    // The stalled and slow requests are still waiting for their bodies: no answer, open.
    for s in stalled.iter_mut().chain(slow.iter_mut()) {
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut byte))
                .await
                .is_err(),
            "a stalled request was answered or closed"
        );
    }
}

/// A body that stops coming is answered 408 after the read timeout, and what it held of the
/// budget is given back (a body at the budget's size is then taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_with_a_problem() {
    let options = AppOptions {
        body_read_timeout: Some("1s".into()),
        body_limit_bytes: Some(64 * 1024),
        body_budget_bytes: Some(64 * 1024),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(stalled_head(&addr, 60_000).as_bytes())
        .await
        .unwrap();
    s.write_all(&[b' '; 50_000]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // The budget is whole again: a batch of nearly its size is stored.
    let padding = "p".repeat(40_000);
    let mut big = event("rr-after-timeout");
    big["event_data"] = json!({ "padding": padding });
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!([big])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.db.count().await, 1);
}

/// Idle connections and unfinished heads are closed; beyond the connection limit a new
/// connection is answered 503 with a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_connections_are_capped() {
    let options = AppOptions {
        idle_timeout: Some("1s".into()),
        header_read_timeout: Some("1s".into()),
        max_connections: Some(3),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TcpStream::connect(&addr).await.unwrap());
    }
    open[1]
        .write_all(b"GET /health/live HTTP/1.1\r\nho")
        .await
        .unwrap();
    // A fourth: refused with a problem.
    let refused = raw_exchange(&addr, b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    let (_, body) = refused.split_once("\r\n\r\n").unwrap();
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], 503);
    // The idle ones and the unfinished head are closed by the server.
    for s in &mut open {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("the server closes it")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    // Room again.
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

/// With origins configured, those origins (and only those) get CORS headers.
#[tokio::test]
async fn configured_origins_get_cors_headers() {
    let options = AppOptions {
        cors_allowed_origins: Some(vec!["https://audit.example.com".into()]),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    for (origin, allowed) in [
        ("https://audit.example.com", true),
        ("https://evil.example", false),
    ] {
        let r = app
            .client
            .get(app.url("/api/v1/audit/events"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}
