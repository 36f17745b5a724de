//! The six typed seed record endpoints and their SQL views, on PostgreSQL and SQLite.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, AppOptions, Backend, TestApp, TestDb};

/// A kind under test: endpoint, view, id field, a valid record, and its validation rules.
struct Kind {
    path: &'static str,
    view: &'static str,
    id_field: &'static str,
    /// The first natural-key field (named by a 409).
    key_field: &'static str,
    valid: fn() -> Value,
    /// (what, field to change, new value or null to remove)
    rules: Vec<(&'static str, &'static str, Value)>,
}

fn long() -> Value {
    json!("x".repeat(256))
}

/// A leap second: no store can give it back as it was hashed.
fn leap_second() -> Value {
    json!("2016-12-31T23:59:60Z")
}

fn common_rules(
    required: &[&'static str],
    names: &[&'static str],
) -> Vec<(&'static str, &'static str, Value)> {
    let mut rules = Vec::new();
    for f in required {
        rules.push(("missing required field", *f, Value::Null));
    }
    for f in names {
        rules.push(("name over 255 characters", *f, long()));
        rules.push(("blank name", *f, json!("   ")));
    }
    rules.push(("unknown field", "colour", json!("red")));
    rules
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            path: "notifications",
            view: "notification_audit",
            id_field: "notification_id",
            key_field: "notification_id",
            valid: || {
                json!({
                    "remediation_id": "rr-k", "notification_id": "n-1", "recipient": "#ops",
                    "channel": "slack", "message_summary": "Pod restarted", "status": "sent",
                    "sent_at": "2026-11-27T10:00:00Z", "escalation_level": 0, "delivery_status": "200 OK"
                })
            },
            rules: [
                common_rules(
                    &[
                        "remediation_id",
                        "notification_id",
                        "recipient",
                        "channel",
                        "message_summary",
                        "status",
                        "sent_at",
                    ],
                    &["remediation_id", "notification_id", "recipient"],
                ),
                vec![
                    ("channel outside the enum", "channel", json!("pigeon")),
                    ("enum over 50 characters", "channel", json!("s".repeat(51))),
                    ("status outside the enum", "status", json!("lost")),
                    ("escalation above 100", "escalation_level", json!(101)),
                    ("negative escalation", "escalation_level", json!(-1)),
                    ("sent_at a leap second", "sent_at", leap_second()),
                    ("sent_at not RFC 3339", "sent_at", json!("10am")),
                ],
            ]
            .concat(),
        },
        Kind {
            path: "signal-processing",
            view: "signal_processing_audit",
            id_field: "signal_id",
            key_field: "signal_id",
            valid: || {
                json!({
                    "remediation_id": "rr-k", "signal_id": "s-1", "alert_fingerprint": "fp-1",
                    "environment": "production", "severity": "critical", "status": "enriched",
                    "processing_start_time": "2026-11-27T10:00:01Z", "enrichment_quality": 0.9,
                    "classification_score": 0.75, "context_data": {"pods": 3}, "created_crd_type": "AIAnalysis"
                })
            },
            rules: [
                common_rules(
                    &[
                        "remediation_id",
                        "signal_id",
                        "alert_fingerprint",
                        "environment",
                        "severity",
                        "status",
                        "processing_start_time",
                    ],
                    &["signal_id", "alert_fingerprint", "environment"],
                ),
                vec![
                    ("status outside the enum", "status", json!("ignored")),
                    ("quality above 1", "enrichment_quality", json!(1.5)),
                    ("score below 0", "classification_score", json!(-0.1)),
                    ("negative duration", "processing_duration_ms", json!(-5)),
                    ("context not an object", "context_data", json!([1])),
                    (
                        "CRD type outside the enum",
                        "created_crd_type",
                        json!("Pod"),
                    ),
                ],
            ]
            .concat(),
        },
        Kind {
            path: "orchestration",
            view: "orchestration_audit",
            id_field: "remediation_id",
            key_field: "remediation_id",
            valid: || {
                json!({
                    "remediation_id": "rr-k", "remediation_name": "restart-pod", "overall_phase": "analyzing",
                    "start_time": "2026-11-27T10:00:02Z", "service_crd_statuses": {"aianalysis": "running"}
                })
            },
            rules: [
                common_rules(
                    &[
                        "remediation_id",
                        "remediation_name",
                        "overall_phase",
                        "start_time",
                    ],
                    &["remediation_id", "remediation_name"],
                ),
                vec![
                    ("phase outside the enum", "overall_phase", json!("sleeping")),
                    ("statuses not an object", "service_crd_statuses", json!("x")),
                    ("start_time a leap second", "start_time", leap_second()),
                ],
            ]
            .concat(),
        },
        Kind {
            path: "ai-decisions",
            view: "ai_analysis_audit",
            id_field: "ai_analysis_id",
            key_field: "ai_analysis_id",
            valid: || {
                json!({
                    "remediation_id": "rr-k", "ai_analysis_id": "ai-1", "alert_fingerprint": "fp-1",
                    "environment": "production", "severity": "critical",
                    "investigation_start_time": "2026-11-27T10:00:03Z", "confidence_score": 0.87,
                    "completion_status": "completed", "recommendations": [{"action": "restart"}],
                    "hallucination_detected": false, "embedding": [1.0, 0.0, 0.0]
                })
            },
            rules: [
                common_rules(
                    &[
                        "remediation_id",
                        "ai_analysis_id",
                        "alert_fingerprint",
                        "environment",
                        "severity",
                        "investigation_start_time",
                        "confidence_score",
                        "completion_status",
                    ],
                    &["ai_analysis_id", "environment"],
                ),
                vec![
                    (
                        "severity outside the enum",
                        "severity",
                        json!("apocalyptic"),
                    ),
                    ("confidence above 1", "confidence_score", json!(1.01)),
                    (
                        "probability below 0",
                        "effectiveness_probability",
                        json!(-1),
                    ),
                    ("success rate above 1", "historical_success_rate", json!(2)),
                    (
                        "completion outside the enum",
                        "completion_status",
                        json!("done"),
                    ),
                    (
                        "embedding of the wrong dimension",
                        "embedding",
                        json!([1.0, 2.0]),
                    ),
                    (
                        "embedding with a non-number",
                        "embedding",
                        json!([1.0, "x", 3.0]),
                    ),
                    ("recommendations not an array", "recommendations", json!({})),
                ],
            ]
            .concat(),
        },
        Kind {
            path: "executions",
            view: "workflow_execution_audit",
            id_field: "workflow_execution_id",
            key_field: "workflow_execution_id",
            valid: || {
                json!({
                    "remediation_id": "rr-k", "workflow_execution_id": "we-1", "workflow_name": "restart",
                    "workflow_version": "v1", "total_steps": 3, "steps_completed": 2, "steps_failed": 1,
                    "outcome": "partial_success", "status": "completed", "effectiveness_score": 0.5,
                    "step_executions": [{"step": 1}], "completed_at": "2026-11-27T10:00:04Z"
                })
            },
            rules: [
                common_rules(
                    &[
                        "remediation_id",
                        "workflow_execution_id",
                        "workflow_name",
                        "workflow_version",
                        "total_steps",
                        "steps_completed",
                        "steps_failed",
                        "outcome",
                        "status",
                    ],
                    &["workflow_execution_id", "workflow_name"],
                ),
                vec![
                    ("outcome outside the enum", "outcome", json!("meh")),
                    ("status outside the enum", "status", json!("stalled")),
                    ("negative step count", "steps_failed", json!(-1)),
                    ("a step count not an integer", "steps_completed", json!(2.5)),
                    ("score above 1", "effectiveness_score", json!(7)),
                ],
            ]
            .concat(),
        },
        Kind {
            path: "effectiveness",
            view: "effectiveness_audit",
            id_field: "assessment_id",
            key_field: "assessment_id",
            valid: || {
                json!({
                    "assessment_id": "ea-1", "remediation_id": "rr-k", "action_type": "restart_pod",
                    "traditional_score": 0.8, "confidence": 0.7, "completed_at": "2026-11-27T10:00:05Z",
                    "environmental_impact": -0.2, "trend_direction": "improving", "data_quality": "sufficient",
                    "sample_size": 12, "side_effects_detected": false
                })
            },
            rules: [
                common_rules(
                    &[
                        "assessment_id",
                        "remediation_id",
                        "action_type",
                        "traditional_score",
                        "confidence",
                        "completed_at",
                    ],
                    &["assessment_id", "action_type"],
                ),
                vec![
                    ("impact below -1", "environmental_impact", json!(-1.5)),
                    (
                        "trend outside the enum",
                        "trend_direction",
                        json!("sideways"),
                    ),
                    ("quality outside the enum", "data_quality", json!("great")),
                    ("negative sample size", "sample_size", json!(-1)),
                    ("negative data age", "data_age_days", json!(-2)),
                    ("confidence above 1", "confidence", json!(3)),
                ],
            ]
            .concat(),
        },
    ]
}

async fn app(backend: Backend) -> Option<TestApp> {
    let options = AppOptions {
        embedding_dimension: Some(3),
        ..AppOptions::default()
    };
    spawn_app_with(backend, options).await
}

fn changed(valid: &Value, field: &str, value: &Value) -> Value {
    let mut body = valid.clone();
    if value.is_null() {
        body.as_object_mut().unwrap().remove(field);
    } else {
        body[field] = value.clone();
    }
    body
}

async fn every_rule_of_every_kind(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    for kind in kinds() {
        let valid = (kind.valid)();
        let mut all_at_once = valid.clone();
        let mut all_fields = std::collections::BTreeSet::new();
        for (what, field, value) in &kind.rules {
            let body = changed(&valid, field, value);
            let (status, problem) = app
                .post(&format!("/api/v1/audit/{}", kind.path), &body)
                .await;
            assert_eq!(status, 400, "{} {what}: {problem}", kind.path);
            let errors = problem["field_errors"].as_object().unwrap();
            assert_eq!(
                errors.keys().collect::<Vec<_>>(),
                [field],
                "{} {what}: {problem}",
                kind.path
            );
            if !(all_fields.contains(field)
                || what.starts_with("name over")
                || what.starts_with("blank"))
            {
                all_at_once = changed(&all_at_once, field, value);
                all_fields.insert(*field);
            }
        }
        let (status, problem) = app
            .post(&format!("/api/v1/audit/{}", kind.path), &all_at_once)
            .await;
        assert_eq!(status, 400);
        let named: std::collections::BTreeSet<&str> = problem["field_errors"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            named,
            all_fields.iter().copied().collect(),
            "{}: every bad field at once",
            kind.path
        );
    }
    assert_eq!(app.db.count().await, 0, "a refused record was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_rule_postgres() {
    every_rule_of_every_kind(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_rule_sqlite() {
    every_rule_of_every_kind(Backend::Sqlite).await;
}

/// Reads one view column as text and compares it with the posted JSON value.
async fn assert_column(
    db: &TestDb,
    view: &str,
    id_field: &str,
    id: &str,
    column: &str,
    want: &Value,
) {
    let got = db
        .text(&format!(
            "SELECT CAST({column} AS TEXT) FROM {view} WHERE {id_field} = '{id}'"
        ))
        .await;
    let ok = match want {
        Value::String(s) => match audit_model::timestamp::parse(s) {
            Ok(t) => {
                let parsed = audit_model::timestamp::parse(&got).ok().or_else(|| {
                    chrono::DateTime::parse_from_str(&format!("{got}00"), "%Y-%m-%d %H:%M:%S%.f%z")
                        .ok()
                        .map(|d| d.to_utc())
                });
                parsed == Some(t)
            }
            Err(_) => got.eq_ignore_ascii_case(s),
        },
        Value::Number(n) => got.parse::<f64>().ok() == n.as_f64(),
        Value::Bool(b) => got == b.to_string() || got == (*b as i32).to_string(),
        other => serde_json::from_str::<Value>(&got).ok().as_ref() == Some(other),
    };
    assert!(ok, "{view}.{column}: stored {got:?}, posted {want}");
}

async fn create_replay_conflict(app: TestApp) {
    for kind in kinds() {
        let valid = (kind.valid)();
        let id = valid[kind.id_field].as_str().unwrap();
        let path = format!("/api/v1/audit/{}", kind.path);
        let (status, stored) = app.post(&path, &valid).await;
        assert_eq!(status, 201, "{}: {stored}", kind.path);
        assert!(
            stored["id"].as_i64().unwrap() > 0
                && stored["event_id"].is_string()
                && stored["created_at"].is_string()
        );
        let count_sql = format!(
            "SELECT count(*) FROM {} WHERE {} = '{id}'",
            kind.view, kind.id_field
        );
        assert_eq!(app.db.scalar(&count_sql).await, 1);
        for (column, value) in valid.as_object().unwrap() {
            assert_column(&app.db, kind.view, kind.id_field, id, column, value).await;
        }
        let seq = app
            .db
            .scalar(&format!(
                "SELECT id FROM {} WHERE {} = '{id}'",
                kind.view, kind.id_field
            ))
            .await;
        assert_eq!(seq, stored["id"].as_i64().unwrap());

        let (status, again) = app.post(&path, &valid).await;
        assert_eq!(status, 200, "{}: identical re-post", kind.path);
        assert_eq!(again, stored);
        assert_eq!(app.db.scalar(&count_sql).await, 1);

        // Same natural key, other content.
        let field = valid
            .as_object()
            .unwrap()
            .keys()
            .find(|k| {
                [
                    "message_summary",
                    "enrichment_quality",
                    "remediation_name",
                    "confidence_score",
                    "effectiveness_score",
                    "traditional_score",
                ]
                .contains(&k.as_str())
            })
            .unwrap();
        let mut conflicting = valid.clone();
        conflicting[field] = match &valid[field] {
            Value::String(_) => json!("something else"),
            _ => json!(0.123),
        };
        let (status, problem) = app.post(&path, &conflicting).await;
        assert_eq!(status, 409, "{}: {problem}", kind.path);
        assert_eq!(problem["resource"], kind.view);
        assert_eq!(problem["field"], kind.key_field);
        assert_eq!(problem["value"], valid[kind.key_field]);
        assert_eq!(app.db.scalar(&count_sql).await, 1);
        assert_column(&app.db, kind.view, kind.id_field, id, field, &valid[field]).await;

        let (status, records) = app.get(&format!("{path}/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(records, json!([stored]));
    }
    // The whole remediation, across all six kinds, in order.
    let (_, page) = app.get("/api/v1/audit/events?correlation_id=rr-k").await;
    let types: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "notification.delivery.sent",
            "signalprocessing.signal.enriched",
            "orchestration.remediation.analyzing",
            "analysis.decision.completed",
            "workflowexecution.execution.completed",
            "effectiveness.assessment.assessed"
        ]
    );
}

async fn notification_lifecycle_is_a_sequence_of_records(app: TestApp) {
    let base = json!({
        "remediation_id": "rr-life", "notification_id": "n-life", "recipient": "oncall@example.com",
        "channel": "email", "message_summary": "Disk full", "sent_at": "2026-11-27T11:00:00Z"
    });
    for (status, level) in [
        ("sent", 0),
        ("acknowledged", 0),
        ("escalated", 1),
        ("escalated", 2),
    ] {
        let mut body = base.clone();
        body["status"] = json!(status);
        body["escalation_level"] = json!(level);
        assert_eq!(
            app.post("/api/v1/audit/notifications", &body).await.0,
            201,
            "{status} {level}"
        );
    }
    let mut other_channel = base.clone();
    other_channel["status"] = json!("sent");
    other_channel["channel"] = json!("SLACK");
    other_channel["recipient"] = json!("#ops");
    assert_eq!(
        app.post("/api/v1/audit/notifications", &other_channel)
            .await
            .0,
        201
    );
    assert_eq!(app.db.scalar("SELECT count(*) FROM notification_audit WHERE notification_id = 'n-life' AND channel = 'email'").await, 4);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM notification_audit WHERE channel = 'slack'")
            .await,
        1,
        "stored lower-case"
    );
    let (_, page) = app
        .get("/api/v1/audit/events?correlation_id=rr-life&event_category=notification")
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    let (_, list) = app
        .get("/api/v1/audit/notifications?remediation_id=rr-life&status=escalated&channel=email")
        .await;
    let levels: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["escalation_level"].as_i64().unwrap())
        .collect();
    assert_eq!(levels, [1, 2]);
    let (_, page) = app
        .get("/api/v1/audit/notifications?remediation_id=rr-life&limit=2")
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!(
            "/api/v1/audit/notifications?remediation_id=rr-life&limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert!(rest["next_cursor"].is_null());
    let (status, _) = app
        .get("/api/v1/audit/notifications/no-such-notification")
        .await;
    assert_eq!(status, 404);
}

async fn similar_decisions_by_cosine(app: TestApp) {
    let vectors = [
        ("ai-x", [1.0, 0.0, 0.0]),
        ("ai-y", [0.0, 1.0, 0.0]),
        ("ai-xy", [1.0, 1.0, 0.0]),
        ("ai-none", [0.0, 0.0, 0.0]),
    ];
    for (id, v) in vectors {
        let mut body = json!({
            "remediation_id": "rr-sim", "ai_analysis_id": id, "alert_fingerprint": "fp", "environment": "prod",
            "severity": "info", "investigation_start_time": "2026-11-27T09:00:00Z", "confidence_score": 0.5,
            "completion_status": "completed", "embedding": v
        });
        if id == "ai-none" {
            body.as_object_mut().unwrap().remove("embedding");
        }
        assert_eq!(app.post("/api/v1/audit/ai-decisions", &body).await.0, 201);
    }
    let (status, found) = app
        .post(
            "/api/v1/audit/ai-decisions/similar",
            &json!({"embedding": [1.0, 0.0, 0.0], "limit": 3}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let got: Vec<(String, f64)> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["record"]["ai_analysis_id"].as_str().unwrap().to_string(),
                d["similarity"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["ai-x", "ai-xy", "ai-y"]
    );
    assert!((got[0].1 - 1.0).abs() < 1e-12, "self-similarity is 1");
    assert!((got[1].1 - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
    assert!(got[2].1.abs() < 1e-12, "orthogonal is 0");
    let (_, found) = app
        .post(
            "/api/v1/audit/ai-decisions/similar",
            &json!({"embedding": [0.0, 2.0, 0.0], "min_similarity": 0.5}),
        )
        .await;
    let ids: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["record"]["ai_analysis_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ai-y", "ai-xy"]);
    // A zero vector has no direction: nothing is similar to it.
    let (status, none) = app
        .post(
            "/api/v1/audit/ai-decisions/similar",
            &json!({"embedding": [0.0, 0.0, 0.0]}),
        )
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["data"], json!([]));
    for bad in [
        json!({"embedding": [1.0, 0.0]}),
        json!({}),
        json!({"embedding": [1, 0, 0], "limit": 0}),
    ] {
        let (status, problem) = app.post("/api/v1/audit/ai-decisions/similar", &bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}

mod both_stores {
    use super::*;

    async fn run(
        backend: Backend,
        test: fn(TestApp) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) {
        if let Some(app) = app(backend).await {
            test(app).await;
        }
    }

    macro_rules! cases {
        ($($name:ident),*) => {$(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(Backend::Postgres, |app| Box::pin(super::super::$name(app))).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(Backend::Sqlite, |app| Box::pin(super::super::$name(app))).await;
                }
            }
        )*};
    }

    cases!(
        create_replay_conflict,
        notification_lifecycle_is_a_sequence_of_records,
        similar_decisions_by_cosine
    );
}

#[tokio::test]
async fn unified_events_with_a_record_prefix_stay_out_of_the_typed_views() {
    let Some(app) = app(Backend::Sqlite).await else {
        return;
    };
    // The platform's controllers write such types on the unified endpoint.
    let mut e = crate::helpers::event("rr-platform");
    e["event_type"] = json!("notification.delivery.sent");
    let (status, stored) = app.post("/api/v1/audit/events", &e).await;
    assert_eq!(status, 201, "{stored}");
    assert!(stored.get("record_kind").is_none(), "{stored}");
    // A typed record is marked as one.
    let (status, record) = app
        .post("/api/v1/audit/notifications", &(kinds()[0].valid)())
        .await;
    assert_eq!(status, 201, "{record}");
    let kinds = app
        .db
        .text("SELECT group_concat(coalesce(record_kind, '-'), ',') FROM (SELECT record_kind FROM audit_events ORDER BY seq)")
        .await;
    assert_eq!(kinds, "-,notification_audit");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM notification_audit")
            .await,
        1
    );
    let (status, page) = app
        .get("/api/v1/audit/notifications?remediation_id=rr-platform")
        .await;
    assert_eq!(
        (status, page["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{page}"
    );
    // A UUIDv5 id with a record prefix is how records were marked before record_kind: refused
    // on the unified endpoint, so that no event can join a typed view by it.
    e["event_id"] = json!(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"x").to_string());
    let (status, problem) = app.post("/api/v1/audit/events", &e).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["field_errors"]["event_id"]
        .as_str()
        .unwrap()
        .contains("record_kind"));
    assert_eq!(app.db.count().await, 2);
}

#[tokio::test]
async fn openapi_describes_the_record_routes_and_enums() {
    let doc = datastorage::http::openapi::value();
    for path in [
        "notifications",
        "signal-processing",
        "orchestration",
        "ai-decisions",
        "executions",
        "effectiveness",
    ] {
        assert!(
            doc["paths"][format!("/api/v1/audit/{path}")]["post"].is_object(),
            "{path}"
        );
        assert!(
            doc["paths"][format!("/api/v1/audit/{path}")]["get"].is_object(),
            "{path}"
        );
        assert!(
            doc["paths"][format!("/api/v1/audit/{path}/{{id}}")]["get"].is_object(),
            "{path}"
        );
    }
    assert!(doc["paths"]["/api/v1/audit/ai-decisions/similar"]["post"].is_object());
    // Each record's body schema is made from its parser: required fields, limits, and the
    // enumerated values in any case.
    let body = |path: &str| {
        doc["paths"][format!("/api/v1/audit/{path}")]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]
            .clone()
    };
    let execution = body("executions");
    let outcome = execution["properties"]["outcome"]["pattern"]
        .as_str()
        .unwrap();
    for value in [
        "success",
        "failure",
        "rollback",
        "partial_success",
        "timeout",
    ] {
        let spelled: String = value
            .chars()
            .map(|c| match c {
                'a'..='z' => format!("[{c}{}]", c.to_ascii_uppercase()),
                other => other.to_string(),
            })
            .collect();
        assert!(outcome.contains(&spelled), "{value}: {outcome}");
    }
    assert_eq!(execution["additionalProperties"], false);
    assert!(execution["required"]
        .as_array()
        .unwrap()
        .contains(&json!("workflow_execution_id")));
    let decision = body("ai-decisions");
    assert!(decision["properties"]["completion_status"]["description"]
        .as_str()
        .unwrap()
        .contains("pending_human_review"));
    assert_eq!(decision["properties"]["embedding"]["minItems"], 1536);
}
