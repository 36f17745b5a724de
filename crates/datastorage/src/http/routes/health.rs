//! Probes, metrics and the API description.

use std::time::Duration;

use audit_model::{Problem, ProblemKind};
use axum::extract::State;
use axum::http::{header, StatusCode};
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
    readiness(&state)
        .await
        .map(Json)
        .map_err(|not_ready| ApiError::new(ProblemKind::ServiceUnavailable, not_ready.detail))
}

/// Why the service is not ready.
struct NotReady {
    /// The platform's reason word (`shutting_down`, `database_unreachable`).
    reason: &'static str,
    detail: String,
}

/// Whether writes can be taken durably now, and the state of the store and the DLQ.
async fn readiness(state: &AppState) -> Result<HealthStatus, NotReady> {
    if state.shutdown.is_draining() {
        return Err(NotReady {
            reason: "shutting_down",
            detail: "shutting down".into(),
        });
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
        return Err(NotReady {
            reason: "database_unreachable",
            detail: format!(
                "neither the store ({}) nor the dead-letter queue ({}) answers",
                store.error.unwrap_or_default(),
                dlq.error.unwrap_or_default()
            ),
        });
    }
    Ok(HealthStatus {
        status: "ready",
        store: Some(store),
        dlq: Some(dlq),
    })
}

/// The platform's readiness answer (`/readyz`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformReadiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Why not ready: `shutting_down` or `database_unreachable` (neither the store nor the
    /// dead-letter queue answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<ComponentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq: Option<ComponentStatus>,
}

/// Readiness as the platform's services ask for it (they gate their own readiness on it): the
/// same check as `/health/ready`, answered in the platform's shape.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}` with the store's and the DLQ's state", body = PlatformReadiness),
        (status = 503, description = "Not ready: `status` `not_ready` and the `reason`", body = PlatformReadiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<PlatformReadiness>) {
    match readiness(&state).await {
        Ok(health) => (
            StatusCode::OK,
            Json(PlatformReadiness {
                status: "ready",
                reason: None,
                detail: None,
                store: health.store,
                dlq: health.dlq,
            }),
        ),
        Err(not_ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(PlatformReadiness {
                status: "not_ready",
                reason: Some(not_ready.reason),
                detail: Some(not_ready.detail),
                store: None,
                dlq: None,
            }),
        ),
    }
}

/// The platform's liveness answer (`/healthz`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformLiveness {
    /// Always `healthy`.
    pub status: &'static str,
    /// Now, RFC 3339.
    pub timestamp: String,
}

/// Liveness as the platform's services ask for it: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Alive", body = PlatformLiveness),
    ))]
pub async fn healthz() -> Json<PlatformLiveness> {
    Json(PlatformLiveness {
        status: "healthy",
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
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
    metrics::counter!(crate::metrics::LOG_LINES_DROPPED)
        .absolute(crate::telemetry::dropped_lines());
    crate::metrics::collect_process();
    if let Ok(holds) = state.store.holds(None, false).await {
        metrics::gauge!(crate::metrics::LEGAL_HOLDS_ACTIVE).set(holds.len() as f64);
    }
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
