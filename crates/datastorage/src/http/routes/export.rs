//! `GET /api/v1/audit/export`: the export of `datastorage export`, streamed.
//!
//! The response is produced page by page while it is sent, so it has no size cap and holds one
//! page in memory. `X-Audit-Tree-Size` names the checkpoint every proof is against; an
//! interrupted download resumes with `tree_size` set to it and `after_seq` to the last seq
//! received, and proves against the same checkpoint. A failure mid-stream aborts the response
//! (the client sees a broken transfer, never a short file that looks complete).

use audit_model::{Problem, ProblemKind, Reason};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::evidence::export::{Export, ExportError, ExportFilter, ExportFormat};
use crate::http::params::{self, NonNegative, Params, TimeParam};
use crate::http::problem::ApiError;
use crate::http::AppState;
use serde::Deserialize;
use utoipa::IntoParams;

/// The header naming the tree size the export proves against.
pub const TREE_SIZE_HEADER: &str = "x-audit-tree-size";

/// Query parameters of an export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Events at or after this time (RFC 3339, or a duration back such as 24h)
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// Events before this time
    #[param(value_type = Option<String>)]
    until: Option<TimeParam>,
    /// Only this correlation's events
    correlation_id: Option<String>,
    /// Prove against the checkpoint of this size (default: the latest)
    #[param(value_type = Option<i64>, minimum = 0)]
    tree_size: Option<NonNegative>,
    /// Resume after this seq (with the tree_size of the interrupted export)
    #[param(value_type = Option<i64>, minimum = 0)]
    after_seq: Option<NonNegative>,
    /// ndjson (default; verifiable offline with `datastorage verify --export`) or csv
    #[param(value_type = Option<String>, pattern = "^(ndjson|csv)$")]
    format: Option<FormatParam>,
}

/// `ndjson` or `csv`.
#[derive(Debug, Clone, Copy)]
struct FormatParam(ExportFormat);

impl<'de> Deserialize<'de> for FormatParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ExportFormat::parse(&text)
            .map(FormatParam)
            .ok_or_else(|| params::refuse(Reason::InvalidValue, "must be ndjson or csv"))
    }
}

/// Exports events with their inclusion proofs against one signed checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "tamper-evidence",
    params(ExportParams),
    responses(
        (status = 200, description = "The export, streamed; X-Audit-Tree-Size names its checkpoint", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such checkpoint (or none signed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (since, until) = (
        params.since.map(|t| t.resolve(now)),
        params.until.map(|t| t.resolve(now)),
    );
    let correlation_id = params.correlation_id;
    let tree_size = params.tree_size.map(|n| n.0);
    let after_seq = params.after_seq.map_or(0, |n| n.0 as i64);
    let format = params.format.map_or(ExportFormat::Ndjson, |f| f.0);
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
