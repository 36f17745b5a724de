//! Operating the dead-letter queue.

use audit_model::{Problem, ProblemKind};
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dlq::{DeadLetter, DlqError, DlqStats};
use crate::http::authn::{Caller, ClientAddress};
use crate::http::params::{Limit, Params};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::replay::ReplayReport;

/// A 503 naming the dead-letter queue; what its backend said goes to the log, not the client.
fn unavailable(e: DlqError) -> ApiError {
    tracing::error!(error = %e, "the dead-letter queue failed a request");
    ApiError::new(
        ProblemKind::ServiceUnavailable,
        "the dead-letter queue is unavailable; retry shortly",
    )
}

/// DLQ figures.
#[utoipa::path(get, path = "/api/v1/admin/dlq", operation_id = "dlq_stats", tag = "admin",
    responses(
        (status = 200, description = "Depth, oldest entry age, dead letters, backend", body = DlqStats),
        (status = 503, description = "The DLQ does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<DlqStats>, ApiError> {
    state.dlq.stats().await.map(Json).map_err(unavailable)
}

/// One dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterItem {
    pub id: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub data: Vec<DeadLetterItem>,
    pub next_cursor: Option<String>,
}

/// Query parameters of the dead-letter list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// 1..1000, default 100
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page
    cursor: Option<String>,
}

/// Dead letters, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/dlq/dead-letters", tag = "admin",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Params(params): Params<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let limit = Limit::or_default(params.limit) as usize;
    let cursor = params.cursor;
    let mut letters = state
        .dlq
        .dead_letters(limit + 1, cursor)
        .await
        .map_err(unavailable)?;
    let next_cursor = if letters.len() > limit {
        letters.truncate(limit);
        letters.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    Ok(Json(DeadLetterPage {
        data: letters
            .into_iter()
            .map(|(id, letter)| DeadLetterItem { id, letter })
            .collect(),
        next_cursor,
    }))
}

/// Drain the DLQ now (every entry, also those waiting for their backoff).
#[utoipa::path(post, path = "/api/v1/admin/dlq/replay", operation_id = "replay_dlq", tag = "admin",
    responses(
        (status = 200, description = "What the drain did", body = ReplayReport),
        (status = 503, description = "The store or the DLQ does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ClientAddress(address): ClientAddress,
) -> Result<Json<ReplayReport>, ApiError> {
    state.store.ping().await.map_err(ApiError::from)?;
    crate::access::record(
        &state.queue,
        (crate::access::DLQ_ADMIN, "replay"),
        &caller,
        address,
        serde_json::json!({"action": "replay"}),
    )
    .await?;
    state
        .replayer
        .drain(true, None)
        .await
        .map(Json)
        .map_err(unavailable)
}

/// The answer of a dead-letter retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAnswer {
    /// Always `requeued`.
    pub status: &'static str,
    pub id: String,
}

/// Put a dead letter back in the queue (attempts reset).
#[utoipa::path(post, path = "/api/v1/admin/dlq/dead-letters/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "Back in the queue", body = RetryAnswer),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ClientAddress(address): ClientAddress,
    Path(id): Path<String>,
) -> Result<Json<RetryAnswer>, ApiError> {
    if !state
        .dlq
        .retry_dead_letter(&id)
        .await
        .map_err(unavailable)?
    {
        return Err(ApiError::not_found(format!("no dead letter with id {id}")));
    }
    // Recorded once done (a refused retry changes nothing); the dead letter is back in the
    // queue whether or not the record can be written, and the answer says which.
    crate::access::record(
        &state.queue,
        (crate::access::DLQ_ADMIN, "retry"),
        &caller,
        address,
        serde_json::json!({"action": "retry", "dead_letter": id}),
    )
    .await?;
    Ok(Json(RetryAnswer {
        status: "requeued",
        id,
    }))
}
