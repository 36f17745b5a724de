//! Probes, metrics and the API description.

use std::time::Duration;

use audit_model::{Problem, ProblemKind};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::problem::ApiError;
use crate::http::AppState;

/// Longest time the readiness probe waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<ComponentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq: Option<ComponentStatus>,
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentStatus {
    pub backend: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses(
        (status = 200, description = "Alive", body = HealthStatus),
    ))]
pub async fn live() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "alive",
        store: None,
        dlq: None,
    })
}

/// Readiness: 200 while writes can be taken durably (by the store, or by the DLQ while the
/// store is down) and the service is not shutting down; else 503 with the reason.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready; the state of the store and the DLQ", body = HealthStatus),
        (status = 503, description = "Not ready; `detail` says why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    if state.shutdown.is_draining() {
        return Err(ApiError::new(
            ProblemKind::ServiceUnavailable,
            "shutting down",
        ));
    }
    let (store, dlq) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.store.ping()),
        tokio::time::timeout(READY_TIMEOUT, state.dlq.ping()),
    );
    let store = component(
        state.store.backend(),
        store.map_err(|_| "timeout".to_string()).and_then(|r| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                format!("unavailable ({})", e.label())
            })
        }),
    );
    let dlq = component(
        state.dlq.name(),
        dlq.map_err(|_| "timeout".to_string()).and_then(|r| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "readiness: the dead-letter queue does not answer");
                "unavailable".to_string()
            })
        }),
    );
    if !store.ok && !dlq.ok {
        return Err(ApiError::new(
            ProblemKind::ServiceUnavailable,
            format!(
                "neither the store ({}) nor the dead-letter queue ({}) answers",
                store.error.unwrap_or_default(),
                dlq.error.unwrap_or_default()
            ),
        ));
    }
    Ok(Json(HealthStatus {
        status: "ready",
        store: Some(store),
        dlq: Some(dlq),
    }))
}

fn component(backend: &'static str, result: Result<(), String>) -> ComponentStatus {
    ComponentStatus {
        backend,
        ok: result.is_ok(),
        error: result.err(),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    ))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // DLQ gauges are read at scrape time, so they are current whatever the worker is doing.
    state.replayer.refresh_metrics().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses(
        (status = 200, description = "OpenAPI document", content_type = "application/json"),
    ))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::http::openapi::value())
}
