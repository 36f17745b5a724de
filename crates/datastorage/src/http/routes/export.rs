//! `GET /api/v1/audit/export`: the export of `datastorage export`, streamed.
//!
//! The response is produced page by page while it is sent, so it has no size cap and holds one
//! page in memory. `X-Audit-Tree-Size` names the checkpoint every proof is against; an
//! interrupted download resumes with `tree_size` set to it and `after_seq` to the last seq
//! received, and proves against the same checkpoint. A failure mid-stream aborts the response
//! (the client sees a broken transfer, never a short file that looks complete).

use std::collections::HashMap;

use audit_model::{FieldErrors, Problem, ProblemKind, Reason};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::evidence::export::{Export, ExportError, ExportFilter, ExportFormat};
use crate::http::params;
use crate::http::problem::ApiError;
use crate::http::AppState;

/// The header naming the tree size the export proves against.
pub const TREE_SIZE_HEADER: &str = "x-audit-tree-size";

/// Exports events with their inclusion proofs against one signed checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "tamper-evidence",
    params(
        ("since" = Option<String>, Query, description = "Events at or after this time (RFC 3339, or a duration back such as 24h)"),
        ("until" = Option<String>, Query, description = "Events before this time"),
        ("correlation_id" = Option<String>, Query, description = "Only this correlation's events"),
        ("tree_size" = Option<i64>, Query, minimum = 0, description = "Prove against the checkpoint of this size (default: the latest)"),
        ("after_seq" = Option<i64>, Query, minimum = 0, description = "Resume after this seq (with the tree_size of the interrupted export)"),
        ("format" = Option<String>, Query, pattern = "^(ndjson|csv)$", description = "ndjson (default; verifiable offline with `datastorage verify --export`) or csv"),
    ),
    responses(
        (status = 200, description = "The export, streamed; X-Audit-Tree-Size names its checkpoint", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such checkpoint (or none signed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = FieldErrors::default();
    let (since, until) = params::time_range(&mut q, &mut errors, Utc::now());
    let correlation_id = q.remove("correlation_id");
    let mut number = |key: &str, errors: &mut FieldErrors| {
        let text = q.remove(key)?;
        text.parse::<i64>().ok().filter(|n| *n >= 0).or_else(|| {
            errors.add(key, Reason::InvalidFormat, "must be a non-negative integer");
            None
        })
    };
    let tree_size = number("tree_size", &mut errors).map(|n| n as u64);
    let after_seq = number("after_seq", &mut errors).unwrap_or(0);
    let format = match q.remove("format") {
        None => Some(ExportFormat::Ndjson),
        Some(text) => ExportFormat::parse(&text).or_else(|| {
            errors.add("format", Reason::InvalidValue, "must be ndjson or csv");
            None
        }),
    };
    params::reject_unknown(q, &mut errors);
    let (Some(format), true) = (format, errors.is_empty()) else {
        return Err(ApiError::validation(&errors));
    };
    let filter = ExportFilter {
        since,
        until,
        correlation_id,
        after_seq,
    };
    let export = Export::open(state.store.clone(), filter, tree_size, format)
        .await
        .map_err(|e| match e {
            ExportError::NoCheckpoint(_) => ApiError::not_found(e.to_string()),
            ExportError::Store(e) => ApiError::from(e),
            ExportError::Write(e) => ApiError::new(ProblemKind::Internal, e.to_string()),
        })?;
    let size = export.tree_size();
    let chunks = futures::stream::try_unfold(export, |mut export| async move {
        Ok::<_, ExportError>(export.next_chunk().await?.map(|chunk| (chunk, export)))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(TREE_SIZE_HEADER, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-export-{size}.{}\"",
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
