//! The platform's Go services against this service, through their Data Storage API document:
//! events of every type they name, written and read as their generated client does.

use std::collections::BTreeSet;
use std::sync::Arc;

use audit_model::{AuditEvent, EventField, FieldValue, NotificationAudit, RecordRules, SeedRecord};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::contract::{self, check_events, errors, platform_event, validator};
use crate::helpers::{
    event, spawn_app_with, start_on, write_as_before, AppOptions, Backend, TestApp, TestDb,
};
use crate::on_both_stores;

/// One event of every type the document names, each with a payload made from its schema (the
/// `datastorage.*` types are the platform's own Data Storage's, which writers cannot use here).
fn fixtures(correlation_id: &str) -> Vec<Value> {
    contract::event_types()
        .into_iter()
        .filter(|(t, _)| !t.starts_with("datastorage."))
        .enumerate()
        .map(|(n, (event_type, payload))| {
            let mut data = contract::instance(contract::schema(&payload));
            data["event_type"] = json!(event_type);
            let found = errors(&validator(&payload, false), &data);
            assert!(found.is_empty(), "the fixture of {event_type}: {found:#?}");
            platform_event(&event_type, data, correlation_id, n as u32)
        })
        .collect()
}

async fn post_platform(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    app.post_as(&app.platform, path, body).await
}

async fn get_platform(app: &TestApp, path: &str) -> (u16, Value) {
    app.get_as(&app.platform, path).await
}

async fn every_event_type_is_stored_and_read_back_in_the_platforms_shape(app: TestApp) {
    let events = fixtures("rr-fixtures");
    let n = events.len();
    assert!(n > 100, "the document names {n} event types");
    let (status, answer) = post_platform(&app, "/api/v1/audit/events/batch", &json!(events)).await;
    assert_eq!(status, 201, "{answer}");
    let found = errors(&validator("BatchAuditEventResponse", false), &answer);
    assert!(found.is_empty(), "{found:#?}");
    let ids: Vec<&str> = answer["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    assert!(answer["message"].as_str().unwrap().contains(&n.to_string()));
    assert_eq!(app.db.count().await, n as i64);

    let (status, page) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-fixtures&limit=1000",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    check_events(&page);
    assert_eq!(
        page["pagination"],
        json!({"limit": 1000, "offset": 0, "total": n, "has_more": false})
    );
    let data = page["data"].as_array().unwrap();
    let sent: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    let read: BTreeSet<&str> = data
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(sent, read);
    for e in data {
        assert_eq!(
            (&e["version"], &e["actor_ip"], &e["is_sensitive"]),
            (&json!("1.0"), &json!("10.0.0.7"), &json!(false)),
            "{e}"
        );
        assert!(e.get("cluster_id").is_none(), "empty is unset: {e}");
        assert!(ids.contains(&e["event_id"].as_str().unwrap()));
    }
    // Nothing the platform wrote breaks a proof.
    let report = app.assert_log_verifies(n as i64).await;
    assert_eq!(report.events, n as u64);
}

/// A front that forwards one request to the service, waits for the whole answer, and closes
/// the connection without passing it on: the answer is lost after the events were stored.
/// Later requests pass through. Answers the front's base URL.
async fn losing_front(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((socket, _)) = listener.accept().await {
            let (target, lost, http) = (target.clone(), lost.clone(), http.clone());
            tokio::spawn(async move { relay(socket, &target, &lost, &http).await });
        }
    });
    base
}

async fn relay(
    mut socket: TcpStream,
    target: &str,
    lost: &std::sync::atomic::AtomicBool,
    http: &reqwest::Client,
) {
    // One HTTP/1.1 request: the head, then Content-Length bytes of body.
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..read]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = vec![0u8; head_end + length - buf.len()];
        let read = socket.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    let answer = http
        .post(format!("{target}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.bytes().await.unwrap();
    if !lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return; // the answer is dropped with the connection
    }
    let reply = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text.len()
    );
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.write_all(&text).await;
}

async fn a_batch_whose_answer_is_lost_is_stored_once_when_retried(app: TestApp) {
    let front = losing_front(app.base.clone()).await;
    let batch = json!(fixtures("rr-lost")[..20]);
    // Their client sees the connection close without an answer: a network error, retried.
    let first = app
        .platform
        .post(format!("{front}/api/v1/audit/events/batch"))
        .json(&batch)
        .send()
        .await;
    assert!(first.is_err(), "the first answer is lost: {first:?}");
    assert_eq!(
        app.db.count().await,
        20,
        "the lost answer's events were stored"
    );
    let retry = app
        .platform
        .post(format!("{front}/api/v1/audit/events/batch"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status().as_u16(), 201);
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["event_ids"].as_array().unwrap().len(), 20);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("20 of them already were"),
        "{answer}"
    );
    // Stored exactly once: the same 20 rows, each id once, nothing added by the retry.
    assert_eq!(app.db.count().await, 20);
    let ids: BTreeSet<String> = answer["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 20);
    app.db.assert_each_stored_once(ids.iter()).await;
}

async fn one_invalid_item_refuses_the_whole_batch(app: TestApp) {
    let mut batch = fixtures("rr-atomic")[..3].to_vec();
    batch[1]["event_outcome"] = json!("maybe");
    batch[2]["event_type"] = json!("datastorage.forged");
    let (status, problem) = post_platform(&app, "/api/v1/audit/events/batch", &json!(batch)).await;
    assert_eq!(status, 400, "{problem}");
    let fields: Vec<&String> = problem["field_errors"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(fields, ["[1].event_outcome", "[2].event_type"]);
    let found = errors(&validator("RFC7807Problem", false), &problem);
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(
        app.db.count().await,
        0,
        "nothing of a refused batch is stored"
    );
    // The native answers, asked for, take the valid item and answer each.
    let (status, answer) = app.post("/api/v1/audit/events/batch", &json!(batch)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["summary"],
        json!({"total": 3, "created": 1, "duplicate": 0, "rejected": 2, "queued": 0})
    );
    assert_eq!(app.db.count().await, 1);
    // An id the writer chose that holds other content refuses the batch, before anything is
    // stored.
    let stored_id = answer["results"][0]["event_id"].clone();
    let mut reused = batch[0].clone();
    reused["event_id"] = stored_id;
    reused["event_data"]["changed"] = json!(true);
    let fresh = fixtures("rr-atomic-2").swap_remove(5);
    let (status, problem) =
        post_platform(&app, "/api/v1/audit/events/batch", &json!([fresh, reused])).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("item 1"),
        "{problem}"
    );
    assert_eq!(
        app.db.count().await,
        1,
        "nothing of a refused batch is stored"
    );
}

async fn a_single_write_answers_the_platforms_shape_also_when_repeated(app: TestApp) {
    let one = fixtures("rr-single").swap_remove(0);
    let response = validator("AuditEventResponse", false);
    let (status, first) = post_platform(&app, "/api/v1/audit/events", &one).await;
    assert_eq!(status, 201, "{first}");
    assert!(errors(&response, &first).is_empty(), "{first}");
    // A retry of a write whose answer was lost: the same event, answered as the platform does.
    let (status, again) = post_platform(&app, "/api/v1/audit/events", &one).await;
    assert_eq!(status, 201, "{again}");
    assert!(errors(&response, &again).is_empty(), "{again}");
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(app.db.count().await, 1);
    // The native answers say it was already stored.
    let (status, native) = app.post("/api/v1/audit/events", &one).await;
    assert_eq!((status, &native["event_id"]), (200, &first["event_id"]));
}

async fn queries_take_the_platforms_parameters(app: TestApp) {
    let mut events = Vec::new();
    for i in 0..7 {
        let mut e = event("rr-q");
        e["severity"] = json!(if i < 3 { "critical" } else { "warning" });
        e["event_data"]["task_id"] = json!(format!("task-{}", i % 2));
        // The discriminator their decoder reads (without it their answers leave it out).
        e["event_data"]["event_type"] = e["event_type"].clone();
        e["event_timestamp"] = json!(format!("2026-03-01T00:00:0{i}Z"));
        events.push(e);
    }
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &json!(events))
            .await
            .0,
        201
    );
    // The service's own event in the same trail (a legal hold).
    let (status, hold) = post_platform(
        &app,
        "/api/v1/audit/legal-hold",
        &json!({"correlation_id": "rr-q", "reason": "case 7"}),
    )
    .await;
    assert_eq!(status, 200, "{hold}");
    // The seven, and the hold's own record: the hold keeps all of them.
    assert_eq!(hold["events_affected"], 8, "{hold}");
    // A typed record in the same trail, as their Notification service writes it.
    let mut record = contract::DOCUMENT["paths"]["/api/v1/audit/notifications"]["post"]
        ["requestBody"]["content"]["application/json"]["examples"]["successful_delivery"]["value"]
        .clone();
    record["remediation_id"] = json!("rr-q");
    let (status, stored) = post_platform(&app, "/api/v1/audit/notifications", &record).await;
    assert_eq!(status, 201, "{stored}");
    let found = errors(&validator("NotificationAuditResponse", false), &stored);
    assert!(found.is_empty(), "{found:#?}");
    let seconds = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_timestamp"].as_str().unwrap()[17..19].to_string())
            .collect()
    };
    let (status, page) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&severity=critical",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(seconds(&page), ["00", "01", "02"]);
    let (_, page) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&detail_key=task_id&detail_value=task-1",
    )
    .await;
    assert_eq!(seconds(&page), ["01", "03", "05"]);
    // Offset pages, as their callers walk them; the service's own event is not among them.
    let (_, page) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&limit=3&offset=3",
    )
    .await;
    check_events_envelope(&page);
    assert_eq!(seconds(&page), ["03", "04", "05"]);
    assert_eq!(
        page["pagination"],
        json!({"limit": 3, "offset": 3, "total": 7, "has_more": true})
    );
    let (_, last) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&limit=3&offset=6",
    )
    .await;
    assert_eq!(
        (seconds(&last), &last["pagination"]["has_more"]),
        (vec!["06".to_string()], &json!(false))
    );
    // Asked for, the events their decoder cannot read are there: the hold's and the record.
    let (_, all) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&include_all=true",
    )
    .await;
    assert_eq!(all["pagination"]["total"], 9);
    let (_, native) = app.get("/api/v1/audit/events?correlation_id=rr-q").await;
    assert_eq!(native["pagination"]["total"], 9);
    let (_, held) = get_platform(&app, "/api/v1/audit/events?event_category=datastorage").await;
    assert_eq!(
        held["data"][0]["event_type"],
        "datastorage.legal_hold.placed"
    );
    // Either half alone: the member is there, or some member holds the text.
    let (_, has_task) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&detail_key=task_id",
    )
    .await;
    assert_eq!(has_task["pagination"]["total"], 7);
    let (_, holds_text) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&detail_value=task-0",
    )
    .await;
    assert_eq!(seconds(&holds_text), ["00", "02", "04", "06"]);
    let (_, no_member) = get_platform(
        &app,
        "/api/v1/audit/events?correlation_id=rr-q&detail_key=nothing_here",
    )
    .await;
    assert_eq!(no_member["pagination"]["total"], 0);
    // A key that is not a plain name, or a negative offset, is refused.
    for (query, field) in [
        ("detail_key=a.b&detail_value=x", "detail_key"),
        ("offset=-1", "offset"),
    ] {
        let (status, problem) = get_platform(&app, &format!("/api/v1/audit/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert!(
            problem["field_errors"][field].is_string(),
            "{query}: {problem}"
        );
    }
}

/// The page's envelope only (its events are not of the platform's types here).
fn check_events_envelope(page: &Value) {
    let found = errors(&validator("AuditEventsQueryResponse", true), page);
    assert!(found.is_empty(), "{found:#?}");
}

on_both_stores!(
    every_event_type_is_stored_and_read_back_in_the_platforms_shape,
    a_batch_whose_answer_is_lost_is_stored_once_when_retried,
    one_invalid_item_refuses_the_whole_batch,
    a_single_write_answers_the_platforms_shape_also_when_repeated,
    queries_take_the_platforms_parameters,
);

/// A log written before the typed records carried `record_kind` (and before the platform's
/// fields), migrated in place: its records stay in their views, a unified event of a record's
/// type stays out, and every proof holds.
async fn a_log_from_before_keeps_its_records_and_its_proofs(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    db.migrate_before(6).await;
    // A notification record as that version wrote it: its type's prefix, its UUIDv5 id.
    let record_body = json!({
        "remediation_id": "rr-old", "notification_id": "n-old", "recipient": "#ops",
        "channel": "slack", "message_summary": "Pod restarted", "status": "sent",
        "sent_at": "2026-11-01T00:00:00Z", "escalation_level": 0, "delivery_status": "200 OK"
    });
    let rules = RecordRules {
        now: chrono::Utc::now(),
        embedding_dimension: 1536,
    };
    let record = NotificationAudit::parse(record_body.clone(), &rules).unwrap();
    let marked = record.to_event(chrono::Utc::now().into());
    let old_record = AuditEvent::from_fields(|f| {
        Ok::<_, std::convert::Infallible>(match f {
            EventField::RecordKind => FieldValue::Absent,
            f => marked.get(f).to_owned(),
        })
    })
    .unwrap();
    let unified = AuditEvent::parse(event("rr-old"), chrono::Utc::now()).unwrap();
    // As the schema before the platform's fields stored them: none of the new fields (and,
    // later still, no attested writer; the receipt time is the commit time, as then).
    let then = [
        EventField::ActorIp,
        EventField::ParentEventDate,
        EventField::IsSensitive,
        EventField::RecordKind,
        EventField::SubmittedBy,
        EventField::ReceivedAt,
    ];
    write_as_before(&db, &[old_record.clone(), unified], &then).await;

    let app = start_on(Arc::new(db), backend, AppOptions::default()).await;
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM notification_audit")
            .await,
        1
    );
    let (status, page) = app
        .get("/api/v1/audit/notifications?remediation_id=rr-old")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["notification_id"], "n-old");
    // Sent again, the old record is the same record.
    let (status, again) = app.post("/api/v1/audit/notifications", &record_body).await;
    assert_eq!(status, 200, "{again}");
    // A unified event of the record's type, written now, is not a record.
    let mut lookalike = event("rr-old");
    lookalike["event_type"] = json!("notification.delivery.sent");
    assert_eq!(app.post("/api/v1/audit/events", &lookalike).await.0, 201);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM notification_audit")
            .await,
        1
    );
    assert_eq!(app.db.count().await, 3);
    // Every proof holds: the old rows' hashes are their content's, the new rows' theirs.
    let report = app.assert_log_verifies(3).await;
    assert_eq!((report.events, report.verified_tree_size), (3, 3));
    let stored = app
        .get(&format!("/api/v1/audit/events/{}", old_record.event_id()))
        .await
        .1;
    assert!(stored.get("record_kind").is_none(), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_log_from_before_keeps_its_records_and_its_proofs() {
    a_log_from_before_keeps_its_records_and_its_proofs(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_log_from_before_keeps_its_records_and_its_proofs() {
    a_log_from_before_keeps_its_records_and_its_proofs(Backend::Sqlite).await;
}

/// Behind the platform's authenticating proxy: its identity header is trusted only when the
/// deployment names it.
async fn the_proxy_identity_is_trusted_only_when_configured(backend: Backend) {
    let options = AppOptions {
        trusted_user_header: Some("X-Auth-Request-User".into()),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let hold = json!({"correlation_id": "rr-p", "reason": "audit", "requested_by": "mallory"});
    let send = |user: Option<&'static str>, path: &'static str, body: Value| {
        let mut request = app.platform.post(app.url(path)).json(&body);
        if let Some(user) = user {
            request = request.header("x-auth-request-user", user);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let challenge = r.headers().get("www-authenticate").cloned();
            (status, challenge, r.json::<Value>().await.unwrap())
        }
    };
    // Around the proxy: refused, nothing held.
    let (status, challenge, problem) = send(None, "/api/v1/audit/legal-hold", hold.clone()).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (401, Some("https://kubernaut.ai/problems/unauthorized"))
    );
    assert!(challenge.is_some());
    assert_eq!(app.db.scalar("SELECT count(*) FROM legal_holds").await, 0);
    // Through it: in the proxy's identity's name, whatever the body claims.
    let (status, _, placed) =
        send(Some("alice@example.com"), "/api/v1/audit/legal-hold", hold).await;
    assert_eq!(
        (status, placed["placed_by"].as_str()),
        (200, Some("alice@example.com"))
    );
    // An event written by a person is theirs; a ServiceAccount's keeps its service's actor.
    let mut e = event("rr-p");
    e["actor_id"] = json!("gateway-service");
    let (_, _, by_person) =
        send(Some("alice@example.com"), "/api/v1/audit/events", e.clone()).await;
    assert_eq!(
        (
            by_person["actor_type"].as_str(),
            by_person["actor_id"].as_str()
        ),
        (Some("user"), Some("alice@example.com"))
    );
    e["event_data"]["n"] = json!(2);
    let sa = "system:serviceaccount:kubernaut-system:gateway";
    let (_, _, by_service) = send(Some(sa), "/api/v1/audit/events", e).await;
    assert_eq!(by_service["actor_id"], "gateway-service");
    let stored = app
        .db
        .text("SELECT actor_type || ':' || actor_id FROM audit_events WHERE correlation_id = 'rr-p' AND event_type NOT LIKE 'datastorage.%' ORDER BY seq")
        .await;
    assert_eq!(stored, "user:alice@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_identity_is_trusted_only_when_configured_postgres() {
    the_proxy_identity_is_trusted_only_when_configured(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_identity_is_trusted_only_when_configured_sqlite() {
    the_proxy_identity_is_trusted_only_when_configured(Backend::Sqlite).await;
}

/// Without the setting, the header is anyone's to send, so it is not read.
async fn an_untrusted_proxy_header_is_ignored(app: TestApp) {
    let r = app
        .platform
        .post(app.url("/api/v1/audit/legal-hold"))
        .header("x-auth-request-user", "mallory")
        .json(&json!({"correlation_id": "rr-u", "reason": "audit", "requested_by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let placed: Value = r.json().await.unwrap();
    assert_eq!(placed["placed_by"], "alice");
}

on_both_stores!(an_untrusted_proxy_header_is_ignored);

/// An assessment event as the Effectiveness Monitor writes it.
fn assessment(event_type: &str, n: u32, data: Value) -> Value {
    let mut payload = json!({
        "event_type": event_type,
        "correlation_id": "rr-eff",
        "namespace": "payments",
        "component": event_type.split('.').nth(1).unwrap(),
    });
    payload
        .as_object_mut()
        .unwrap()
        .extend(data.as_object().unwrap().clone());
    platform_event(event_type, payload, "rr-eff", n)
}

async fn the_effectiveness_score_follows_the_platforms_formula(app: TestApp) {
    let (status, _) = get_platform(&app, "/api/v1/effectiveness/rr-eff").await;
    assert_eq!(status, 404, "no assessment yet");
    let events = json!([
        assessment(
            "effectiveness.health.assessed",
            1,
            json!({"assessed": true, "score": 1.0, "details": "3/3 ready"})
        ),
        assessment(
            "effectiveness.alert.assessed",
            2,
            json!({"assessed": true, "score": 0.5})
        ),
        assessment(
            "effectiveness.hash.computed",
            3,
            json!({"pre_remediation_spec_hash": "sha256:aa", "post_remediation_spec_hash": "sha256:bb", "hash_match": false})
        ),
    ]);
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &events)
            .await
            .0,
        201
    );
    let (status, partial) = get_platform(&app, "/api/v1/effectiveness/rr-eff").await;
    assert_eq!(status, 200, "{partial}");
    let found = errors(&validator("EffectivenessScoreResponse", false), &partial);
    assert!(found.is_empty(), "{found:#?}");
    // Health and alert only: (1.0 * 0.40 + 0.5 * 0.35) / 0.75.
    let want = (1.0 * 0.40 + 0.5 * 0.35) / 0.75;
    assert!(
        (partial["score"].as_f64().unwrap() - want).abs() < 1e-9,
        "{partial}"
    );
    assert_eq!(partial["assessment_status"], "in_progress");
    assert_eq!(partial["hash_comparison"]["hash_match"], false);
    assert_eq!(partial["components"]["health_details"], "3/3 ready");
    let more = json!([
        assessment(
            "effectiveness.metrics.assessed",
            4,
            json!({"assessed": true, "score": 0.2})
        ),
        assessment(
            "effectiveness.assessment.completed",
            5,
            json!({"reason": "Full"})
        ),
    ]);
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &more)
            .await
            .0,
        201
    );
    let (_, full) = get_platform(&app, "/api/v1/effectiveness/rr-eff").await;
    let want = 1.0 * 0.40 + 0.5 * 0.35 + 0.2 * 0.25;
    assert!(
        (full["score"].as_f64().unwrap() - want).abs() < 1e-9,
        "{full}"
    );
    assert_eq!(full["assessment_status"], "Full");
    let found = errors(&validator("EffectivenessScoreResponse", false), &full);
    assert!(found.is_empty(), "{found:#?}");
}

on_both_stores!(the_effectiveness_score_follows_the_platforms_formula);

/// An event of `event_type` for `correlation_id` as the platform writes it: its payload made
/// from the document's schema, with `data` over it.
fn platform_typed(event_type: &str, correlation_id: &str, n: u32, data: Value) -> Value {
    let payload_schema = contract::event_types()
        .into_iter()
        .find(|(t, _)| t == event_type)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("the document names {event_type}"));
    let mut payload = contract::instance(contract::schema(&payload_schema));
    payload["event_type"] = json!(event_type);
    payload
        .as_object_mut()
        .unwrap()
        .extend(data.as_object().unwrap().clone());
    platform_event(event_type, payload, correlation_id, n)
}

async fn a_remediation_request_is_rebuilt_from_its_trail(app: TestApp) {
    let (status, _) = post_platform(
        &app,
        "/api/v1/audit/remediation-requests/rr-rb/reconstruct",
        &json!({}),
    )
    .await;
    assert_eq!(status, 404, "no trail yet");
    let trail = json!([
        platform_typed(
            "gateway.signal.received",
            "rr-rb",
            1,
            json!({
            "signal_name": "HighCPU", "signal_type": "alert", "fingerprint": "fp-1",
            "signal_labels": {"severity": "critical"}, "signal_annotations": {"summary": "CPU high"},
            "original_payload": {"alert": "data"}})
        ),
        platform_typed(
            "orchestrator.lifecycle.created",
            "rr-rb",
            2,
            json!({
            "timeout_config": {"global": "1h", "processing": "10m", "analyzing": "15m"}})
        ),
        platform_typed(
            "workflowexecution.selection.completed",
            "rr-rb",
            3,
            json!({
            "workflow_id": "restart-pod", "workflow_version": "1.0.0", "container_image": "ghcr.io/x/restart:1.0.0"})
        ),
        platform_typed(
            "workflowexecution.execution.started",
            "rr-rb",
            4,
            json!({"execution_name": "we-rb"})
        ),
        platform_typed(
            "orchestrator.lifecycle.completed",
            "rr-rb",
            5,
            json!({"outcome": "Remediated"})
        ),
    ]);
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &trail)
            .await
            .0,
        201
    );
    let (status, rebuilt) = post_platform(
        &app,
        "/api/v1/audit/remediation-requests/rr-rb/reconstruct",
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{rebuilt}");
    let found = errors(&validator("ReconstructionResponse", false), &rebuilt);
    assert!(found.is_empty(), "{found:#?}");
    // Name, type, labels, annotations, payload, timeouts, workflow, execution: 8 of 9.
    assert_eq!(rebuilt["validation"]["completeness"], 88);
    assert_eq!(rebuilt["validation"]["is_valid"], true);
    assert_eq!(
        rebuilt["validation"]["warnings"][0].as_str().unwrap(),
        "providerData is missing (Gap #4) - AI analysis summary unavailable"
    );
    let rr: Value =
        serde_yaml_ng::from_str(rebuilt["remediation_request_yaml"].as_str().unwrap()).unwrap();
    assert_eq!(rr["kind"], "RemediationRequest");
    assert_eq!(rr["spec"]["signalName"], "HighCPU");
    assert_eq!(rr["spec"]["signalFingerprint"], "fp-1");
    assert_eq!(rr["spec"]["signalLabels"]["severity"], "critical");
    assert_eq!(rr["status"]["timeoutConfig"]["global"], "1h0m0s");
    assert_eq!(
        rr["status"]["workflowSelection"]["executionRef"]["name"],
        "we-rb"
    );
    assert_eq!(rr["status"]["completionStatus"]["outcome"], "Remediated");
    // A trail without its signal cannot be rebuilt.
    let orphan = json!([platform_typed(
        "orchestrator.lifecycle.created",
        "rr-orphan",
        6,
        json!({})
    )]);
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &orphan)
            .await
            .0,
        201
    );
    let (status, problem) = post_platform(
        &app,
        "/api/v1/audit/remediation-requests/rr-orphan/reconstruct",
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, problem["reason"].as_str()),
        (400, Some("missing-gateway-event")),
        "{problem}"
    );
}

on_both_stores!(a_remediation_request_is_rebuilt_from_its_trail);

/// `event` stamped `ago` before now.
fn at(mut event: Value, ago: chrono::Duration) -> Value {
    event["event_timestamp"] = json!(audit_model::timestamp::format(&(chrono::Utc::now() - ago)));
    event
}

async fn a_targets_remediation_history_comes_in_two_tiers(app: TestApp) {
    let target = "payments/Deployment/api";
    let workflow = |rr: &str, n: u32, pre: &str| {
        platform_typed(
            "remediation.workflow_created",
            rr,
            n,
            json!({
            "target_resource": target, "pre_remediation_spec_hash": pre, "signal_type": "alert",
            "signal_fingerprint": "fp-h", "action_type": "RestartPod", "outcome": "Remediated"}),
        )
    };
    let hour = chrono::Duration::hours(1);
    let events = json!([
        // Recent: moved the spec from a to b, assessed.
        at(workflow("rr-h1", 1, "sha256:a"), hour),
        at(
            platform_typed(
                "effectiveness.health.assessed",
                "rr-h1",
                2,
                json!({
            "assessed": true, "score": 1.0, "health_checks": {"pod_running": true, "restart_delta": 0}})
            ),
            hour
        ),
        at(
            platform_typed(
                "effectiveness.hash.computed",
                "rr-h1",
                3,
                json!({
            "pre_remediation_spec_hash": "sha256:a", "post_remediation_spec_hash": "sha256:b"})
            ),
            hour
        ),
        at(
            platform_typed(
                "effectiveness.assessment.completed",
                "rr-h1",
                4,
                json!({"reason": "Full"})
            ),
            hour
        ),
        // Ten days ago: started from b, where the target is now again.
        at(workflow("rr-h2", 5, "sha256:b"), hour * 240),
        // Another target, and a hash that is neither: not in the history.
        at(
            platform_typed(
                "remediation.workflow_created",
                "rr-h3",
                6,
                json!({
            "target_resource": "payments/Deployment/other", "pre_remediation_spec_hash": "sha256:b"})
            ),
            hour
        ),
        at(workflow("rr-h4", 7, "sha256:z"), hour * 2),
    ]);
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &events)
            .await
            .0,
        201
    );
    let (status, ctx) = get_platform(
        &app,
        "/api/v1/remediation-history/context?targetKind=Deployment&targetName=api&targetNamespace=payments&currentSpecHash=sha256:b",
    )
    .await;
    assert_eq!(status, 200, "{ctx}");
    let found = errors(&validator("RemediationHistoryContext", false), &ctx);
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(ctx["targetResource"], target);
    assert_eq!(ctx["regressionDetected"], true);
    assert_eq!(ctx["tier1"]["window"], "24h0m0s");
    let recent = ctx["tier1"]["chain"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{ctx}");
    assert_eq!(
        (
            &recent[0]["remediationUID"],
            &recent[0]["hashMatch"],
            &recent[0]["assessmentReason"]
        ),
        (&json!("rr-h1"), &json!("postRemediation"), &json!("Full"))
    );
    assert_eq!(
        recent[0]["healthChecks"],
        json!({"podRunning": true, "restartDelta": 0})
    );
    let older = ctx["tier2"]["chain"].as_array().unwrap();
    assert_eq!(
        older
            .iter()
            .map(|e| (&e["remediationUID"], &e["hashMatch"]))
            .collect::<Vec<_>>(),
        [(&json!("rr-h2"), &json!("preRemediation"))]
    );
    // A target without history: empty tiers, no regression.
    let (_, none) = get_platform(
        &app,
        "/api/v1/remediation-history/context?targetKind=Deployment&targetName=quiet&targetNamespace=payments&currentSpecHash=sha256:b",
    )
    .await;
    assert_eq!(
        (&none["regressionDetected"], &none["tier1"]["chain"]),
        (&json!(false), &json!([]))
    );
    for (query, field) in [
        ("targetKind=Deployment&targetName=api&targetNamespace=payments", "currentSpecHash"),
        ("targetKind=Deployment&targetName=api&targetNamespace=payments&currentSpecHash=x&tier1Window=soon", "tier1Window"),
        ("targetKind=Deployment&targetName=api&targetNamespace=payments&currentSpecHash=x&tier2Window=-24h", "tier2Window"),
    ] {
        let (status, problem) =
            get_platform(&app, &format!("/api/v1/remediation-history/context?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert!(problem["field_errors"][field].is_string(), "{query}: {problem}");
    }
}

on_both_stores!(a_targets_remediation_history_comes_in_two_tiers);

async fn the_export_is_the_platforms_signed_object(app: TestApp) {
    let mut events = fixtures("rr-exp")[..4].to_vec();
    events[2]["event_data"]["user_email"] = json!("alice@example.org");
    events[2]["event_data"]["source_ip"] = json!("10.1.2.3");
    assert_eq!(
        post_platform(&app, "/api/v1/audit/events/batch", &json!(events))
            .await
            .0,
        201
    );
    let (status, _) = post_platform(
        &app,
        "/api/v1/audit/legal-hold",
        &json!({"correlation_id": "rr-exp", "reason": "audit"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, export) = get_platform(&app, "/api/v1/audit/export?correlation_id=rr-exp").await;
    assert_eq!(status, 200, "{export}");
    let found = errors(&validator("AuditExportResponse", false), &export);
    assert!(found.is_empty(), "{found:#?}");
    let items = export["events"].as_array().unwrap();
    // The four, and the hold's own record.
    assert_eq!(
        (items.len(), &export["export_metadata"]["total_events"]),
        (5, &json!(5))
    );
    assert_eq!(export["hash_chain_verification"]["valid_chain_events"], 5);
    assert!(items
        .iter()
        .all(|e| e["hash_chain_valid"] == true && e["legal_hold"] == true));
    for pair in items.windows(2) {
        assert_eq!(pair[1]["previous_event_hash"], pair[0]["event_hash"]);
    }
    assert_eq!(items[2]["event_data"]["user_email"], "alice@example.org");
    // Signed by the checkpoint key over the events as sent.
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(serde_json::to_vec(&export["events"]).unwrap()).into()
    };
    let key = app.verifier().await;
    let signature = export["export_metadata"]["signature"].as_str().unwrap();
    assert!(key.verify_export(&digest, signature));
    assert!(!key.verify_export(&[0u8; 32], signature));
    assert_eq!(
        export["export_metadata"]["certificate_fingerprint"],
        json!(key.key_id())
    );
    // Redacted for sharing: masked, still verified against the stored content.
    let (_, redacted) = get_platform(
        &app,
        "/api/v1/audit/export?correlation_id=rr-exp&redact_pii=true",
    )
    .await;
    let masked = &redacted["events"][2]["event_data"];
    assert_eq!(
        (&masked["user_email"], &masked["source_ip"]),
        (&json!("a***@e***.org"), &json!("10.***.*.***"))
    );
    assert_eq!(
        redacted["hash_chain_verification"]["broken_chain_events"],
        0
    );
    // Paged, and the native export as before (once a checkpoint covers the events).
    crate::helpers::checkpoint_covering(&app, 5).await;
    let (_, page) = get_platform(
        &app,
        "/api/v1/audit/export?correlation_id=rr-exp&offset=3&limit=10",
    )
    .await;
    assert_eq!(page["export_metadata"]["total_events"], 2);
    // The event list's other filters narrow the signed export too, and are recorded in it.
    let wanted = events[1]["event_type"].as_str().unwrap().to_string();
    let (_, typed) = get_platform(
        &app,
        &format!("/api/v1/audit/export?correlation_id=rr-exp&event_type={wanted}"),
    )
    .await;
    let types: Vec<&Value> = typed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_type"])
        .collect();
    let expected = events.iter().filter(|e| e["event_type"] == wanted).count();
    assert!((1..5).contains(&expected), "{events:?}");
    assert_eq!(types.len(), expected, "{typed}");
    assert!(types.iter().all(|t| **t == wanted), "{typed}");
    assert_eq!(
        typed["export_metadata"]["query_filters"]["event_type"],
        json!(wanted)
    );
    let native = app
        .client
        .get(app.url("/api/v1/audit/export?correlation_id=rr-exp"))
        .send()
        .await
        .unwrap();
    assert_eq!(native.headers()["content-type"], "application/x-ndjson");
    let (status, problem) = get_platform(&app, "/api/v1/audit/export?format=csv&limit=5").await;
    assert_eq!(
        (status, problem["field_errors"]["limit"].is_string()),
        (400, true),
        "{problem}"
    );
}

on_both_stores!(the_export_is_the_platforms_signed_object);
