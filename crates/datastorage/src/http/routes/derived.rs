//! What the platform's API derives from the audit log (`crate::derived`): a remediation's
//! effectiveness score, and its RemediationRequest rebuilt from the trail.

use audit_model::{Problem, ProblemKind, StoredEvent};
use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;

use crate::derived::effectiveness::{self, EffectivenessScore};
use crate::derived::reconstruction::{self, RebuildError, Reconstruction, TrailEvent};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::store::{Cursor, EventFilter, EventQuery, Order};

/// Most events read for one derivation (a remediation writes far fewer).
const MAX_EVENTS: usize = 10_000;
/// Events read per round trip.
const PAGE: u32 = 1_000;

/// A remediation's events, in log order (at most [`MAX_EVENTS`]), that `keep` keeps; `filters`
/// narrow the read beside the correlation.
async fn trail(
    state: &AppState,
    correlation_id: &str,
    filters: &[(EventFilter, &str)],
    keep: impl Fn(&StoredEvent) -> bool,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut events = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut read = 0;
    loop {
        let query = EventQuery {
            filters: std::iter::once((EventFilter::CorrelationId, correlation_id.to_string()))
                .chain(filters.iter().map(|(f, v)| (*f, v.to_string())))
                .collect(),
            order: Order::Asc,
            limit: PAGE,
            after,
            ..EventQuery::default()
        };
        let page = state.store.query(&query).await.map_err(ApiError::from)?;
        read += page.len();
        let full = page.len() == PAGE as usize;
        after = page.last().map(|e| Cursor {
            event_timestamp: e.event.event_timestamp(),
            seq: e.seq,
        });
        events.extend(page.into_iter().filter(|e| keep(e)));
        if !full || read >= MAX_EVENTS {
            return Ok(events);
        }
    }
}

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
    let filters = [(EventFilter::EventCategory, "effectiveness")];
    let events = trail(&state, &correlation_id, &filters, |_| true).await?;
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

/// The remediation's RemediationRequest rebuilt from its audit trail, as YAML, with how
/// complete the rebuild is.
#[utoipa::path(post, path = "/api/v1/audit/remediation-requests/{correlation_id}/reconstruct", tag = "platform",
    params(("correlation_id" = String, Path, description = "The remediation's correlation id")),
    responses(
        (status = 200, description = "The rebuilt request and its validation", body = Reconstruction),
        (status = 400, description = "No signal event, nothing readable, a bad value, or below 50 % complete", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No event of the rebuild's types for this correlation", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reconstruct(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<Reconstruction>, ApiError> {
    let events = trail(&state, &correlation_id, &[], |e| {
        reconstruction::EVENT_TYPES.contains(&e.event.event_type())
    })
    .await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!(
            "no audit event to rebuild a RemediationRequest from for correlation_id {correlation_id}"
        )));
    }
    let trail: Vec<TrailEvent<'_>> = events
        .iter()
        .map(|e| TrailEvent {
            event_type: e.event.event_type(),
            data: e.event.event_data(),
            namespace: e.event.namespace(),
            cluster_id: e.event.cluster_id(),
        })
        .collect();
    reconstruction::rebuild(&correlation_id, &trail, Utc::now())
        .map(Json)
        .map_err(|e| {
            let slug = match e {
                RebuildError::NothingReadable => "no-parseable-events",
                RebuildError::NoGenesis => "missing-gateway-event",
                RebuildError::BadValue(_) => "invalid-data",
                RebuildError::Incomplete(_) => "incomplete-data",
            };
            Problem::new(ProblemKind::ValidationError, e.to_string())
                .with_extension("reason", slug)
                .into()
        })
}
