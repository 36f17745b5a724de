//! The unified event log: write one, write a batch, read one, query.

use audit_model::{
    AuditEvent, BatchItemResult, BatchResponse, ItemStatus, ParseError, Problem, ProblemKind,
    Receipt, StoredEvent,
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

use crate::auth::Principal;
use crate::http::answers::Answers;
use crate::http::authn::{charge, out_of_scope, Caller, ClientAddress};
use crate::http::extract::{BodyBytes, CallerTrace};
use crate::http::params::{self, Flag, Limit, NonNegative, Params, SortOrder, TimeParam};
use crate::http::problem::ApiError;
use crate::http::proxy_user::ProxyUser;
use crate::http::AppState;
use crate::ingest::IngestOutcome;
use crate::store::{Cursor, EventFilter, EventQuery, Order, PreparedEvent};

/// The answer of a write that was parked in the DLQ (the platform's `AsyncAcceptanceResponse`
/// with the event's id).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedAnswer {
    /// Always `accepted` (the platform's word for it).
    pub status: &'static str,
    pub event_id: Uuid,
    pub message: &'static str,
}

/// A stored event as the query and the writes answer it: its fields, what the log assigned,
/// and `version` (the platform's name for `event_version`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub stored: StoredEvent,
    /// The same as `event_version`, under the platform's name.
    pub version: String,
}

impl From<StoredEvent> for EventView {
    fn from(stored: StoredEvent) -> Self {
        let version = stored.event.event_version().to_string();
        EventView { stored, version }
    }
}

/// The answer of a stored write: the event as stored and what happened (the platform's
/// `AuditEventResponse` is its `event_id`, `event_timestamp` and `message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredAnswer {
    #[serde(flatten)]
    pub event: EventView,
    pub message: &'static str,
}

const STORED: &str = "audit event stored";
const ALREADY_STORED: &str = "an identical audit event was already stored; nothing was added";
const HELD: &str =
    "the database is unavailable; the event is held durably and will be stored when it returns";

/// The answer for one written event.
pub(crate) fn outcome_response(
    outcome: IngestOutcome,
    resource: &str,
    answers: Answers,
) -> Response {
    let stored = |status, e: StoredEvent, message| {
        let location = format!("/api/v1/audit/events/{}", e.event.event_id());
        let body = StoredAnswer {
            event: e.into(),
            message,
        };
        (status, [(header::LOCATION, location)], Json(body)).into_response()
    };
    let response = match outcome {
        IngestOutcome::Created(e) => stored(StatusCode::CREATED, e, STORED),
        // The platform knows no other success than 201.
        IngestOutcome::Duplicate(e) if answers.native() => {
            stored(StatusCode::OK, e, ALREADY_STORED)
        }
        IngestOutcome::Duplicate(e) => stored(StatusCode::CREATED, e, ALREADY_STORED),
        IngestOutcome::Conflict(e) => {
            conflict(resource, "event_id", &e.event.event_id().to_string())
        }
        IngestOutcome::Queued(event_id) => (
            StatusCode::ACCEPTED,
            Json(QueuedAnswer {
                status: "accepted",
                event_id,
                message: HELD,
            }),
        )
            .into_response(),
        IngestOutcome::Refused { event_id, reason } => {
            refused_by_database(event_id, &reason);
            ApiError::field("$", REFUSED_BY_DATABASE).into_response()
        }
    };
    answers.mark(response)
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
    params(("Prefer" = Option<String>, Header, description = "`answers=native` or `answers=platform`: which API's answers (default: the `api.write_answers` setting)")),
    responses(
        (status = 201, description = "Stored (on the platform's answers, also: the identical event was already stored)", body = StoredAnswer),
        (status = 200, description = "Native answers: the identical event was already stored", body = StoredAnswer),
        (status = 400, description = "Invalid fields, all listed in `field_errors`", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "The database is unavailable; held in the dead-letter queue", body = QueuedAnswer),
        (status = 409, description = "The event_id holds different content", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body above the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Neither the database nor the dead-letter queue can take the event", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_event(
    State(state): State<AppState>,
    answers: Answers,
    user: ProxyUser,
    Caller(caller): Caller,
    trace: CallerTrace,
    BodyBytes(body): BodyBytes,
) -> Result<Response, ApiError> {
    let receipt = Receipt::new(Utc::now(), caller.writer());
    let mut event = AuditEvent::parse_json(&body, receipt).map_err(|e| match e {
        ParseError::Json(e) => ApiError::field("body", format!("invalid JSON: {e}")),
        ParseError::Fields(errors) => ApiError::validation(&errors),
    })?;
    if !caller.may_write(event.event_type()) {
        return Err(out_of_scope(&state, &caller, event.event_type()));
    }
    if let Some(person) = user.person() {
        event = event.attributed_to(person);
    }
    let event = trace.apply(event);
    let mut outcomes = state.queue.submit(vec![PreparedEvent::new(event)]).await?;
    let outcome = outcomes
        .pop()
        .ok_or_else(|| ApiError::new(ProblemKind::Internal, "the writer gave no answer"))?;
    Ok(outcome_response(outcome, "audit_events", answers))
}

/// The platform's answer of a batch taken whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchIds {
    /// The events' ids, in the order of the request.
    pub event_ids: Vec<Uuid>,
    pub message: String,
}

/// Write up to `batch_max_items` events.
///
/// On the platform's answers (the default) the batch is taken whole: one invalid item refuses
/// the batch (400, every item's errors as `[index].field`) and nothing is stored; otherwise
/// every event is stored (or held in the dead-letter queue while the database is down) and the
/// answer is 201 with their ids in order. On the native answers each item is answered on its
/// own (200, per-item results).
#[utoipa::path(
    post, path = "/api/v1/audit/events/batch", tag = "events",
    request_body(content = Vec<Object>, description = "A JSON array of audit events"),
    params(("Prefer" = Option<String>, Header, description = "`answers=native` or `answers=platform`: which API's answers (default: the `api.write_answers` setting)")),
    responses(
        (status = 201, description = "Platform answers: every event is stored, or held in the dead-letter queue until the database returns", body = BatchIds),
        (status = 200, description = "Native answers: per-item results aligned with the input", body = BatchResponse),
        (status = 400, description = "Not an array, empty, too many items, or (platform answers) an invalid item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Platform answers: an item's event_id holds different content (the other items were stored)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body above the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    answers: Answers,
    user: ProxyUser,
    Caller(caller): Caller,
    ClientAddress(address): ClientAddress,
    trace: CallerTrace,
    BodyBytes(body): BodyBytes,
) -> Result<Response, ApiError> {
    let writer = Written {
        receipt: Receipt::new(Utc::now(), caller.writer()),
        person: user.person(),
        caller: &caller,
        trace: &trace,
    };
    let batch = parse_batch(&body, state.batch_max_items, &writer)?;
    for refused in &batch.refused {
        if matches!(refused.error, Refusal::OutOfScope(_)) {
            state
                .denials
                .note(crate::access::Denial::Forbidden, caller.name.clone());
        }
    }
    // The request was counted as one event; its other items count too.
    let items = u32::try_from(batch.len).unwrap_or(u32::MAX);
    charge(&state, &caller, address, items.saturating_sub(1))?;
    // The events own their text: the body goes before the wait for the writer.
    drop(body);
    let response = if answers.native() {
        Json(per_item(&state, batch).await?).into_response()
    } else {
        whole(&state, batch).await?
    };
    Ok(answers.mark(response))
}

/// The native answer: each item on its own.
async fn per_item(state: &AppState, batch: ParsedBatch) -> Result<BatchResponse, ApiError> {
    let mut results: Vec<Option<BatchItemResult>> = vec![None; batch.len];
    for refused in batch.refused {
        let error = match refused.error {
            Refusal::Invalid(ParseError::Fields(errors)) => {
                crate::metrics::record_validation_failures(&errors);
                format!("validation error: {errors}")
            }
            Refusal::Invalid(ParseError::Json(e)) => format!("validation error: {e}"),
            Refusal::OutOfScope(why) => format!("forbidden: {why}"),
        };
        results[refused.index] = Some(BatchItemResult {
            index: refused.index,
            event_id: refused.claimed_id,
            status: ItemStatus::Rejected,
            seq: None,
            error: Some(error),
        });
    }
    if !batch.events.is_empty() {
        let outcomes = state.queue.submit(batch.events).await?;
        for (index, outcome) in batch.positions.into_iter().zip(outcomes) {
            results[index] = Some(item_result(index, &outcome));
        }
    }
    Ok(BatchResponse::new(results.into_iter().flatten().collect()))
}

/// The platform's answer: the batch taken whole.
async fn whole(state: &AppState, batch: ParsedBatch) -> Result<Response, ApiError> {
    let mut errors = audit_model::FieldErrors::default();
    let mut out_of_scope = Vec::new();
    for refused in batch.refused {
        let index = refused.index;
        match refused.error {
            Refusal::Invalid(ParseError::Fields(item_errors)) => {
                for (field, e) in item_errors.iter() {
                    errors.add(format!("[{index}].{field}"), e.reason, e.message.clone());
                }
            }
            Refusal::Invalid(ParseError::Json(e)) => errors.add(
                format!("[{index}]"),
                audit_model::Reason::InvalidValue,
                format!("invalid JSON: {e}"),
            ),
            Refusal::OutOfScope(why) => out_of_scope.push((index, why)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(&errors));
    }
    // An id the writer chose that holds other content refuses the batch before anything is
    // stored (a writer racing to store such an id in between is named by the 409 below).
    let mut conflicts = Vec::new();
    for index in &batch.named {
        let event = &batch.events[*index];
        let id = event.event.event_id();
        let stored = state.store.get(id).await.map_err(ApiError::from)?;
        if stored.is_some_and(|s| !crate::store::holds_same_content(event, &s)) {
            conflicts.push(format!("item {} ({id})", batch.positions[*index]));
        }
    }
    if !conflicts.is_empty() {
        return Err(Problem::new(
            ProblemKind::Conflict,
            format!(
                "{} hold an event_id already stored with different content; nothing was stored",
                conflicts.join(", ")
            ),
        )
        .into());
    }
    let positions = batch.positions;
    let outcomes = if batch.events.is_empty() {
        Vec::new()
    } else {
        state.queue.submit(batch.events).await?
    };
    let mut ids = Vec::with_capacity(outcomes.len());
    let (mut created, mut duplicate, mut queued) = (0, 0, 0);
    let mut conflicts = Vec::new();
    let mut refused = audit_model::FieldErrors::default();
    for (&index, outcome) in positions.iter().zip(&outcomes) {
        match outcome {
            IngestOutcome::Created(e) => {
                created += 1;
                ids.push(e.event.event_id());
            }
            IngestOutcome::Duplicate(e) => {
                duplicate += 1;
                ids.push(e.event.event_id());
            }
            IngestOutcome::Queued(id) => {
                queued += 1;
                ids.push(*id);
            }
            IngestOutcome::Conflict(e) => conflicts.push((index, e.event.event_id())),
            IngestOutcome::Refused { event_id, reason } => {
                refused_by_database(*event_id, reason);
                refused.add(
                    format!("[{index}]"),
                    audit_model::Reason::InvalidValue,
                    REFUSED_BY_DATABASE,
                );
            }
        }
    }
    if !conflicts.is_empty() {
        let named: Vec<String> = conflicts
            .iter()
            .map(|(i, id)| format!("item {i} ({id})"))
            .collect();
        return Err(Problem::new(
            ProblemKind::Conflict,
            format!(
                "{} hold an event_id stored with different content meanwhile (by another writer); the other items were stored",
                named.join(", ")
            ),
        )
        .with_extension("stored_event_ids", serde_json::json!(ids))
        .into());
    }
    if !refused.is_empty() {
        return Err(ApiError::validation(&refused));
    }
    if !out_of_scope.is_empty() {
        let items: Vec<serde_json::Value> = out_of_scope
            .iter()
            .map(|(i, why)| serde_json::json!({"index": i, "reason": why}))
            .collect();
        return Err(Problem::new(
            ProblemKind::Forbidden,
            format!(
                "{} item(s) are outside the event types this writer may write and were not stored; the other items were",
                out_of_scope.len()
            ),
        )
        .with_extension("refused_items", items)
        .with_extension("stored_event_ids", serde_json::json!(ids))
        .into());
    }
    let mut message = format!("{} audit events stored", created + duplicate + queued);
    if duplicate > 0 {
        message.push_str(&format!(" ({duplicate} of them already were)"));
    }
    if queued > 0 {
        message = format!(
            "{} audit events stored, {queued} held durably in the dead-letter queue until the database returns",
            created + duplicate
        );
    }
    Ok((
        StatusCode::CREATED,
        Json(BatchIds {
            event_ids: ids,
            message,
        }),
    )
        .into_response())
}

/// A batch body split into the events to store and the items refused.
struct ParsedBatch {
    /// The number of items.
    len: usize,
    events: Vec<PreparedEvent>,
    /// The index in the body of each event.
    positions: Vec<usize>,
    /// The events (by their index in `events`) whose writer gave their `event_id`.
    named: Vec<usize>,
    refused: Vec<RefusedItem>,
}

/// An item of a batch that is not stored, and why.
struct RefusedItem {
    index: usize,
    /// The `event_id` the item names, when it is a UUID.
    claimed_id: Option<Uuid>,
    error: Refusal,
}

/// Why an item of a batch is not stored.
enum Refusal {
    /// It is not a valid event.
    Invalid(ParseError),
    /// Its event type is outside what the writer may write.
    OutOfScope(String),
}

/// Who wrote a batch, and when it was received.
struct Written<'a> {
    receipt: Receipt<'a>,
    /// The person a trusted proxy vouches for, to whom the events are attributed.
    person: Option<&'a str>,
    caller: &'a Principal,
    /// The caller's trace context, for the events that carry none.
    trace: &'a CallerTrace,
}

/// Splits the body into its items (borrowed text, no JSON tree of the whole body) and parses
/// each item from its text as a single-event write does.
fn parse_batch(
    body: &[u8],
    max_items: usize,
    writer: &Written<'_>,
) -> Result<ParsedBatch, ApiError> {
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
    // An item that is not an object at all is not an event that failed validation: the body is
    // not a batch of events.
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
        len: items.len(),
        events: Vec::with_capacity(items.len()),
        positions: Vec::with_capacity(items.len()),
        named: Vec::new(),
        refused: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match AuditEvent::parse_json(item.get().as_bytes(), writer.receipt) {
            Ok(event) if !writer.caller.may_write(event.event_type()) => {
                batch.refused.push(RefusedItem {
                    index,
                    claimed_id: Some(event.event_id()),
                    error: Refusal::OutOfScope(writer.caller.scope_refusal(event.event_type())),
                })
            }
            Ok(event) => {
                let event = match writer.person {
                    Some(person) => event.attributed_to(person),
                    None => event,
                };
                let event = writer.trace.apply(event);
                // A cheap look first: most writers send no id at all.
                if item.get().contains("\"event_id\"") && claimed_id(item).is_some() {
                    batch.named.push(batch.events.len());
                }
                batch.positions.push(index);
                batch.events.push(PreparedEvent::new(event));
            }
            Err(error) => batch.refused.push(RefusedItem {
                index,
                claimed_id: claimed_id(item),
                error: Refusal::Invalid(error),
            }),
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
        (status = 200, description = "The stored event", body = EventView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Its content was purged by retention", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::field("event_id", "must be a UUID"))?;
    let event = state.store.get(id).await.map_err(ApiError::from)?;
    ApiError::live_event(event, id).map(|e| Json(e.into()))
}

/// Query parameters of the event list (all optional): what the document shows and what the
/// handler reads. The platform's parameters (`severity`, `offset`, `detail_key` with
/// `detail_value`) and this service's (`cursor`, `order`, the other filters) mix freely.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    correlation_id: Option<String>,
    event_type: Option<String>,
    event_category: Option<String>,
    event_outcome: Option<String>,
    severity: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    actor_id: Option<String>,
    namespace: Option<String>,
    /// The principal that wrote the events (as Data Storage authenticated it).
    submitted_by: Option<String>,
    /// A top-level member of `event_data` (letters, digits, `_`): with `detail_value`, the member
    /// holds that text; alone, the member is there.
    #[param(value_type = Option<String>, pattern = r"^[a-zA-Z0-9_]+$")]
    detail_key: Option<DetailKey>,
    /// The text the `detail_key` member holds; alone, the text any top-level member holds.
    detail_value: Option<String>,
    /// RFC 3339 time, or a duration back from now such as `30m`, `24h`, `7d`.
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// RFC 3339 time, or a duration back from now.
    #[param(value_type = Option<String>)]
    until: Option<TimeParam>,
    /// On the platform's answers, the events its decoder cannot read (those Data Storage
    /// writes itself, `datastorage.*`; the typed records; any event whose category is not one
    /// of the platform's or whose `event_data` has no `event_type` the platform maps to a
    /// payload) are left out unless this is `true` or `event_type`/`event_category` names
    /// them; the native answers include every event.
    #[param(value_type = Option<bool>)]
    include_all: Option<Flag>,
    /// `asc` (default) or `desc`, by event_timestamp then seq.
    #[param(value_type = Option<SortOrder>)]
    order: Option<SortOrder>,
    /// 1..1000, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<Limit>,
    /// Matching events to skip (after the cursor, when one is given); default 0.
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<NonNegative>,
    /// `next_cursor` of the previous page (a position, good for either order).
    #[param(value_type = Option<String>, pattern = r"^-?[0-9]{1,18}\.[0-9]{1,18}$")]
    cursor: Option<EventCursor>,
}

/// The page size when the query does not say (the platform's).
const DEFAULT_PAGE: u32 = 50;

impl EventListParams {
    /// The query these parameters ask for, times counted back from `now`.
    pub(crate) fn to_query(&self, now: DateTime<Utc>, answers: Answers) -> EventQuery {
        let filters = [
            (EventFilter::CorrelationId, &self.correlation_id),
            (EventFilter::EventType, &self.event_type),
            (EventFilter::EventCategory, &self.event_category),
            (EventFilter::EventOutcome, &self.event_outcome),
            (EventFilter::Severity, &self.severity),
            (EventFilter::ResourceType, &self.resource_type),
            (EventFilter::ResourceId, &self.resource_id),
            (EventFilter::ActorId, &self.actor_id),
            (EventFilter::Namespace, &self.namespace),
            (EventFilter::SubmittedBy, &self.submitted_by),
        ];
        let asks_by_kind = self.event_type.is_some() || self.event_category.is_some();
        EventQuery {
            filters: filters
                .into_iter()
                .filter_map(|(filter, value)| Some((filter, value.clone()?)))
                .collect(),
            detail_key: self.detail_key.as_ref().map(|k| k.0.clone()),
            detail_value: self.detail_value.clone(),
            since: self.since.map(|t| t.resolve(now)),
            until: self.until.map(|t| t.resolve(now)),
            platform_readable_only: !(answers.native()
                || asks_by_kind
                || self.include_all.is_some_and(|f| f.0)),
            order: match self.order {
                Some(SortOrder::Desc) => Order::Desc,
                _ => Order::Asc,
            },
            limit: self.limit.map_or(DEFAULT_PAGE, |l| l.0),
            offset: self.offset.map_or(0, |o| o.0),
            after: self.cursor.map(|c| c.0),
            by_seq_from: None,
        }
    }
}

/// Query parameters of the live stream: the event list's filters, and where to start.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    correlation_id: Option<String>,
    event_type: Option<String>,
    event_category: Option<String>,
    event_outcome: Option<String>,
    severity: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    actor_id: Option<String>,
    namespace: Option<String>,
    submitted_by: Option<String>,
    /// As on the event list.
    #[param(value_type = Option<String>, pattern = r"^[a-zA-Z0-9_]+$")]
    detail_key: Option<DetailKey>,
    detail_value: Option<String>,
    /// Only events whose `event_timestamp` is at or after this (RFC 3339, or a duration back).
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// Only events whose `event_timestamp` is at or before this.
    #[param(value_type = Option<String>)]
    until: Option<TimeParam>,
    /// Start after this seq (`0`: from the first event); the `Last-Event-ID` header, which a
    /// reconnecting client sends, takes precedence. Without either: the events stored from now on.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub after_seq: Option<NonNegative>,
}

impl StreamParams {
    /// The query of the stream's next page after `seq`, `limit` events at most.
    pub(crate) fn to_query(&self, now: DateTime<Utc>, seq: i64, limit: u32) -> EventQuery {
        let list = EventListParams {
            correlation_id: self.correlation_id.clone(),
            event_type: self.event_type.clone(),
            event_category: self.event_category.clone(),
            event_outcome: self.event_outcome.clone(),
            severity: self.severity.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            actor_id: self.actor_id.clone(),
            namespace: self.namespace.clone(),
            submitted_by: self.submitted_by.clone(),
            detail_key: self.detail_key.clone(),
            detail_value: self.detail_value.clone(),
            since: self.since,
            until: self.until,
            ..EventListParams::default()
        };
        let every = Answers {
            kind: crate::http::answers::WriteAnswers::Native,
            asked: false,
        };
        EventQuery {
            by_seq_from: Some(seq),
            limit,
            ..list.to_query(now, every)
        }
    }
}

/// A `detail_key`: letters, digits and `_` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailKey(String);

impl<'de> Deserialize<'de> for DetailKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let plain =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if plain {
            Ok(DetailKey(text))
        } else {
            Err(params::refuse(
                audit_model::Reason::InvalidFormat,
                "must be letters, digits and _ only",
            ))
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

/// Where a page is in the whole answer (the platform's `pagination`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub limit: u32,
    pub offset: u64,
    /// Every event matching the query (the cursor aside).
    pub total: i64,
    /// More events follow this page.
    pub has_more: bool,
}

/// One page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventView>,
    pub pagination: Pagination,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query the log.
#[utoipa::path(
    get, path = "/api/v1/audit/events", tag = "events",
    params(EventListParams, ("Prefer" = Option<String>, Header, description = "`answers=native`: every event; `answers=platform`: only those the platform's decoder reads (default: the `api.write_answers` setting)")),
    responses(
        (status = 200, description = "One page of events", body = EventPage),
        (status = 400, description = "A bad parameter, named in `field_errors`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    answers: Answers,
    Params(params): Params<EventListParams>,
) -> Result<Response, ApiError> {
    let query = params.to_query(Utc::now(), answers);
    let limit = query.limit as usize;
    let mut fetch = query.clone();
    fetch.limit += 1;
    let mut data = state.store.query(&fetch).await.map_err(ApiError::from)?;
    let has_more = data.len() > limit;
    // A page that holds every match from its offset on, with no cursor, tells the total
    // itself (most correlations fit one page); any other page's total is counted.
    let total = if !has_more && query.after.is_none() && (query.offset == 0 || !data.is_empty()) {
        (query.offset + data.len() as u64) as i64
    } else {
        state
            .store
            .count_matching(&query)
            .await
            .map_err(ApiError::from)?
    };
    let next_cursor = if has_more {
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
    let page = EventPage {
        data: data.into_iter().map(EventView::from).collect(),
        pagination: Pagination {
            limit: query.limit,
            offset: query.offset,
            total,
            has_more,
        },
        next_cursor,
    };
    Ok(answers.mark(Json(page).into_response()))
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
        params::read::<EventListParams>(query).map(|p| {
            let native = Answers {
                kind: crate::http::answers::WriteAnswers::Native,
                asked: true,
            };
            p.to_query(now, native)
        })
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
