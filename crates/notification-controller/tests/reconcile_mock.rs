//! The reconciler against a mocked API server (`tower-test`): each test states the exact
//! requests the reconciler must make, in order, and what the server answers.

use notification_controller::decide::Target;
use notification_controller::losses::Auditing;
use notification_controller::reconcile::report_refusals;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use notification_controller::breaker::CircuitBreakers;
use notification_controller::channels::{ChannelSettings, Channels};
use notification_controller::controller::context;
use notification_controller::crd::NotificationRequest;
use notification_controller::reconcile::{reconcile, Context};
use serde_json::{json, Value};
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const STATUS_PATH: &str =
    "/apis/notification.kubernaut.ai/v1alpha1/namespaces/ops/notificationrequests/n1/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ops/events";

fn object(resource_version: &str, status: Value) -> Value {
    json!({
        "apiVersion": "notification.kubernaut.ai/v1alpha1",
        "kind": "NotificationRequest",
        "metadata": {
            "name": "n1", "namespace": "ops", "uid": "7f1c0e52-0000-4000-8000-000000000001",
            "resourceVersion": resource_version, "generation": 1
        },
        "spec": {
            "type": "escalation", "priority": "high",
            "recipients": [{"email": "oncall@example.com"}],
            "subject": "Disk full on node-1", "body": "90% used",
            "channels": ["console"],
            "metadata": {"remediationRequestName": "rr-42"}
        },
        "status": status,
    })
}

fn notification(resource_version: &str, status: Value) -> Arc<NotificationRequest> {
    Arc::new(serde_json::from_value(object(resource_version, status)).unwrap())
}

fn ctx(audit: Option<Auditing>) -> (Arc<Context>, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let channels = Channels::from_settings(&ChannelSettings {
        timeout: Duration::from_secs(5),
        ..ChannelSettings::default()
    })
    .unwrap();
    let ctx = context(
        client,
        channels,
        CircuitBreakers::new(5, Duration::from_secs(60)),
        audit,
        Arc::new(Utc::now),
    );
    (ctx, handle)
}

/// The next request: method, path, JSON body, and where to answer.
async fn next(handle: &mut ApiHandle) -> (Method, String, Value, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the reconciler made no further request")
        .expect("the client was dropped");
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, path, body, send)
}

fn answer(send: SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// Expects a status merge patch guarded by `resource_version`; answers with the patched object
/// at `next_version`. Returns the patched status.
async fn expect_status_patch(
    handle: &mut ApiHandle,
    resource_version: &str,
    next_version: &str,
) -> Value {
    let (method, path, body, send) = next(handle).await;
    assert_eq!((method, path.as_str()), (Method::PATCH, STATUS_PATH));
    assert_eq!(body["metadata"]["resourceVersion"], resource_version);
    let status = body["status"].clone();
    answer(send, StatusCode::OK, &object(next_version, status.clone()));
    status
}

async fn expect_event(handle: &mut ApiHandle, kind: &str, reason: &str) -> Value {
    let (method, path, body, send) = next(handle).await;
    assert_eq!((method, path.as_str()), (Method::POST, EVENTS_PATH));
    assert_eq!(
        (body["type"].as_str(), body["reason"].as_str()),
        (Some(kind), Some(reason))
    );
    assert_eq!(body["regarding"]["name"], "n1");
    answer(send, StatusCode::CREATED, &body);
    body
}

#[tokio::test]
async fn a_new_notification_goes_pending_sending_sent_with_one_write_each() {
    let (ctx, mut handle) = ctx(None);
    let verifier = tokio::spawn(async move {
        let pending = expect_status_patch(&mut handle, "1", "2").await;
        assert_eq!(pending["phase"], "Pending");
        assert!(pending["queuedAt"].is_string());
        let sending = expect_status_patch(&mut handle, "2", "3").await;
        assert_eq!(sending["phase"], "Sending");
        assert!(sending["processingStartedAt"].is_string());
        let sent = expect_status_patch(&mut handle, "3", "4").await;
        assert_eq!(sent["phase"], "Sent");
        assert!(sent["completionTime"].is_string());
        assert_eq!(sent["totalAttempts"], 1);
        assert_eq!(sent["successfulDeliveries"], 1);
        let attempt = &sent["deliveryAttempts"][0];
        assert_eq!(
            (
                &attempt["channel"],
                &attempt["recipient"],
                &attempt["attempt"],
                &attempt["status"]
            ),
            (
                &json!("console"),
                &json!("console"),
                &json!(1),
                &json!("success")
            )
        );
        expect_event(&mut handle, "Normal", "NotificationSent").await;
        handle
    });
    let action = reconcile(notification("1", Value::Null), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let mut handle = verifier.await.unwrap();
    drop(ctx);
    assert!(
        handle.next_request().await.is_none(),
        "no request after the last one"
    );
}

#[tokio::test]
async fn a_conflicting_status_write_is_re_read_and_re_applied() {
    let (ctx, mut handle) = ctx(None);
    let verifier = tokio::spawn(async move {
        // The write based on version 1 conflicts: someone changed the object meanwhile.
        let (method, path, body, send) = next(&mut handle).await;
        assert_eq!((method, path.as_str()), (Method::PATCH, STATUS_PATH));
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        answer(
            send,
            StatusCode::CONFLICT,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "the object has been modified", "reason": "Conflict", "code": 409}),
        );
        // The reconciler reads it again ...
        let (method, path, _, send) = next(&mut handle).await;
        assert_eq!((method, path.as_str()), (Method::GET, STATUS_PATH));
        answer(
            send,
            StatusCode::OK,
            &object("7", json!({"phase": "Pending"})),
        );
        // ... and re-applies its change on the new version.
        let sending = expect_status_patch(&mut handle, "7", "8").await;
        assert_eq!(sending["phase"], "Sending");
        let sent = expect_status_patch(&mut handle, "8", "9").await;
        assert_eq!(sent["phase"], "Sent");
        expect_event(&mut handle, "Normal", "NotificationSent").await;
    });
    let action = reconcile(notification("1", json!({"phase": "Pending"})), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_finished_notification_is_not_touched() {
    for phase in ["Sent", "PartiallySent", "Failed"] {
        let (ctx, mut handle) = ctx(None);
        let status = json!({"phase": phase, "completionTime": "2026-11-27T10:00:00Z",
                            "totalAttempts": 1});
        let action = reconcile(notification("5", status), ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::await_change(), "{phase}");
        drop(ctx);
        assert!(
            handle.next_request().await.is_none(),
            "{phase}: a finished notification caused an API request"
        );
    }
}

/// A notification in `Sending` (resourceVersion 3): before delivering the reconciler reads the
/// object past its cache, then writes `Sent`.
async fn expect_read_then_sent(handle: &mut ApiHandle) {
    let (method, path, _, send) = next(handle).await;
    assert_eq!((method, path.as_str()), (Method::GET, STATUS_PATH));
    answer(
        send,
        StatusCode::OK,
        &object("3", json!({"phase": "Sending"})),
    );
    let sent = expect_status_patch(handle, "3", "4").await;
    assert_eq!(sent["phase"], "Sent");
}

#[tokio::test]
async fn an_audit_record_that_cannot_be_queued_is_reported_as_a_warning_event() {
    // A closed audit client refuses every record.
    let audit = Auditing::build(audit_client::AuditClient::builder("http://127.0.0.1:9")).unwrap();
    audit.client.close(Duration::from_secs(1)).await;
    let (ctx, mut handle) = ctx(Some(audit));
    let verifier = tokio::spawn(async move {
        expect_read_then_sent(&mut handle).await;
        let warning = expect_event(&mut handle, "Warning", "AuditWriteFailed").await;
        // The attempt record, the outcome record and the phase transition were refused.
        assert_eq!(
            warning["note"],
            "3 audit record(s) could not be queued for Data Storage"
        );
        expect_event(&mut handle, "Normal", "NotificationSent").await;
    });
    // The reconcile itself succeeds: auditing never fails it.
    let action = reconcile(notification("3", json!({"phase": "Sending"})), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    verifier.await.unwrap();
}

/// A Data Storage that refuses everything for good, as it refuses an invalid record or an id
/// stored with other content.
async fn refusing_data_storage() -> String {
    let router = axum::Router::new().fallback(|| async {
        (
            StatusCode::CONFLICT,
            [("content-type", "application/problem+json")],
            r#"{"type":"https://kubernaut.ai/problems/conflict","title":"Conflict","status":409,"detail":"event_id is stored with other content"}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn a_record_data_storage_refuses_later_is_reported_as_a_warning_event() {
    let audit = Auditing::build(
        audit_client::AuditClient::builder(refusing_data_storage().await)
            .flush_interval(Duration::from_millis(20)),
    )
    .unwrap();
    let refusals = audit.losses.take_refusals().unwrap();
    let (ctx, mut handle) = ctx(Some(audit.clone()));
    let reporter = tokio::spawn(report_refusals(ctx.clone(), refusals));
    let verifier = tokio::spawn(async move {
        expect_read_then_sent(&mut handle).await;
        // NotificationSent, and the attempt record, the outcome record and the phase
        // transition, each refused by Data Storage after it was queued and reported on the
        // object (the refusals may come before or after NotificationSent).
        let mut reasons = Vec::new();
        for _ in 0..4 {
            let (method, path, body, send) = next(&mut handle).await;
            if method == Method::PATCH {
                // The recorder counts a repeat of an event it published into that event's
                // series; only AuditWriteFailed repeats here.
                assert!(path.starts_with(EVENTS_PATH), "{path}");
                reasons.push("AuditWriteFailed".to_string());
                answer(send, StatusCode::OK, &body);
                continue;
            }
            assert_eq!((method, path.as_str()), (Method::POST, EVENTS_PATH));
            assert_eq!(body["regarding"]["name"], "n1");
            if body["reason"] == "AuditWriteFailed" {
                assert_eq!(body["type"], "Warning");
                let note = body["note"].as_str().unwrap();
                assert!(
                    note.starts_with("Data Storage refused audit record")
                        && note.contains("stored with other content"),
                    "{note}"
                );
            }
            reasons.push(body["reason"].as_str().unwrap().to_string());
            answer(send, StatusCode::CREATED, &body);
        }
        reasons.sort();
        assert_eq!(
            reasons,
            [
                "AuditWriteFailed",
                "AuditWriteFailed",
                "AuditWriteFailed",
                "NotificationSent"
            ]
        );
    });
    let action = reconcile(notification("3", json!({"phase": "Sending"})), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    audit.client.flush().await;
    tokio::time::timeout(Duration::from_secs(10), verifier)
        .await
        .expect("three AuditWriteFailed events")
        .unwrap();
    assert_eq!(audit.client.report().rejected, 3);
    reporter.abort();
}

#[tokio::test]
async fn an_open_circuit_breaker_holds_deliveries_without_calls_or_spent_attempts() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let channels = Channels::from_settings(&ChannelSettings {
        // Nothing listens there: a delivery would fail and be recorded.
        slack_webhook_url: Some("http://127.0.0.1:9/slack".into()),
        timeout: Duration::from_secs(5),
        ..ChannelSettings::default()
    })
    .unwrap();
    let breakers = CircuitBreakers::new(1, Duration::from_secs(60));
    let now = Utc::now();
    breakers.record(
        &Target::named(notification_controller::crd::ChannelKind::Slack, "#ops"),
        false,
        now,
    );
    let ctx = context(
        Client::new(service, "default"),
        channels,
        breakers,
        None,
        Arc::new(move || now),
    );
    let mut spec_object = object("3", json!({"phase": "Retrying"}));
    spec_object["spec"]["channels"] = json!(["slack"]);
    spec_object["spec"]["recipients"] = json!([{"slack": "#ops"}]);
    let nr: NotificationRequest = serde_json::from_value(spec_object).unwrap();
    let action = reconcile(Arc::new(nr), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    drop(ctx);
    assert!(
        handle.next_request().await.is_none(),
        "no status write: no attempt was made or spent"
    );
}
