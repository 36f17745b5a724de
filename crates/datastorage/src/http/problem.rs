//! Turning errors into RFC 7807 responses, with the request id as the problem's `instance`.

use audit_model::{FieldErrors, Problem, ProblemKind};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ingest::IngestError;
use crate::store::{LogEntry, StoreError};

tokio::task_local! {
    /// The id of the request being handled (set by the request-id middleware; a header value,
    /// whose clone shares its bytes).
    pub static REQUEST_ID: HeaderValue;
}

/// Seconds a client should wait before retrying when the service is unavailable.
const RETRY_AFTER_SECONDS: u32 = 5;

/// An error answer of the API (boxed: errors are the rare path, results stay small).
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError(Box::new(problem))
    }
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Problem::new(kind, detail).into()
    }

    /// A 400 listing every refused field.
    pub fn validation(errors: &FieldErrors) -> Self {
        crate::metrics::record_validation_failures(errors);
        Problem::new(
            ProblemKind::ValidationError,
            format!("{} field(s) failed validation", errors.len()),
        )
        .with_field_errors(errors.messages())
        .into()
    }

    /// A 400 about one field or parameter.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut errors = FieldErrors::default();
        errors.add(field, audit_model::Reason::InvalidValue, message);
        Self::validation(&errors)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }

    /// The event, or 404 when there is none and 410 when the retention purge removed its content.
    pub fn live_event(
        entry: Option<LogEntry>,
        event_id: uuid::Uuid,
    ) -> Result<audit_model::StoredEvent, ApiError> {
        match entry {
            Some(LogEntry::Event(e)) => Ok(*e),
            Some(LogEntry::Purged(p)) => Err(Self::new(
                ProblemKind::Gone,
                format!(
                    "the content of audit event {event_id} (seq {}) was purged at {} when its retention ended; its leaf stays in the log",
                    p.seq,
                    audit_model::timestamp::format(&p.purged_at)
                ),
            )),
            None => Err(Self::not_found(format!(
                "no audit event with event_id {event_id}"
            ))),
        }
    }
}

impl From<StoreError> for ApiError {
    /// A 503 that says which part is unavailable and never what the database said: its message
    /// goes to the service's log with the request id, not to the client.
    fn from(e: StoreError) -> Self {
        let request_id = REQUEST_ID
            .try_with(|id| id.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        tracing::error!(request_id, error = %e, kind = e.label(), "the store failed a request");
        ApiError::new(
            ProblemKind::ServiceUnavailable,
            "the database is unavailable; retry shortly (the request id names the failure in the service's log)",
        )
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        ApiError::new(ProblemKind::ServiceUnavailable, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = *self.0;
        if problem.instance.is_none() {
            problem.instance = REQUEST_ID
                .try_with(|id| format!("urn:request-id:{}", id.to_str().unwrap_or_default()))
                .ok();
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = problem
                .extensions
                .get("retry_after_seconds")
                .and_then(|v| v.as_u64())
                .unwrap_or(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
