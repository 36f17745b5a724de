//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! A copy lives in `api/openapi.json`; a test fails when it is stale (regenerate it with
//! `datastorage openapi > api/openapi.json`).

use utoipa::OpenApi;

use super::routes::{admin, events, health};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Data Storage",
        description = "The audit trail of the remediation platform: an append-only, tamper-evident log of every controller decision and status change.",
        license(name = "Apache-2.0")
    ),
    paths(
        events::create_event,
        events::create_batch,
        events::get_event,
        events::list_events,
        admin::stats,
        admin::dead_letters,
        admin::replay,
        admin::retry_dead_letter,
        health::live,
        health::ready,
        health::metrics,
        health::openapi,
    ),
    components(schemas(
        audit_model::AuditEvent,
        audit_model::StoredEvent,
        audit_model::EventOutcome,
        audit_model::BatchResponse,
        audit_model::BatchItemResult,
        audit_model::BatchSummary,
        audit_model::ItemStatus,
        audit_model::Problem,
        events::EventPage,
        events::QueuedAnswer,
        admin::DeadLetterPage,
        admin::DeadLetterItem,
        admin::RetryAnswer,
        crate::dlq::DlqStats,
        crate::dlq::DeadLetter,
        crate::replay::ReplayReport,
        health::HealthStatus,
        health::ComponentStatus,
    )),
    tags(
        (name = "events", description = "The unified audit event log"),
        (name = "admin", description = "Operating the dead-letter queue"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
