//! What the platform's API derives from the audit log (`crate::derived`): a remediation's
//! effectiveness score, and its RemediationRequest rebuilt from the trail.

use audit_model::{Problem, ProblemKind, StoredEvent};
use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use chrono::{DateTime, Duration};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::derived::effectiveness::{self, EffectivenessScore};
use crate::derived::history::{self, Remediation};
use crate::derived::reconstruction::go_duration;
use crate::derived::reconstruction::{self, RebuildError, Reconstruction, TrailEvent};
use crate::derived::timeline::{self, Timeline};
use crate::http::params::Params;
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::store::{Cursor, EventFilter, EventQuery, Order};

/// Most events read for one derivation (a remediation writes far fewer).
const MAX_EVENTS: usize = 10_000;
/// Most events a timeline draws.
pub const MAX_TIMELINE_EVENTS: usize = 100_000;
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
    let query = EventQuery {
        filters: std::iter::once((EventFilter::CorrelationId, correlation_id.to_string()))
            .chain(filters.iter().map(|(f, v)| (*f, v.to_string())))
            .collect(),
        ..EventQuery::default()
    };
    read_all(state, query, MAX_EVENTS, keep).await
}

/// Every event `base` matches, in time order (about `max` at most), that `keep` keeps.
async fn read_all(
    state: &AppState,
    base: EventQuery,
    max: usize,
    keep: impl Fn(&StoredEvent) -> bool,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut events = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut read = 0;
    loop {
        let query = EventQuery {
            order: Order::Asc,
            limit: PAGE,
            after,
            ..base.clone()
        };
        let page = state.store.query(&query).await.map_err(ApiError::from)?;
        read += page.len();
        let full = page.len() == PAGE as usize;
        after = page.last().map(|e| Cursor {
            event_timestamp: e.event.event_timestamp(),
            seq: e.seq,
        });
        events.extend(page.into_iter().filter(|e| keep(e)));
        if !full || read >= max {
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

/// A remediation's timeline: every event of the correlation across the six services, in time
/// order, grouped per service into lifecycles with their phases, durations, outcomes and
/// completeness findings, under a summary.
#[utoipa::path(get, path = "/api/v1/audit/remediations/{correlation_id}/timeline", tag = "timeline",
    params(("correlation_id" = String, Path, description = "The remediation's correlation id")),
    responses(
        (status = 200, description = "The timeline", body = Timeline),
        (status = 404, description = "No event of this correlation", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remediation_timeline(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let mut events = state
        .store
        .timeline_rows(&correlation_id, MAX_TIMELINE_EVENTS as i64 + 1)
        .await
        .map_err(ApiError::from)?;
    let truncated = events.len() > MAX_TIMELINE_EVENTS;
    events.truncate(MAX_TIMELINE_EVENTS);
    let mut timeline = timeline::build(&correlation_id, &events).ok_or_else(|| {
        ApiError::not_found(format!(
            "no audit event has correlation_id {correlation_id}"
        ))
    })?;
    timeline.truncated = truncated;
    Ok(Json(timeline))
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

/// Query parameters of the remediation history (the platform's names).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HistoryParams {
    /// Kubernetes resource kind (Deployment, StatefulSet, …)
    target_kind: String,
    /// Kubernetes resource name
    target_name: String,
    /// Kubernetes resource namespace
    target_namespace: String,
    /// The hash of the target's current spec
    current_spec_hash: String,
    /// The recent window, a Go duration without a sign (default 24h, also when empty)
    #[param(pattern = r"^(([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|0)?$")]
    tier1_window: Option<String>,
    /// The long window, a Go duration (default 2160h, 90 days); tier 2 is the part of it before
    /// the recent window, so it is empty when this is not longer than tier1Window
    #[param(pattern = r"^(([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|0)?$")]
    tier2_window: Option<String>,
    /// Only remediations recorded on this cluster
    cluster_id: Option<String>,
}

/// A window parameter: a Go duration, not negative.
fn window(name: &str, text: Option<&str>, default_hours: i64) -> Result<Duration, ApiError> {
    // Empty is the default, as the public implementation reads it.
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Duration::hours(default_hours));
    };
    match go_duration::parse(text) {
        Some(nanos) if nanos >= 0 => Ok(Duration::nanoseconds(nanos)),
        _ => Err(ApiError::field(
            name,
            "must be a duration such as 24h or 90m",
        )),
    }
}

/// The remediations of one target in one window whose spec hash before or after is `current`,
/// each with its assessment, as `build` writes them.
async fn tier(
    state: &AppState,
    params: &HistoryParams,
    target: &str,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    build: fn(&Remediation<'_>, &history::Assessment<'_>, &str) -> Value,
) -> Result<Vec<Value>, ApiError> {
    let mut filters = vec![(
        EventFilter::EventType,
        "remediation.workflow_created".to_string(),
    )];
    if let Some(cluster) = &params.cluster_id {
        filters.push((EventFilter::ClusterId, cluster.clone()));
    }
    let query = EventQuery {
        filters,
        detail_key: Some("target_resource".into()),
        detail_value: Some(target.to_string()),
        since: Some(since),
        until: Some(until),
        ..EventQuery::default()
    };
    let remediations = read_all(state, query, MAX_EVENTS, |_| true).await?;
    let mut chain = Vec::new();
    for ro in &remediations {
        let filters = [(EventFilter::EventCategory, "effectiveness")];
        let assessed = trail(state, ro.event.correlation_id(), &filters, |_| true).await?;
        let assessment: Vec<_> = assessed
            .iter()
            .map(|e| (e.event.event_type(), e.event.event_data()))
            .collect();
        let remediation = Remediation {
            correlation_id: ro.event.correlation_id(),
            at: ro.event.event_timestamp(),
            data: ro.event.event_data(),
        };
        if history::relevant(&remediation, &assessment, &params.current_spec_hash) {
            chain.push(build(&remediation, &assessment, &params.current_spec_hash));
        }
    }
    Ok(chain)
}

/// A target resource's remediation history in two tiers, for the platform's AI agent: the
/// recent remediations in detail, the older ones in summary, and whether the target is back at
/// a spec a remediation started from (a regression).
#[utoipa::path(get, path = "/api/v1/remediation-history/context", tag = "platform",
    params(HistoryParams),
    responses(
        (status = 200, description = "The two tiers of the target's remediations (empty when it has none)", body = Object),
        (status = 400, description = "A missing or bad parameter, named in `field_errors`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history_context(
    State(state): State<AppState>,
    Params(params): Params<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let recent = window("tier1Window", params.tier1_window.as_deref(), 24)?;
    let long = window("tier2Window", params.tier2_window.as_deref(), 2160)?;
    let target = format!(
        "{}/{}/{}",
        params.target_namespace, params.target_kind, params.target_name
    );
    let now = Utc::now();
    let tier1_since = now - recent;
    let tier1 = if recent > Duration::zero() {
        tier(&state, &params, &target, (tier1_since, now), history::entry).await?
    } else {
        Vec::new()
    };
    // The long window ends where the recent one begins (nothing when it is not longer).
    let tier2 = if long > recent {
        let before = tier1_since - Duration::microseconds(1);
        tier(
            &state,
            &params,
            &target,
            (now - long, before),
            history::summary,
        )
        .await?
    } else {
        Vec::new()
    };
    let windows = (
        go_duration::format(recent.num_nanoseconds().unwrap_or(i64::MAX)),
        go_duration::format(long.num_nanoseconds().unwrap_or(i64::MAX)),
    );
    Ok(Json(history::context(
        &target,
        &params.current_spec_hash,
        windows,
        tier1,
        tier2,
    )))
}
