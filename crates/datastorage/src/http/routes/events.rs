//! The unified event log: write one, write a batch, read one, query.

use audit_model::{
    AuditEvent, BatchItemResult, BatchResponse, ItemStatus, ParseError, Problem, ProblemKind,
    StoredEvent,
};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::extract::BodyBytes;
use crate::http::params::{self, Limit, Params, SortOrder, TimeParam};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::ingest::IngestOutcome;
use crate::store::{Cursor, EventFilter, EventQuery, Order, PreparedEvent};

/// The answer of a write that was parked in the DLQ.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedAnswer {
    /// Always `queued`.
    pub status: &'static str,
    pub event_id: Uuid,
    pub detail: &'static str,
}

/// The answer for one written event.
pub(crate) fn outcome_response(outcome: IngestOutcome, resource: &str) -> Response {
    match outcome {
        IngestOutcome::Created(e) => {
            let location = format!("/api/v1/audit/events/{}", e.event.event_id());
            (StatusCode::CREATED, [(header::LOCATION, location)], Json(e)).into_response()
        }
        IngestOutcome::Duplicate(e) => (StatusCode::OK, Json(e)).into_response(),
        IngestOutcome::Conflict(e) => conflict(resource, "event_id", &e.event.event_id().to_string()),
        IngestOutcome::Queued(event_id) => (
            StatusCode::ACCEPTED,
            Json(QueuedAnswer {
                status: "queued",
                event_id,
                detail: "the database is unavailable; the event is held durably and will be stored when it returns",
            }),
        )
            .into_response(),
        IngestOutcome::Refused { event_id, reason } => {
            refused_by_database(event_id, &reason);
            ApiError::field("$", REFUSED_BY_DATABASE).into_response()
        }
    }
}

/// What a client is told of an event the database refused although it passed validation; what
/// the database said is logged (see [`refused_by_database`]).
const REFUSED_BY_DATABASE: &str =
    "the database refused the event's data although it passed validation; the service's log names the reason with the request id";

/// Logs why the database refused an event.
fn refused_by_database(event_id: Uuid, reason: &str) {
    let request_id = crate::http::problem::REQUEST_ID
        .try_with(|id| id.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    tracing::warn!(request_id, %event_id, reason, "the database refused an event");
}

fn conflict(resource: &str, field: &str, value: &str) -> Response {
    ApiError::from(
        Problem::new(
            ProblemKind::Conflict,
            format!("{field} {value} is already stored with different content"),
        )
        .with_extension("resource", resource)
        .with_extension("field", field)
        .with_extension("value", value),
    )
    .into_response()
}

/// Write one audit event.
#[utoipa::path(
    post, path = "/api/v1/audit/events", tag = "events",
    request_body(content = Object, description = "An audit event (ADR-034 fields); `event_id` is optional"),
    responses(
        (status = 201, description = "Stored", body = StoredEvent),
        (status = 200, description = "The identical event was already stored", body = StoredEvent),
        (status = 400, description = "Invalid fields, all listed in `field_errors`", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "The database is unavailable; held in the dead-letter queue", body = QueuedAnswer),
        (status = 409, description = "The event_id holds different content", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body above the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Neither the database nor the dead-letter queue can take the event", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_event(
    State(state): State<AppState>,
    BodyBytes(body): BodyBytes,
) -> Result<Response, ApiError> {
    let event = AuditEvent::parse_json(&body, Utc::now()).map_err(|e| match e {
        ParseError::Json(e) => ApiError::field("body", format!("invalid JSON: {e}")),
        ParseError::Fields(errors) => ApiError::validation(&errors),
    })?;
    let mut outcomes = state.queue.submit(vec![PreparedEvent::new(event)]).await?;
    let outcome = outcomes
        .pop()
        .ok_or_else(|| ApiError::new(ProblemKind::Internal, "the writer gave no answer"))?;
    Ok(outcome_response(outcome, "audit_events"))
}

/// Write up to `batch_max_items` events; each item is answered on its own.
#[utoipa::path(
    post, path = "/api/v1/audit/events/batch", tag = "events",
    request_body(content = Vec<Object>, description = "A JSON array of audit events"),
    responses(
        (status = 200, description = "Per-item results aligned with the input", body = BatchResponse),
        (status = 400, description = "Not an array, empty, or too many items", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body above the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    BodyBytes(body): BodyBytes,
) -> Result<Json<BatchResponse>, ApiError> {
    let now = Utc::now();
    let parsed = parse_batch(&body, state.batch_max_items, now)?;
    // The events own their text: the body goes before the wait for the writer.
    drop(body);
    let mut results = parsed.rejected;
    if !parsed.accepted.is_empty() {
        let outcomes = state.queue.submit(parsed.accepted).await?;
        for (index, outcome) in parsed.positions.into_iter().zip(outcomes) {
            results[index] = Some(item_result(index, &outcome));
        }
    }
    Ok(Json(BatchResponse::new(
        results.into_iter().flatten().collect(),
    )))
}

/// A batch body split into the events to store and the answers of the items refused.
struct ParsedBatch {
    accepted: Vec<PreparedEvent>,
    /// The index in the body of each accepted event.
    positions: Vec<usize>,
    /// One slot per item; the refused items' answers are filled in.
    rejected: Vec<Option<BatchItemResult>>,
}

/// Splits the body into its items (borrowed text, no JSON tree of the whole body) and parses
/// each item from its text as a single-event write does.
fn parse_batch(body: &[u8], max_items: usize, now: DateTime<Utc>) -> Result<ParsedBatch, ApiError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            ApiError::field("body", "must be a JSON array of events")
        } else {
            ApiError::field("body", format!("invalid JSON: {e}"))
        }
    })?;
    if items.is_empty() {
        return Err(ApiError::field("body", "must hold at least one event"));
    }
    if items.len() > max_items {
        return Err(ApiError::field(
            "body",
            format!("must hold at most {max_items} events"),
        ));
    }
    // Each item is answered on its own, but an item that is not an object at all is not an
    // event that failed validation: the body is not a batch of events.
    let not_objects: Vec<String> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| !item.get().starts_with('{'))
        .map(|(i, _)| i.to_string())
        .collect();
    if !not_objects.is_empty() {
        return Err(ApiError::field(
            "body",
            format!(
                "every item must be a JSON object (an event); item(s) {} are not",
                not_objects.join(", ")
            ),
        ));
    }
    let mut batch = ParsedBatch {
        accepted: Vec::with_capacity(items.len()),
        positions: Vec::with_capacity(items.len()),
        rejected: vec![None; items.len()],
    };
    for (index, item) in items.into_iter().enumerate() {
        match AuditEvent::parse_json(item.get().as_bytes(), now) {
            Ok(event) => {
                batch.positions.push(index);
                batch.accepted.push(PreparedEvent::new(event));
            }
            Err(e) => {
                let error = match e {
                    ParseError::Fields(errors) => {
                        crate::metrics::record_validation_failures(&errors);
                        errors.to_string()
                    }
                    ParseError::Json(e) => e.to_string(),
                };
                batch.rejected[index] = Some(BatchItemResult {
                    index,
                    event_id: claimed_id(item),
                    status: ItemStatus::Rejected,
                    seq: None,
                    error: Some(format!("validation error: {error}")),
                });
            }
        }
    }
    Ok(batch)
}

/// The `event_id` a refused item names, when it is a UUID.
fn claimed_id(item: &RawValue) -> Option<Uuid> {
    let item: serde_json::Value = serde_json::from_str(item.get()).ok()?;
    Uuid::parse_str(item.get("event_id")?.as_str()?).ok()
}

fn item_result(index: usize, outcome: &IngestOutcome) -> BatchItemResult {
    let (event_id, status, seq, error) = match outcome {
        IngestOutcome::Created(s) => (s.event.event_id(), ItemStatus::Created, Some(s.seq), None),
        IngestOutcome::Duplicate(s) => {
            (s.event.event_id(), ItemStatus::Duplicate, Some(s.seq), None)
        }
        IngestOutcome::Conflict(s) => (
            s.event.event_id(),
            ItemStatus::Rejected,
            None,
            Some("conflict: event_id is already stored with different content".to_string()),
        ),
        IngestOutcome::Queued(id) => (*id, ItemStatus::Queued, None, None),
        IngestOutcome::Refused { event_id, reason } => {
            refused_by_database(*event_id, reason);
            (
                *event_id,
                ItemStatus::Rejected,
                None,
                Some(REFUSED_BY_DATABASE.to_string()),
            )
        }
    };
    BatchItemResult {
        index,
        event_id: Some(event_id),
        status,
        seq,
        error,
    }
}

/// Read one stored event.
#[utoipa::path(
    get, path = "/api/v1/audit/events/{event_id}", tag = "events",
    params(("event_id" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The stored event", body = StoredEvent),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Its content was purged by retention", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StoredEvent>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::field("event_id", "must be a UUID"))?;
    let event = state.store.get(id).await.map_err(ApiError::from)?;
    ApiError::live_event(event, id).map(Json)
}

/// Query parameters of the event list (all optional): what the document shows and what the
/// handler reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    correlation_id: Option<String>,
    event_type: Option<String>,
    event_category: Option<String>,
    event_outcome: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    actor_id: Option<String>,
    namespace: Option<String>,
    /// RFC 3339 time, or a duration back from now such as `30m`, `24h`, `7d`.
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// RFC 3339 time, or a duration back from now.
    #[param(value_type = Option<String>)]
    until: Option<TimeParam>,
    /// `asc` (default) or `desc`, by event_timestamp then seq.
    #[param(value_type = Option<SortOrder>)]
    order: Option<SortOrder>,
    /// 1..1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page (a position, good for either order).
    #[param(value_type = Option<String>, pattern = r"^-?[0-9]{1,18}\.[0-9]{1,18}$")]
    cursor: Option<EventCursor>,
}

impl EventListParams {
    /// The query these parameters ask for, times counted back from `now`.
    pub(crate) fn to_query(&self, now: DateTime<Utc>) -> EventQuery {
        let filters = [
            (EventFilter::CorrelationId, &self.correlation_id),
            (EventFilter::EventType, &self.event_type),
            (EventFilter::EventCategory, &self.event_category),
            (EventFilter::EventOutcome, &self.event_outcome),
            (EventFilter::ResourceType, &self.resource_type),
            (EventFilter::ResourceId, &self.resource_id),
            (EventFilter::ActorId, &self.actor_id),
            (EventFilter::Namespace, &self.namespace),
        ];
        EventQuery {
            filters: filters
                .into_iter()
                .filter_map(|(filter, value)| Some((filter, value.clone()?)))
                .collect(),
            since: self.since.map(|t| t.resolve(now)),
            until: self.until.map(|t| t.resolve(now)),
            order: match self.order {
                Some(SortOrder::Desc) => Order::Desc,
                _ => Order::Asc,
            },
            limit: Limit::or_default(self.limit),
            after: self.cursor.map(|c| c.0),
        }
    }
}

/// A page's cursor: the position of its last event, `<event_timestamp in µs>.<seq>`. It holds
/// no order: a position is a place to go on from in either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor(Cursor);

impl<'de> Deserialize<'de> for EventCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        decode_cursor(&text).map(EventCursor).ok_or_else(|| {
            params::refuse(
                audit_model::Reason::InvalidFormat,
                "is not a cursor of this API",
            )
        })
    }
}

/// One page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<StoredEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query the log.
#[utoipa::path(
    get, path = "/api/v1/audit/events", tag = "events",
    params(EventListParams),
    responses(
        (status = 200, description = "One page of events", body = EventPage),
        (status = 400, description = "A bad parameter, named in `field_errors`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    Params(params): Params<EventListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let query = params.to_query(Utc::now());
    let limit = query.limit as usize;
    let mut fetch = query.clone();
    fetch.limit += 1;
    let mut data = state.store.query(&fetch).await.map_err(ApiError::from)?;
    let next_cursor = if data.len() > limit {
        data.truncate(limit);
        data.last().map(|last| {
            encode_cursor(Cursor {
                event_timestamp: last.event.event_timestamp(),
                seq: last.seq,
            })
        })
    } else {
        None
    };
    Ok(Json(EventPage { data, next_cursor }))
}

/// The cursor of a page ending at `c` (see [`EventCursor`]).
fn encode_cursor(c: Cursor) -> String {
    format!("{}.{}", c.event_timestamp.timestamp_micros(), c.seq)
}

/// A cursor's position; a time outside the years 0001-9999 is taken as the nearest end of
/// that range (a place before or after every event).
fn decode_cursor(text: &str) -> Option<Cursor> {
    let (micros, seq) = text.split_once('.')?;
    let valid = |s: &str| (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let negative = micros.starts_with('-');
    let digits = micros.strip_prefix('-').unwrap_or(micros);
    if !valid(digits) || !valid(seq) {
        return None;
    }
    let micros: i64 = digits.parse().ok()?;
    let micros = if negative { -micros } else { micros };
    Some(Cursor {
        event_timestamp: params::clamp_micros(micros),
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event list's query from a query string, as the route reads it.
    fn parse_list_params(
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<EventQuery, audit_model::FieldErrors> {
        params::read::<EventListParams>(query).map(|p| p.to_query(now))
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            event_timestamp: audit_model::timestamp::parse("2026-01-01T00:00:00.123456Z").unwrap(),
            seq: 42,
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(encode_cursor(c), "1767225600123456.42");
        for bad in [
            "garbage!",
            "1.2.3",
            "1.",
            ".1",
            "1.-2",
            "1234567890123456789.1",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
        // A place beyond year 9999 is the end of time, not an error.
        let far = decode_cursor("999999999999999999.1").unwrap();
        assert_eq!(
            audit_model::timestamp::format(&far.event_timestamp),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn relative_durations_count_back_from_now() {
        let now = audit_model::timestamp::parse("2026-01-08T00:00:00Z").unwrap();
        let q = parse_list_params("since=7d&until=30m", now).unwrap();
        assert_eq!(q.since.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(q.until.unwrap().to_rfc3339(), "2026-01-07T23:30:00+00:00");
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let now = Utc::now();
        let errors = parse_list_params("since=yesterday&limit=0&order=up&cursor=x&colour=red", now)
            .unwrap_err();
        let names: Vec<_> = errors.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(names, ["colour", "cursor", "limit", "order", "since"]);
    }
}
