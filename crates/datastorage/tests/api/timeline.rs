//! `GET /api/v1/audit/remediations/{correlation_id}/timeline` on both stores: a remediation
//! written as the platform's controllers write it (events of five services and a typed
//! workflow-execution record) drawn as complete lifecycles, and an unfinished one with its
//! findings.

use serde_json::{json, Value};

use crate::helpers::{platform_event, TestApp};
use crate::on_both_stores;

async fn write(app: &TestApp, events: Vec<Value>) {
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!(events)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["created"], events.len(), "{body}");
}

async fn remediation_timeline(app: TestApp) {
    let c = "rr-timeline-1";
    let e = |t, ty: &str| platform_event(c, t, ty, "success", json!({}));
    let transition = |t, from: &str, to: &str| {
        platform_event(
            c,
            t,
            "orchestrator.lifecycle.transitioned",
            "success",
            json!({"from_phase": from, "to_phase": to}),
        )
    };
    write(
        &app,
        vec![
            e(0, "gateway.signal.received"),
            e(1, "orchestrator.lifecycle.created"),
            transition(1, "", "Processing"),
            e(3, "signalprocessing.signal.processed"),
            transition(4, "Processing", "Analyzing"),
            e(5, "aianalysis.aiagent.submit"),
            e(20, "aianalysis.aiagent.result"),
            e(21, "aianalysis.analysis.completed"),
            transition(22, "Analyzing", "Executing"),
            e(23, "workflowexecution.selection.completed"),
            e(24, "workflowexecution.execution.started"),
            e(60, "workflowexecution.workflow.completed"),
            e(90, "effectiveness.assessment.completed"),
            transition(91, "Executing", "Completed"),
            e(91, "orchestrator.lifecycle.completed"),
        ],
    )
    .await;
    let (status, body) = app
        .post(
            "/api/v1/audit/executions",
            &json!({
                "remediation_id": c, "workflow_execution_id": "we-1", "workflow_name": "restart",
                "workflow_version": "v1", "total_steps": 3, "steps_completed": 3, "steps_failed": 0,
                "outcome": "success", "status": "completed", "completed_at": "2026-12-03T10:01:00Z"
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, t) = app
        .get(&format!("/api/v1/audit/remediations/{c}/timeline"))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["correlation_id"], c);
    assert_eq!(t["truncated"], false);
    let summary = &t["summary"];
    assert_eq!(summary["event_count"], 16);
    assert_eq!(summary["first_event_at"], "2026-12-03T10:00:00.000000Z");
    assert_eq!(summary["last_event_at"], "2026-12-03T10:01:31.000000Z");
    assert_eq!(summary["duration_ms"], 91_000);
    assert_eq!(summary["completeness"], 100, "{t:#}");
    assert_eq!(summary["findings"], 0);
    assert_eq!(
        summary["outcomes"],
        json!({"orchestration": "success", "signal": "success", "aianalysis": "success",
               "workflowexecution": "success", "effectiveness": "success"})
    );
    let lifecycles = t["lifecycles"].as_array().unwrap();
    let by: std::collections::HashMap<&str, &Value> = lifecycles
        .iter()
        .map(|l| (l["service"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by.len(), 5);
    let orchestration = by["orchestration"];
    let phases: Vec<(&str, Option<i64>)> = orchestration["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["duration_ms"].as_i64()))
        .collect();
    assert_eq!(
        phases,
        [
            ("Processing", Some(3_000)),
            ("Analyzing", Some(18_000)),
            ("Executing", Some(69_000)),
            ("Completed", None)
        ]
    );
    assert_eq!(orchestration["ended_at"], "2026-12-03T10:01:31.000000Z");
    // The typed record joins the workflow's lifecycle.
    assert_eq!(by["workflowexecution"]["event_count"], 4);
    assert_eq!(by["workflowexecution"]["duration_ms"], 37_000);
    assert_eq!(t["events"].as_array().unwrap().len(), 16);
    let seqs: Vec<i64> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.iter().all(|s| *s > 0));

    // An unfinished remediation: the analysis never answered, a workflow was still selected
    // and started, and nothing completed.
    let u = "rr-timeline-2";
    let e = |t, ty: &str| platform_event(u, t, ty, "success", json!({}));
    write(
        &app,
        vec![
            e(0, "gateway.signal.received"),
            e(1, "aianalysis.aiagent.submit"),
            e(2, "workflowexecution.selection.completed"),
            e(3, "workflowexecution.execution.started"),
            platform_event(
                u,
                4,
                "signalprocessing.signal.processed",
                "failure",
                json!({}),
            ),
        ],
    )
    .await;
    let (status, t) = app
        .get(&format!("/api/v1/audit/remediations/{u}/timeline"))
        .await;
    assert_eq!(status, 200, "{t}");
    let rules: Vec<(&str, &str)> = t["lifecycles"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| (l["service"].as_str().unwrap(), f["rule"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("aianalysis", "not_terminal"),
            ("aianalysis", "call_without_result"),
            ("workflowexecution", "not_terminal"),
            ("workflowexecution", "started_without_completion"),
            ("workflowexecution", "decision_without_analysis"),
        ]
    );
    assert_eq!(t["summary"]["outcomes"]["signal"], "failure");
    assert_eq!(t["summary"]["outcomes"]["aianalysis"], "in_progress");
    assert_eq!(t["summary"]["completeness"], 33);

    // A correlation without events: 404, as a problem.
    let (status, problem) = app
        .get("/api/v1/audit/remediations/rr-nothing/timeline")
        .await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("rr-nothing"));
}

on_both_stores!(remediation_timeline);
