//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! A copy lives in `api/openapi.json`; a test fails when it is stale (regenerate it with
//! `datastorage openapi > api/openapi.json`).

use utoipa::OpenApi;

use super::routes::{
    admin, checkpoints, derived, events, export, health, legal_hold, records, similar, stream,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Data Storage",
        description = "The audit trail of the remediation platform: an append-only, tamper-evident log of every controller decision and status change.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/", description = "This Data Storage service (the document is served by it)")),
    paths(
        events::create_event,
        events::create_batch,
        events::get_event,
        events::list_events,
        records::create_notification,
        records::list_notifications,
        records::get_notification,
        records::create_signal_processing,
        records::list_signal_processing,
        records::get_signal_processing,
        records::create_orchestration,
        records::list_orchestration,
        records::get_orchestration,
        records::create_ai_decision,
        records::list_ai_decisions,
        records::get_ai_decision,
        similar::similar,
        records::create_execution,
        records::list_executions,
        records::get_execution,
        records::create_effectiveness,
        records::list_effectiveness,
        records::get_effectiveness,
        checkpoints::public_key,
        checkpoints::latest,
        checkpoints::list,
        checkpoints::event_proof,
        checkpoints::consistency,
        checkpoints::verify_chain,
        derived::score,
        derived::reconstruct,
        derived::history_context,
        derived::remediation_timeline,
        stream::stream,
        export::export,
        legal_hold::place,
        legal_hold::release,
        legal_hold::list,
        admin::stats,
        admin::dead_letters,
        admin::replay,
        admin::retry_dead_letter,
        health::live,
        health::ready,
        health::healthz,
        health::readyz,
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
        crate::http::params::SortOrder,
        records::RecordPage,
        similar::SimilarDecision,
        similar::SimilarDecisions,
        events::QueuedAnswer,
        events::StoredAnswer,
        events::EventView,
        events::BatchIds,
        admin::DeadLetterPage,
        admin::DeadLetterItem,
        admin::RetryAnswer,
        crate::dlq::DlqStats,
        crate::dlq::DeadLetter,
        crate::replay::ReplayReport,
        health::HealthStatus,
        health::ComponentStatus,
        health::PlatformLiveness,
        health::PlatformReadiness,
        checkpoints::PublicKey,
        checkpoints::CheckpointView,
        checkpoints::CheckpointPage,
        checkpoints::EventProof,
        checkpoints::ConsistencyProof,
        checkpoints::VerifyChainResponse,
        checkpoints::TamperedEvent,
        checkpoints::ChainFailure,
        crate::store::LegalHold,
        legal_hold::HoldList,
        legal_hold::HoldAnswer,
        legal_hold::ReleaseAnswer,
    )),
    tags(
        (name = "events", description = "The unified audit event log"),
        (name = "tamper-evidence", description = "Signed checkpoints and Merkle proofs (RFC 9162)"),
        (name = "records", description = "The six typed seed audit records, stored as events of the log"),
        (name = "retention", description = "Legal holds; retention purges content of expired events no hold keeps"),
        (name = "admin", description = "Operating the dead-letter queue"),
        (name = "platform", description = "What the platform's Data Storage API derives from the audit log"),
        (name = "timeline", description = "A remediation's events across the six services, as lifecycles with completeness findings"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON: the generated one, with the allowed values of the records' enumerated
/// string fields added (they are checked by the records' parsers, from the same constants), and
/// the answers every route can give whatever its handler does (see [`add_common_answers`]).
pub fn value() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_body_schemas(&mut doc);
    add_common_answers(&mut doc);
    add_security(&mut doc);
    doc
}

/// The bearer scheme, and per operation what its entry in the access table
/// ([`crate::auth::policy`]) asks: none for the open routes; elsewhere a token, with the
/// refusals of the authentication layer (401, 403, and 503 when a token cannot be checked now).
/// The document describes the defaults: `/metrics` and the checkpoint routes need a reader's
/// token unless `auth.public_metrics` or `auth.public_checkpoints` open them.
fn add_security(doc: &mut serde_json::Value) {
    use crate::auth::policy::{access, Access};
    use serde_json::json;
    doc["components"]["securitySchemes"] = json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token of the service's tokens file (`datastorage token create`). Where authentication is disabled (a loopback listener without authenticators, or `--auth disabled`) no token is needed. See docs/security.md."
        }
    });
    doc["security"] = json!([{"bearerAuth": []}]);
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        })
    };
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let Ok(method) = axum::http::Method::from_bytes(method.to_uppercase().as_bytes())
            else {
                continue;
            };
            match access(&method, path) {
                Some(Access::Open) => operation["security"] = json!([]),
                // A route the table does not list is refused to everyone.
                None => {}
                Some(needs) => {
                    let role = match needs {
                        Access::Role(role) => role,
                        _ => crate::auth::Role::Reader,
                    };
                    let Some(responses) = operation["responses"].as_object_mut() else {
                        continue;
                    };
                    let mut unauthorized = problem(
                        "No bearer token, a malformed one, or one that is unknown or expired",
                    );
                    unauthorized["headers"] = json!({"WWW-Authenticate": {
                        "description": "`Bearer realm=\"datastorage\"`, with `error=\"invalid_token\"` or `error=\"invalid_request\"` when a credential was given",
                        "schema": {"type": "string"}
                    }});
                    responses.entry("401").or_insert(unauthorized);
                    responses.entry("403").or_insert_with(|| {
                        problem(&format!("The caller lacks the {role} role (`required_role` names it), or writes an event type outside its own"))
                    });
                    let mut throttled = problem(
                        "The caller's rate limit (per principal, or per address) is exceeded",
                    );
                    throttled["headers"] = json!({"Retry-After": {
                        "description": "Seconds to wait before sending again",
                        "schema": {"type": "integer", "minimum": 1}
                    }});
                    responses.entry("429").or_insert(throttled);
                    responses.entry("503").or_insert_with(|| {
                        problem("A dependency is unavailable (the database, or what checks the token); retry after Retry-After")
                    });
                }
            }
        }
    }
}

/// Each request body's schema, made from the parser that reads it (see `audit_model::schema`),
/// so the document states exactly what the handler takes.
fn add_body_schemas(doc: &mut serde_json::Value) {
    use audit_model::records::{RecordRules, SeedRecord};
    use audit_model::{describe, schema};
    use serde_json::{json, Value};

    /// The default of `embedding_dimension` (the document is the same for every deployment).
    const DIMENSION: usize = 1536;
    fn record<R: SeedRecord>() -> Value {
        let rules = RecordRules {
            now: chrono::Utc::now(),
            embedding_dimension: DIMENSION,
        };
        let fields = describe(|| {
            let _ = R::parse(json!({}), &rules);
        });
        schema::object(&fields, &format!("A {} record", R::KIND.view))
    }
    /// The schema of a body read by `parse` (run on an empty object).
    fn described(description: &str, parse: impl FnOnce()) -> Value {
        schema::object(&describe(parse), description)
    }
    doc["components"]["schemas"]["EventRequest"] = schema::event_request();
    let event = json!({"$ref": "#/components/schemas/EventRequest"});
    let bodies: Vec<(&str, &str, Value)> = vec![
        ("/api/v1/audit/events", "post", event.clone()),
        (
            "/api/v1/audit/events/batch",
            "post",
            json!({
                "type": "array", "minItems": 1, "maxItems": 1000,
                "description": "Audit events (at most batch_max_items, default 1000). On the platform's answers (the default) one invalid item refuses the whole batch; on the native answers (Prefer: answers=native) each item is validated and answered on its own.",
                "items": event,
            }),
        ),
        (
            "/api/v1/audit/notifications",
            "post",
            record::<audit_model::NotificationAudit>(),
        ),
        (
            "/api/v1/audit/signal-processing",
            "post",
            record::<audit_model::SignalProcessingAudit>(),
        ),
        (
            "/api/v1/audit/orchestration",
            "post",
            record::<audit_model::OrchestrationAudit>(),
        ),
        (
            "/api/v1/audit/ai-decisions",
            "post",
            record::<audit_model::AiAnalysisAudit>(),
        ),
        (
            "/api/v1/audit/executions",
            "post",
            record::<audit_model::WorkflowExecutionAudit>(),
        ),
        (
            "/api/v1/audit/effectiveness",
            "post",
            record::<audit_model::EffectivenessAudit>(),
        ),
        (
            "/api/v1/audit/ai-decisions/similar",
            "post",
            described(
                "An embedding (a zero vector finds nothing) and how many neighbours",
                || {
                    let _ = similar::read_request(json!({}), DIMENSION);
                },
            ),
        ),
        (
            "/api/v1/audit/legal-hold",
            "post",
            described("A legal hold on one correlation", || {
                let _ = legal_hold::read_body(json!({}), true, "reason");
            }),
        ),
        (
            "/api/v1/audit/legal-hold/{correlation_id}",
            "delete",
            described("Why the hold ends", || {
                let _ = legal_hold::read_body(json!({}), false, "release_reason");
            }),
        ),
        (
            "/api/v1/audit/verify-chain",
            "post",
            described("The correlation whose events to verify", || {
                let _ = checkpoints::read_verify_chain(json!({}));
            }),
        ),
    ];
    doc["components"]["schemas"]["JsonValue"] = schema::json_value();
    for (path, method, schema) in bodies {
        let body = &mut doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        if body.is_object() {
            body["schema"] = schema;
        }
    }
}

/// What is shared by every route: the form of the time parameters, and the refusals the
/// middleware gives on every route, and on every route that takes a body, before any handler
/// runs: a malformed parameter (400, [`super::text_params`]); a body that is
/// not JSON (415), too large (413), too slow (408), or beyond the body budget (503).
fn add_common_answers(doc: &mut serde_json::Value) {
    use serde_json::json;
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        })
    };
    // `since` and `until` are read by one function (`params::time_range`) on every route.
    let time = json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^(0|[0-9]{1,9}(ms|s|m|h|d|w))$"}
    ]});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            // (`get_mut`: indexing would add a null `parameters` where there is none.)
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(|p| p.as_array_mut())
            {
                for p in parameters {
                    if matches!(p["name"].as_str(), Some("since" | "until")) && p["in"] == "query" {
                        p["schema"] = time.clone();
                    } else if p["schema"]["type"] == "string"
                        && p["schema"].get("pattern").is_none()
                    {
                        // No text parameter may hold NUL (`text_params`).
                        p["schema"]["pattern"] = json!(audit_model::schema::NO_NUL);
                    }
                }
            }
            let takes_body = operation.get("requestBody").is_some();
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| problem(description));
            };
            add(
                "400",
                "A malformed parameter (not UTF-8, holding NUL, or given twice)",
            );
            if takes_body {
                add("408", "The body did not arrive in time");
                add("413", "The body is larger than the limit");
                add("415", "The body is not uncompressed application/json");
                add("503", "The service holds as many request bodies as it may, or a dependency is unavailable");
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document() -> String {
    let mut text = serde_json::to_string_pretty(&value()).unwrap_or_default();
    text.push('\n');
    text
}
