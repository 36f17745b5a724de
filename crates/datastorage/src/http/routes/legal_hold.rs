//! Legal hold: while a correlation is held, retention purges none of its events.
//!
//! Placing and releasing a hold are audit events of the held correlation. The hold row is
//! written first, then its event through the ingest queue; a retry of the same request after a
//! failure answers the stored hold and writes the same event (same id, same content) again,
//! which the log stores once. So a request that failed half way is repaired by retrying it.

use audit_model::{ObjectReader, Problem, ProblemKind, MAX_SHORT};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::extract::JsonBody;
use crate::http::params::{Flag, Params};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::retention::hold_event;
use crate::store::{HoldRequest, LegalHold, PlaceHold};

/// Longest reason.
const MAX_REASON: usize = 4096;

/// The holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldList {
    pub data: Vec<LegalHold>,
}

/// A hold request's body: the correlation (when it is not in the path), the reason and who asks.
pub(crate) struct HoldBody {
    correlation_id: Option<String>,
    reason: String,
    requested_by: String,
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
            requested_by: requested_by.unwrap_or_else(|| "unknown".into()),
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
    request_body(content = Object, description = "`correlation_id`, `reason`, optional `requested_by` (the schema is made from `read_body`)"),
    responses(
        (status = 201, description = "The hold, placed now", body = LegalHold),
        (status = 200, description = "The same hold was already placed (a retry)", body = LegalHold),
        (status = 400, description = "A bad request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The correlation is already held for another reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn place(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<LegalHold>), ApiError> {
    let body = read_body(body, true, "reason")?;
    let request = HoldRequest {
        correlation_id: body.correlation_id.unwrap_or_default(),
        reason: body.reason,
        by: body.requested_by,
        at: audit_model::timestamp::truncate(Utc::now()),
    };
    let (status, hold) = match state
        .store
        .place_hold(&request)
        .await
        .map_err(ApiError::from)?
    {
        PlaceHold::Placed(hold) => (StatusCode::CREATED, hold),
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
    Ok((status, Json(hold)))
}

/// Releases the legal hold on a correlation; retention may purge its expired events again.
#[utoipa::path(delete, path = "/api/v1/audit/legal-hold/{correlation_id}", operation_id = "release_legal_hold", tag = "retention",
    params(("correlation_id" = String, Path, description = "The held correlation")),
    request_body(content = Object, description = "`release_reason`, optional `requested_by` (the schema is made from `read_body`)"),
    responses(
        (status = 200, description = "The hold, released", body = LegalHold),
        (status = 400, description = "A bad request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The correlation is not under legal hold", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<LegalHold>, ApiError> {
    let body = read_body(body, false, "release_reason")?;
    let request = HoldRequest {
        correlation_id,
        reason: body.reason,
        by: body.requested_by,
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
    Ok(Json(hold))
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
    let data = state
        .store
        .holds(correlation_id.as_deref(), include_released)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(HoldList { data }))
}
