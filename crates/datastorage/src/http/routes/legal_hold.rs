//! Legal hold: while a correlation is held, retention purges none of its events.
//!
//! Placing and releasing a hold are audit events of the held correlation. The hold row is
//! written first, then its event through the ingest queue; a retry of the same request after a
//! failure answers the stored hold and writes the same event (same id, same content) again,
//! which the log stores once. So a request that failed half way is repaired by retrying it.

use audit_model::{ObjectReader, Problem, ProblemKind, MAX_SHORT};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::answers::Answers;
use crate::http::authn::Caller;
use crate::http::extract::JsonBody;
use crate::http::params::{Flag, Params};
use crate::http::problem::ApiError;
use crate::http::proxy_user::ProxyUser;
use crate::http::AppState;
use crate::retention::hold_event;
use crate::store::{EventFilter, EventQuery, HoldRequest, LegalHold, PlaceHold};

/// Longest reason.
const MAX_REASON: usize = 4096;

/// A hold as answered: the hold, and how many events of its correlation it covers (the
/// platform's `events_affected`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldAnswer {
    #[serde(flatten)]
    pub hold: LegalHold,
    /// The correlation's events now, the hold's own records among them (a hold also keeps
    /// those written after it).
    pub events_affected: i64,
}

/// A released hold as answered, with the platform's `events_released`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseAnswer {
    #[serde(flatten)]
    pub hold: LegalHold,
    /// The correlation's events, which retention may purge again once expired.
    pub events_released: i64,
}

/// The holds: `data` (this service's list shape) and `holds` with `total` (the platform's),
/// the same holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldList {
    pub data: Vec<HoldAnswer>,
    pub holds: Vec<HoldAnswer>,
    pub total: usize,
}

/// The number of a correlation's events.
async fn events_of(state: &AppState, correlation_id: &str) -> Result<i64, ApiError> {
    let query = EventQuery {
        filters: vec![(EventFilter::CorrelationId, correlation_id.to_string())],
        ..EventQuery::default()
    };
    state
        .store
        .count_matching(&query)
        .await
        .map_err(ApiError::from)
}

/// A hold request's body: the correlation (when it is not in the path), the reason and who asks.
pub(crate) struct HoldBody {
    correlation_id: Option<String>,
    reason: String,
    requested_by: Option<String>,
}

/// Reads the body; every bad or unknown field is reported at once.
pub(crate) fn read_body(
    body: serde_json::Value,
    with_correlation: bool,
    reason_field: &str,
) -> Result<HoldBody, ApiError> {
    let mut reader = ObjectReader::new(body).map_err(|e| ApiError::validation(&e))?;
    let correlation_id = if with_correlation {
        reader.string("correlation_id", MAX_SHORT)
    } else {
        None
    };
    let reason = reader.string(reason_field, MAX_REASON);
    let requested_by = reader.opt_string("requested_by", MAX_SHORT);
    let errors = reader.finish();
    match reason {
        Some(reason) if errors.is_empty() => Ok(HoldBody {
            correlation_id,
            reason,
            requested_by,
        }),
        _ => Err(ApiError::validation(&errors)),
    }
}

/// Writes a hold's audit event; the hold stands either way, the event is what a retry repairs.
async fn record(state: &AppState, hold: &LegalHold, released: bool) -> Result<(), ApiError> {
    let outcome = state.queue.submit(vec![hold_event(hold, released)]).await?;
    match outcome.first() {
        Some(o) if o.is_kept() => Ok(()),
        other => Err(ApiError::new(
            ProblemKind::Internal,
            format!("the hold's audit event was not stored ({other:?}); retry the request"),
        )),
    }
}

/// Places a legal hold on a correlation.
#[utoipa::path(post, path = "/api/v1/audit/legal-hold", operation_id = "place_legal_hold", tag = "retention",
    request_body(content = Object, description = "`correlation_id`, `reason`, optional `requested_by` (the schema is made from `read_body`); with a trusted proxy header (`api.trusted_user_header`) the hold is placed in its identity's name"),
    params(("Prefer" = Option<String>, Header, description = "`answers=native` or `answers=platform`: which API's answers (default: the `api.write_answers` setting)")),
    responses(
        (status = 201, description = "Native answers: the hold, placed now", body = HoldAnswer),
        (status = 200, description = "The hold, placed now (platform answers) or already (a retry)", body = HoldAnswer),
        (status = 400, description = "A bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A trusted proxy header is configured and the request lacks it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The correlation is already held for another reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn place(
    State(state): State<AppState>,
    answers: Answers,
    user: ProxyUser,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let body = read_body(body, true, "reason")?;
    let by = match user.who(caller.claim_or_name(body.requested_by)) {
        Ok(by) => by,
        Err(refused) => return Ok(refused.into_response()),
    };
    let request = HoldRequest {
        correlation_id: body.correlation_id.unwrap_or_default(),
        reason: body.reason,
        by,
        at: audit_model::timestamp::truncate(Utc::now()),
    };
    let (status, hold) = match state
        .store
        .place_hold(&request)
        .await
        .map_err(ApiError::from)?
    {
        // The platform answers 200 for a hold placed now.
        PlaceHold::Placed(hold) if answers.native() => (StatusCode::CREATED, hold),
        PlaceHold::Placed(hold) => (StatusCode::OK, hold),
        PlaceHold::AlreadyHeld(hold) if hold.reason == request.reason => (StatusCode::OK, hold),
        PlaceHold::AlreadyHeld(hold) => {
            return Err(ApiError::new(
                ProblemKind::Conflict,
                format!(
                    "correlation {} is already under legal hold {} since {} (reason: {})",
                    hold.correlation_id,
                    hold.id,
                    audit_model::timestamp::format(&hold.placed_at),
                    hold.reason
                ),
            ))
        }
    };
    record(&state, &hold, false).await?;
    let events_affected = events_of(&state, &hold.correlation_id).await?;
    let answer = HoldAnswer {
        hold,
        events_affected,
    };
    Ok(answers.mark((status, Json(answer)).into_response()))
}

/// Releases the legal hold on a correlation; retention may purge its expired events again.
#[utoipa::path(delete, path = "/api/v1/audit/legal-hold/{correlation_id}", operation_id = "release_legal_hold", tag = "retention",
    params(("correlation_id" = String, Path, description = "The held correlation")),
    request_body(content = Object, description = "`release_reason`, optional `requested_by` (the schema is made from `read_body`); with a trusted proxy header the hold is released in its identity's name"),
    responses(
        (status = 200, description = "The hold, released", body = ReleaseAnswer),
        (status = 400, description = "A bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A trusted proxy header is configured and the request lacks it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The correlation is not under legal hold", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(state): State<AppState>,
    user: ProxyUser,
    Path(correlation_id): Path<String>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let body = read_body(body, false, "release_reason")?;
    let by = match user.who(caller.claim_or_name(body.requested_by)) {
        Ok(by) => by,
        Err(refused) => return Ok(refused.into_response()),
    };
    let request = HoldRequest {
        correlation_id,
        reason: body.reason,
        by,
        at: audit_model::timestamp::truncate(Utc::now()),
    };
    let hold = match state
        .store
        .release_hold(&request)
        .await
        .map_err(ApiError::from)?
    {
        Some(hold) => hold,
        None => {
            // A retry of a release whose answer was lost: the latest hold, released so.
            let latest = state
                .store
                .holds(Some(&request.correlation_id), true)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .next();
            match latest {
                Some(h) if h.release_reason.as_deref() == Some(request.reason.as_str()) => h,
                _ => {
                    return Err(ApiError::not_found(format!(
                        "correlation {} is not under legal hold",
                        request.correlation_id
                    )))
                }
            }
        }
    };
    record(&state, &hold, true).await?;
    let events_released = events_of(&state, &hold.correlation_id).await?;
    Ok(Json(ReleaseAnswer {
        hold,
        events_released,
    })
    .into_response())
}

/// Query parameters of the hold list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HoldListParams {
    /// Only the holds on this correlation
    correlation_id: Option<String>,
    /// Also the released holds (default false)
    #[param(value_type = Option<bool>)]
    include_released: Option<Flag>,
}

/// The legal holds: the active ones, or with `include_released=true` their history too.
#[utoipa::path(get, path = "/api/v1/audit/legal-hold", operation_id = "list_legal_holds", tag = "retention",
    params(HoldListParams),
    responses(
        (status = 200, description = "The holds, newest first", body = HoldList),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Params(params): Params<HoldListParams>,
) -> Result<Json<HoldList>, ApiError> {
    let correlation_id = params.correlation_id;
    let include_released = params.include_released.unwrap_or_default().0;
    let holds = state
        .store
        .holds(correlation_id.as_deref(), include_released)
        .await
        .map_err(ApiError::from)?;
    let mut data = Vec::with_capacity(holds.len());
    for hold in holds {
        let events_affected = events_of(&state, &hold.correlation_id).await?;
        data.push(HoldAnswer {
            hold,
            events_affected,
        });
    }
    Ok(Json(HoldList {
        total: data.len(),
        holds: data.clone(),
        data,
    }))
}
