//! The six typed seed record endpoints: write, list, and read one subject's records.
//!
//! Each record is written as an event of the unified log (see `audit_model::records`), so these
//! handlers are thin: parse the record, submit its event, answer with the record as stored
//! (`event_data` plus `id`, `event_id`, `created_at`).

use std::collections::HashMap;

use audit_model::{Problem, ProblemKind, Receipt, RecordRules, SeedRecord, StoredEvent};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::http::answers::Answers;
use crate::http::authn::{out_of_scope, Caller};
use crate::http::extract::{CallerTrace, JsonBody};
use crate::http::params::{Limit, Params, PositionCursor, TimeParam};
use crate::http::problem::ApiError;
use crate::http::routes::events::outcome_response;
use crate::http::AppState;
use crate::ingest::IngestOutcome;
use crate::store::{PreparedEvent, RecordQuery, StoredRecord};

/// What a path segment must percent-encode (RFC 3986: everything but unreserved characters).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Most records `GET /api/v1/audit/<kind>/{id}` answers with.
const MAX_SUBJECT_RECORDS: u32 = 1000;

/// A page of typed records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    /// Records in `id` order: the seed's columns plus `id`, `event_id`, `created_at`.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
}

/// A record as answered: the record's fields plus `id` (the log seq), `event_id`, `created_at`
/// and `updated_at` (the same: a stored record never changes; the platform's answers carry it).
pub(crate) fn record_json(
    seq: i64,
    event_id: uuid::Uuid,
    record: &Map<String, Value>,
    created_at: chrono::DateTime<Utc>,
) -> Map<String, Value> {
    let mut out = record.clone();
    out.insert("id".into(), seq.into());
    out.insert("event_id".into(), event_id.to_string().into());
    let created_at = audit_model::timestamp::format(&created_at);
    out.insert("updated_at".into(), created_at.clone().into());
    out.insert("created_at".into(), created_at.into());
    out
}

fn stored_json(s: &StoredEvent) -> Map<String, Value> {
    record_json(
        s.seq,
        s.event.event_id(),
        s.event.event_data(),
        s.event.received_at().unwrap_or(s.committed_at),
    )
}

/// `POST /api/v1/audit/<kind>`.
pub(crate) async fn create<R: SeedRecord>(
    state: AppState,
    answers: Answers,
    caller: &Principal,
    trace: &CallerTrace,
    body: Value,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let rules = RecordRules {
        now,
        embedding_dimension: state.embedding_dimension,
    };
    let record = R::parse(body, &rules).map_err(|e| ApiError::validation(&e))?;
    let event = trace.apply(record.to_event(Receipt::new(now, caller.writer())));
    if !caller.may_write(event.event_type()) {
        return Err(out_of_scope(&state, caller, event.event_type()));
    }
    let mut outcomes = state.queue.submit(vec![PreparedEvent::new(event)]).await?;
    let outcome = outcomes
        .pop()
        .ok_or_else(|| ApiError::new(ProblemKind::Internal, "the writer gave no answer"))?;
    let already = if answers.native() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let response = match outcome {
        IngestOutcome::Created(s) => {
            // The id is any text: percent-encoded, it is one path segment and a valid header.
            let id = percent_encoding::utf8_percent_encode(record.subject_id(), PATH_SEGMENT);
            let location = format!("/api/v1/audit/{}/{id}", R::KIND.path);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(stored_json(&s)),
            )
                .into_response()
        }
        // The platform knows no other success than 201.
        IngestOutcome::Duplicate(s) => (already, Json(stored_json(&s))).into_response(),
        IngestOutcome::Conflict(s) if record.same_record(s.event.event_data()) => {
            (already, Json(stored_json(&s))).into_response()
        }
        IngestOutcome::Conflict(_) => {
            let (field, value) = record.natural_key().swap_remove(0);
            ApiError::from(
                Problem::new(
                    ProblemKind::Conflict,
                    format!(
                        "a {} record with this natural key ({}) is already stored with different content",
                        R::KIND.view,
                        record.natural_key().iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_extension("resource", R::KIND.view)
                .with_extension("field", field)
                .with_extension("value", value),
            )
            .into_response()
        }
        // (The typed records keep their own answers; only a queued or refused write is left.)
        other => outcome_response(other, R::KIND.view, answers),
    };
    Ok(answers.mark(response))
}

/// Query parameters of a record list: these, and the kind's filter fields (each by its name).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordListParams {
    /// RFC 3339 time or a duration back from now (30m, 24h, 7d), on the record's main time
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// RFC 3339 time or a duration back from now
    #[param(value_type = Option<String>)]
    until: Option<TimeParam>,
    /// 1..1000, default 100
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,18}$")]
    cursor: Option<PositionCursor>,
    /// The kind's filter fields; any other name is refused.
    #[serde(flatten)]
    #[param(ignore)]
    filters: HashMap<String, String>,
}

/// `GET /api/v1/audit/<kind>?…`.
pub(crate) async fn list<R: SeedRecord>(
    state: AppState,
    params: RecordListParams,
) -> Result<Json<RecordPage>, ApiError> {
    let kind = R::KIND;
    let now = Utc::now();
    let mut errors = audit_model::FieldErrors::default();
    let mut query = RecordQuery {
        view: kind.view,
        time_column: kind.time_field,
        since: params.since.map(|t| t.resolve(now)),
        until: params.until.map(|t| t.resolve(now)),
        limit: Limit::or_default(params.limit),
        after: params.cursor.map(|c| c.0),
        ..RecordQuery::default()
    };
    let mut filters: Vec<_> = params.filters.into_iter().collect();
    filters.sort();
    for (name, value) in filters {
        let known = kind.filters.iter().chain(std::iter::once(&kind.id_field));
        match known.into_iter().find(|f| **f == name) {
            Some(filter) => query.filters.push((filter, value)),
            None => errors.add(
                name,
                audit_model::Reason::UnknownField,
                "is not a known parameter",
            ),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(&errors));
    }
    let limit = query.limit as usize;
    query.limit += 1;
    let mut rows = state.store.records(&query).await.map_err(ApiError::from)?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| PositionCursor::encode(r.seq))
    } else {
        None
    };
    Ok(Json(RecordPage {
        data: rows.iter().map(row_json).collect(),
        next_cursor,
    }))
}

/// `GET /api/v1/audit/<kind>/{id}`: every record of one subject, in order.
pub(crate) async fn subject<R: SeedRecord>(
    state: AppState,
    id: String,
) -> Result<Json<Vec<Map<String, Value>>>, ApiError> {
    let kind = R::KIND;
    let query = RecordQuery {
        view: kind.view,
        filters: vec![(kind.id_field, id.clone())],
        time_column: kind.time_field,
        limit: MAX_SUBJECT_RECORDS,
        ..RecordQuery::default()
    };
    let rows = state.store.records(&query).await.map_err(ApiError::from)?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no {} record with {} {id}",
            kind.view, kind.id_field
        )));
    }
    Ok(Json(rows.iter().map(row_json).collect()))
}

pub(crate) fn row_json(r: &StoredRecord) -> Map<String, Value> {
    record_json(r.seq, r.event_id, &r.record, r.received_at)
}

/// Declares the three annotated routes of one kind.
macro_rules! record_routes {
    ($record:ty, $create:ident, $list:ident, $subject:ident, $path:literal, $id:literal, $tag:literal) => {
        #[doc = concat!("Write one record (`", $path, "`).")]
        #[utoipa::path(post, path = $path, tag = $tag,
            summary = concat!("Write one record (", $path, ")"),
            request_body(content = Object, description = "The record (its schema is made from the record's parser)"),
            params(("Prefer" = Option<String>, Header, description = "`answers=native` or `answers=platform`: which API's answers (default: the `api.write_answers` setting)")),
            responses(
                (status = 201, description = "Stored (on the platform's answers, also: the identical record was already stored); the record with `id`, `event_id`, `created_at`, `updated_at`", body = Object),
                (status = 200, description = "Native answers: the identical record was already stored", body = Object),
                (status = 202, description = "The database is unavailable; held in the dead-letter queue", body = crate::http::routes::events::QueuedAnswer),
                (status = 400, description = "Invalid fields, all listed in `field_errors`", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "A record with the same natural key (the record's id field and its status fields; for notifications `notification_id`, `channel`, `recipient`, `status`, `escalation_level`) is stored with different content: nothing is stored, `resource`, `field`, `value` name the key. Two writers reusing one id for different subjects meet this, so a writer's id must name its subject uniquely across the platform (the Notification controller writes the object's uid)", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "Neither the database nor the dead-letter queue can take it", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $create(State(state): State<AppState>, answers: Answers, Caller(caller): Caller, trace: CallerTrace, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
            create::<$record>(state, answers, &caller, &trace, body).await
        }

        #[doc = concat!("List records (`", $path, "`), filtered, in `id` order.")]
        #[utoipa::path(get, path = $path, tag = $tag,
            summary = concat!("List records (", $path, "), filtered, in id order"),
            params(RecordListParams),
            responses(
                (status = 200, description = "A page of records; filter by the kind's fields as query parameters", body = RecordPage),
                (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $list(State(state): State<AppState>, Params(params): Params<RecordListParams>) -> Result<Json<RecordPage>, ApiError> {
            list::<$record>(state, params).await
        }

        #[doc = "Every record of one subject, in order."]
        #[utoipa::path(get, path = $id, tag = $tag,
            params(("id" = String, Path, description = "The subject's id")),
            responses(
                (status = 200, description = "The subject's records in `id` order", body = Vec<Object>),
                (status = 404, description = "No record for this id", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $subject(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<Map<String, Value>>>, ApiError> {
            subject::<$record>(state, id).await
        }
    };
}

record_routes!(
    audit_model::NotificationAudit,
    create_notification,
    list_notifications,
    get_notification,
    "/api/v1/audit/notifications",
    "/api/v1/audit/notifications/{id}",
    "records"
);
record_routes!(
    audit_model::SignalProcessingAudit,
    create_signal_processing,
    list_signal_processing,
    get_signal_processing,
    "/api/v1/audit/signal-processing",
    "/api/v1/audit/signal-processing/{id}",
    "records"
);
record_routes!(
    audit_model::OrchestrationAudit,
    create_orchestration,
    list_orchestration,
    get_orchestration,
    "/api/v1/audit/orchestration",
    "/api/v1/audit/orchestration/{id}",
    "records"
);
record_routes!(
    audit_model::AiAnalysisAudit,
    create_ai_decision,
    list_ai_decisions,
    get_ai_decision,
    "/api/v1/audit/ai-decisions",
    "/api/v1/audit/ai-decisions/{id}",
    "records"
);
record_routes!(
    audit_model::WorkflowExecutionAudit,
    create_execution,
    list_executions,
    get_execution,
    "/api/v1/audit/executions",
    "/api/v1/audit/executions/{id}",
    "records"
);
record_routes!(
    audit_model::EffectivenessAudit,
    create_effectiveness,
    list_effectiveness,
    get_effectiveness,
    "/api/v1/audit/effectiveness",
    "/api/v1/audit/effectiveness/{id}",
    "records"
);
