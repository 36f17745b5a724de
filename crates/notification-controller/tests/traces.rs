//! One notification delivered end to end is one trace: the `notification-controller` binary's
//! reconciles, its audit client's requests, and Data Storage's request, queue and commit spans,
//! exported over OTLP/HTTP by two processes to one receiver; and the audit events written on the
//! way carry that trace's id.

#[allow(dead_code)]
#[path = "../../datastorage/tests/api/helpers.rs"]
mod helpers;
mod support;

use std::collections::HashSet;

use datastorage::config::LogFormat;
use helpers::{spawn_app, Backend, TestDb};
use kube::ResourceExt;
use notification_controller::crd::Phase;
use serde_json::json;
use support::binary;
use support::fake_api::FakeApiServer;
use support::otlp::{OtlpReceiver, ReceivedSpan};
use support::receivers::ReceiverServer;

fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_notification_is_one_trace_across_controller_client_and_data_storage() {
    let otlp = OtlpReceiver::start().await;
    // Data Storage runs in this process, exporting its spans as the service does.
    let log = datastorage::telemetry::init_with_traces(
        LogFormat::Text,
        &audit_tracing::TraceSettings {
            endpoint: Some(otlp.endpoint.clone()),
            sample_ratio: 1.0,
            service_name: "datastorage".into(),
        },
    );
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let api = FakeApiServer::start().await;
    let http = ReceiverServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary::command(&api, &app.base, dir.path(), binary::free_port())
        .env("WEBHOOK_DEFAULT_URL", format!("{}/hook", http.url))
        .env("WEBHOOK_HMAC_SECRET", "k")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint)
        .spawn()
        .unwrap();
    let nr = binary::deliver(&api, json!(["webhook", "console"])).await;
    assert_eq!(nr.status.as_ref().unwrap().phase, Some(Phase::Sent));
    // The trace of a notification is keyed by its uid.
    let trace_id = uuid::Uuid::parse_str(&nr.uid().unwrap())
        .unwrap()
        .simple()
        .to_string();

    // SIGTERM: the controller flushes its audit client, then its spans.
    let exit = binary::stop(&mut child).await;
    assert!(exit.success(), "{exit:?}");
    let TestDb::Postgres { pool, .. } = app.db.as_ref() else {
        unreachable!()
    };
    let stored: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT event_type, trace_id, span_id FROM audit_events \
         WHERE correlation_id = 'rr-2041' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    // 3 phase changes, 2 attempts, 2 delivery records: each in the notification's trace.
    assert_eq!(stored.len(), 7, "{stored:?}");
    for (event_type, trace, span) in &stored {
        assert_eq!(trace.as_deref(), Some(trace_id.as_str()), "{event_type}");
        assert_eq!(span.as_ref().map(String::len), Some(16), "{event_type}");
    }

    log.flush_traces();
    let in_trace = |spans: &[ReceivedSpan], service: &str, name: &str| {
        spans
            .iter()
            .any(|s| s.trace_id == trace_id && s.service == service && s.name == name)
    };
    let spans = otlp
        .wait_until(|spans| {
            in_trace(spans, "notification-controller", "reconcile")
                && in_trace(spans, "notification-controller", "audit_client.send")
                && in_trace(spans, "datastorage", "ingest.commit")
        })
        .await;
    let spans: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();

    // The controller: reconciles (one, or more when a delivery is retried later), each a child
    // of the notification's keyed root; the client's requests, each a child of the reconcile
    // that recorded its first event.
    let reconciles = named(&spans, "notification-controller", "reconcile");
    assert!(!reconciles.is_empty());
    let roots: HashSet<&str> = reconciles
        .iter()
        .map(|s| s.parent_span_id.as_str())
        .collect();
    assert_eq!(roots.len(), 1, "one keyed root: {roots:?}");
    assert_eq!(
        reconciles[0].attribute("notification"),
        Some("disk-full"),
        "{reconciles:#?}"
    );
    let reconcile_ids: HashSet<&str> = reconciles.iter().map(|s| s.span_id.as_str()).collect();
    let sends = named(&spans, "notification-controller", "audit_client.send");
    assert!(!sends.is_empty());
    for send in &sends {
        assert!(
            reconcile_ids.contains(send.parent_span_id.as_str()),
            "{send:#?}"
        );
    }
    // Every event the client filled carries the span of a reconcile.
    for (event_type, _, span) in &stored {
        if !event_type.starts_with("notification.delivery.") {
            let span = span.as_deref().unwrap();
            assert!(reconcile_ids.contains(span), "{event_type}: {span}");
        }
    }

    // Data Storage: each request continues a client request; queue and commit under each.
    let send_ids: HashSet<&str> = sends.iter().map(|s| s.span_id.as_str()).collect();
    let requests: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == "datastorage" && s.name.starts_with("POST /api/v1/audit/"))
        .collect();
    let names: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    assert!(!requests.is_empty(), "{names:?}");
    for request in &requests {
        assert!(
            send_ids.contains(request.parent_span_id.as_str()),
            "{request:#?}"
        );
        assert!(
            request
                .attribute("http.route")
                .is_some_and(|r| r.starts_with("/api/v1/audit/")),
            "{request:#?}"
        );
        assert!(
            matches!(
                request.attribute("http.response.status_code"),
                Some("200" | "201")
            ),
            "{request:#?}"
        );
    }
    let request_ids: HashSet<&str> = requests.iter().map(|s| s.span_id.as_str()).collect();
    for stage in ["ingest.queue", "ingest.commit"] {
        let under = named(&spans, "datastorage", stage);
        assert_eq!(under.len(), requests.len(), "{stage}: {under:#?}");
        for span in under {
            assert!(
                request_ids.contains(span.parent_span_id.as_str()),
                "{span:#?}"
            );
        }
    }
}
