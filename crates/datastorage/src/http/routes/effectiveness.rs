//! `GET /api/v1/effectiveness/{correlation_id}`: a remediation's effectiveness score, computed
//! from its assessment events (`derived::effectiveness`).

use audit_model::Problem;
use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;

use crate::derived::effectiveness::{self, EffectivenessScore};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::store::{Cursor, EventFilter, EventQuery, Order};

/// Most assessment events read for one remediation (the monitor writes a handful).
const MAX_EVENTS: usize = 10_000;
/// Events read per round trip.
const PAGE: u32 = 1_000;

/// The remediation's effectiveness score: the platform's weighted formula over the assessed
/// components (health 0.40, alert 0.35, metrics 0.25), from the audit log alone.
#[utoipa::path(get, path = "/api/v1/effectiveness/{correlation_id}", tag = "platform",
    params(("correlation_id" = String, Path, description = "The remediation's correlation id")),
    responses(
        (status = 200, description = "The score, its components, the spec hashes and the assessment's status", body = EffectivenessScore),
        (status = 404, description = "No effectiveness event for this correlation", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn score(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<EffectivenessScore>, ApiError> {
    let mut events = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let query = EventQuery {
            filters: vec![
                (EventFilter::CorrelationId, correlation_id.clone()),
                (EventFilter::EventCategory, "effectiveness".to_string()),
            ],
            order: Order::Asc,
            limit: PAGE,
            after,
            ..EventQuery::default()
        };
        let page = state.store.query(&query).await.map_err(ApiError::from)?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|e| Cursor {
            event_timestamp: e.event.event_timestamp(),
            seq: e.seq,
        });
        events.extend(page);
        if !full || events.len() >= MAX_EVENTS {
            break;
        }
    }
    if events.is_empty() {
        return Err(ApiError::not_found(format!(
            "no effectiveness assessment event for correlation_id {correlation_id}"
        )));
    }
    let score = effectiveness::score(
        &correlation_id,
        events
            .iter()
            .map(|e| (e.event.event_type(), e.event.event_data())),
        Utc::now(),
    );
    Ok(Json(score))
}
