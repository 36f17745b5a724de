//! Probes, metrics and the API description.

use std::time::Duration;

use audit_model::{Problem, ProblemKind};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::http::problem::ApiError;
use crate::http::AppState;

/// Longest time the readiness probe waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub async fn live() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "alive",
        store: None,
    })
}

/// Readiness: 200 when the store answers and the service is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "Not ready; `detail` says why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    if state.shutdown.is_draining() {
        return Err(ApiError::new(
            ProblemKind::ServiceUnavailable,
            "shutting down",
        ));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(HealthStatus {
            status: "ready",
            store: Some(state.store.backend()),
        })),
        Ok(Err(e)) => Err(ApiError::new(
            ProblemKind::ServiceUnavailable,
            format!("store {} does not answer: {e}", state.store.backend()),
        )),
        Err(_) => Err(ApiError::new(
            ProblemKind::ServiceUnavailable,
            format!(
                "store {} did not answer within {READY_TIMEOUT:?}",
                state.store.backend()
            ),
        )),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::http::openapi::ApiDoc::openapi())
}
