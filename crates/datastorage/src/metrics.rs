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
/// Background workers started again after a panic or an early return, by `worker`.
pub const WORKER_RESTARTS: &str = "datastorage_worker_restarts_total";
/// Log lines dropped because standard error could not take them (the service went on).
pub const LOG_LINES_DROPPED: &str = "datastorage_log_lines_dropped_total";
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

/// Requests answered, by route template, method and status.
pub const HTTP_REQUESTS: &str = "datastorage_http_requests_total";
/// Time from a request's arrival to its answer's head, by route template and method.
pub const HTTP_REQUEST_DURATION: &str = "datastorage_http_request_duration_seconds";
/// The highest `seq` this process committed.
pub const LOG_HEAD_SEQ: &str = "datastorage_log_head_seq";
/// When the newest checkpoint was signed (seconds since the epoch).
pub const CHECKPOINT_TIMESTAMP: &str = "datastorage_checkpoint_timestamp_seconds";
/// Most entries the DLQ holds.
pub const DLQ_CAPACITY: &str = "datastorage_dlq_capacity";
/// Retention runs, by `outcome` (`success`, `failure`).
pub const RETENTION_RUNS: &str = "datastorage_retention_runs_total";
/// When the last retention run succeeded (seconds since the epoch).
pub const RETENTION_LAST_SUCCESS: &str = "datastorage_retention_last_success_timestamp_seconds";
/// 1 when the retention worker runs, 0 when it is off (the platform's name).
pub const RETENTION_ENABLED: &str = "datastorage_retention_enabled";
/// Legal holds in force (read at scrape time).
pub const LEGAL_HOLDS_ACTIVE: &str = "datastorage_legal_holds_active";
/// Reads of the API by the `database` that answered (`replica`, `primary`) and `reason`.
pub const REPLICA_READS: &str = "datastorage_replica_reads_total";
/// How far the read replica replays behind the primary, as of its last probe.
pub const REPLICA_LAG: &str = "datastorage_replica_lag_seconds";
/// 1 while reads go to the replica, 0 while they go to the primary.
pub const REPLICA_USABLE: &str = "datastorage_replica_usable";
/// 1, labelled with the version that runs.
pub const BUILD_INFO: &str = "datastorage_build_info";

/// Every family's HELP text (`# HELP` in the exposition; each name carries its unit).
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    (AUDIT_TRACES, "Audit events handled by the ingest path, by service (event category) and status (success, error, dlq_fallback)."),
    (WRITE_DURATION, "Time to commit one batch of audit events to the store, in seconds."),
    (AUDIT_LAG, "Time from an event's timestamp to its commit, in seconds, by service."),
    (VALIDATION_FAILURES, "Refused fields of audit events, by field and reason."),
    (INGEST_BATCH_SIZE, "Events committed per batch."),
    (INGEST_QUEUE_DEPTH, "Submissions waiting for an ingest writer."),
    (BODY_BUDGET_WAITS, "Requests that waited for room in the request-body memory budget."),
    (BODY_BUDGET_HELD, "Bytes of request bodies held in memory, in bytes."),
    (CONNECTIONS_REFUSED, "Connections refused because the connection limit was reached."),
    (RATE_LIMITED, "Requests answered 429 by a principal's or an address's rate limit."),
    (DLQ_DEPTH, "Entries waiting in the dead-letter queue, by backend."),
    (DLQ_OLDEST_AGE, "Age of the oldest entry waiting in the dead-letter queue, in seconds."),
    (DLQ_ENQUEUED, "Events parked in the dead-letter queue, by reason."),
    (DLQ_REPLAYED, "Dead-letter queue entries replayed into the store (stored, or found already stored)."),
    (DLQ_DEAD_LETTERS, "Entries that became dead letters, by reason."),
    (TREE_SIZE, "Leaves in the Merkle tree of the newest signed checkpoint."),
    (CHECKPOINT_FAILURES, "Checkpoints that could not be signed or stored."),
    (WITNESS_FAILURES, "Checkpoints the file witness could not record."),
    (WITNESS_COSIGNATURES, "Cosignatures stored, by witness."),
    (WITNESS_COSIGNED_SIZE, "Tree size of the newest checkpoint each witness cosigned."),
    (WITNESS_SUBMISSION_FAILURES, "Submissions to a witness that failed for a passing reason (unreachable, 5xx), by witness."),
    (WITNESS_REFUSALS, "Refusals by a witness that catching up does not cure (inconsistent, fork, ahead), by witness and reason."),
    (MONITOR_FINDINGS, "Findings of the log monitor, by kind."),
    (WITNESSED_LAG, "Leaves between the newest signed checkpoint and the newest one the witness quorum cosigned."),
    (RETENTION_PURGED, "Events whose content retention purged."),
    (RETENTION_FAILURES, "Retention runs that failed."),
    (RELOAD_FAILURES, "Changed files (tokens, TLS) that could not be used, by file; the version before stays."),
    (TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed or timed out."),
    (WORKER_RESTARTS, "Background workers started again after a panic or an early return, by worker."),
    (LOG_LINES_DROPPED, "Log lines dropped because standard error could not take them."),
    (HTTP_REQUESTS, "HTTP requests answered, by route template, method and status."),
    (HTTP_REQUEST_DURATION, "Time from an HTTP request's arrival to its answer's head, in seconds, by route template and method."),
    (LOG_HEAD_SEQ, "The highest seq this process committed; the log's head is the highest any replica reports."),
    (CHECKPOINT_TIMESTAMP, "When the newest signed checkpoint was signed, in seconds since the epoch."),
    (DLQ_CAPACITY, "Most entries the dead-letter queue holds before it refuses new ones."),
    (RETENTION_RUNS, "Retention runs, by outcome (success, failure)."),
    (RETENTION_LAST_SUCCESS, "When the last retention run succeeded, in seconds since the epoch."),
    (RETENTION_ENABLED, "1 when the retention worker runs, 0 when it is off."),
    (LEGAL_HOLDS_ACTIVE, "Legal holds in force."),
    (REPLICA_READS, "Reads of the API with a read replica configured, by the database that answered (replica, primary) and reason (usable, not_usable, replica_failed, not_replicated)."),
    (REPLICA_LAG, "How far the read replica replays behind the primary, in seconds, as of its last probe."),
    (REPLICA_USABLE, "1 while the API's reads go to the read replica, 0 while they go to the primary."),
    (BUILD_INFO, "Always 1; its labels name the version that runs."),
    (TLS_CERTIFICATE_EXPIRY, "When the listener's TLS certificate in force expires, in seconds since the epoch."),
];

/// The process's own metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, …), read at each scrape.
pub fn collect_process() {
    process_collector().collect();
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Gives every family its HELP text.
fn describe() {
    process_collector().describe();
    for (name, help) in DESCRIPTIONS {
        // The exposition keeps one description per name, whatever its kind.
        metrics::with_recorder(|r| r.describe_counter((*name).into(), None, (*help).into()));
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
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), &latency)
                });
            // The bucket lists above are non-empty constants, so the builder cannot refuse them.
            let recorder = builder
                .expect("constant buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
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
