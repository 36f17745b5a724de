//! Metric names (the platform's), bounded label values, and the Prometheus recorder.
//!
//! Label values come from fixed sets: an event category outside the platform's known services
//! is reported as `other`, and validation failures are labelled by a fixed reason, with unknown
//! field names folded into `unknown`, so a client cannot grow the number of series.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const AUDIT_TRACES: &str = "datastorage_audit_traces_total";
pub const WRITE_DURATION: &str = "datastorage_write_duration_seconds";
pub const AUDIT_LAG: &str = "datastorage_audit_lag_seconds";
pub const VALIDATION_FAILURES: &str = "datastorage_validation_failures_total";
pub const INGEST_BATCH_SIZE: &str = "datastorage_ingest_batch_size";
pub const INGEST_QUEUE_DEPTH: &str = "datastorage_ingest_queue_depth";
pub const BODY_BUDGET_WAITS: &str = "datastorage_body_budget_waits_total";
pub const BODY_BUDGET_HELD: &str = "datastorage_body_budget_held_bytes";
pub const CONNECTIONS_REFUSED: &str = "datastorage_http_connections_refused_total";
/// Requests answered 429 (a principal's or an address's rate limit).
pub const RATE_LIMITED: &str = "datastorage_rate_limited_total";
pub const DLQ_DEPTH: &str = "datastorage_dlq_depth";
pub const DLQ_OLDEST_AGE: &str = "datastorage_dlq_oldest_age_seconds";
pub const DLQ_ENQUEUED: &str = "datastorage_dlq_enqueued_total";
pub const DLQ_REPLAYED: &str = "datastorage_dlq_replayed_total";
pub const DLQ_DEAD_LETTERS: &str = "datastorage_dlq_dead_letters_total";
pub const TREE_SIZE: &str = "datastorage_tree_size";
pub const CHECKPOINT_FAILURES: &str = "datastorage_checkpoint_failures_total";
pub const WITNESS_FAILURES: &str = "datastorage_witness_failures_total";
/// Cosignatures stored, per `witness`.
pub const WITNESS_COSIGNATURES: &str = "datastorage_witness_cosignatures_total";
/// The size of the newest checkpoint each `witness` cosigned.
pub const WITNESS_COSIGNED_SIZE: &str = "datastorage_witness_cosigned_tree_size";
/// Submissions to a `witness` that failed for a passing reason (it was unreachable, 5xx).
pub const WITNESS_SUBMISSION_FAILURES: &str = "datastorage_witness_submission_failures_total";
/// A `witness` refused for a `reason` catching up does not cure (`inconsistent`, `fork`,
/// `ahead`): the log forked or was rolled back. Alert on any.
pub const WITNESS_REFUSALS: &str = "datastorage_witness_refusals_total";
/// Findings of `datastorage monitor`, by `kind` (`signature`, `quorum`, `rollback`, `fork`,
/// `inconsistent`, `entry`).
pub const MONITOR_FINDINGS: &str = "datastorage_monitor_findings_total";
/// Leaves between the newest signed checkpoint and the newest one the witness quorum cosigned.
pub const WITNESSED_LAG: &str = "datastorage_witnessed_checkpoint_lag_leaves";
pub const RETENTION_PURGED: &str = "datastorage_retention_purged_total";
pub const RETENTION_FAILURES: &str = "datastorage_retention_failures_total";
/// When the listener's TLS certificate in force expires (seconds since the epoch).
/// Changed files (tokens, TLS) that could not be used, by `file`; the version before stays.
pub const RELOAD_FAILURES: &str = "datastorage_reload_failures_total";
/// TLS handshakes that failed or timed out.
pub const TLS_HANDSHAKE_FAILURES: &str = "datastorage_tls_handshake_failures_total";
pub const TLS_CERTIFICATE_EXPIRY: &str = "datastorage_tls_certificate_expiry_timestamp_seconds";

/// Event categories that get their own label value.
const KNOWN_SERVICES: [&str; 10] = [
    "notification",
    "signalprocessing",
    "orchestration",
    "analysis",
    "workflowexecution",
    "effectiveness",
    "gateway",
    "datastorage",
    "workflow",
    "remediationorchestrator",
];

/// The `service` label for an event category.
pub fn service_label(category: &str) -> &'static str {
    KNOWN_SERVICES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(category))
        .copied()
        .unwrap_or("other")
}

/// What a refusal may name besides the event's fields: the whole body, a batch's items.
const KNOWN_PLACES: [&str; 3] = ["$", "body", "items"];

/// A refused field's `field` label: an event field or a known place, else `unknown` (the label
/// stays bounded whatever a client sends).
fn field_label(field: &str) -> &'static str {
    audit_model::EventField::ALL
        .iter()
        .map(|f| f.name())
        .chain(KNOWN_PLACES)
        .find(|known| *known == field)
        .unwrap_or("unknown")
}

/// Counts every refused field of one request.
pub fn record_validation_failures(errors: &audit_model::FieldErrors) {
    for (field, error) in errors.iter() {
        metrics::counter!(VALIDATION_FAILURES, "field" => field_label(field), "reason" => error.reason.as_str())
            .increment(1);
    }
}

/// The process-wide Prometheus recorder (installed once; every app in the process shares it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let lag = [0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0];
            let sizes = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(WRITE_DURATION.into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(AUDIT_LAG.into()), &lag))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(INGEST_BATCH_SIZE.into()), &sizes)
                });
            // The bucket lists above are non-empty constants, so the builder cannot refuse them.
            let recorder = builder
                .expect("constant buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_categories_fold_into_other() {
        assert_eq!(service_label("Notification"), "notification");
        assert_eq!(service_label("made-up"), "other");
    }
}
