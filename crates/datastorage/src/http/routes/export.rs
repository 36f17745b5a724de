//! `GET /api/v1/audit/export`: the export of `datastorage export`, streamed.
//!
//! The response is produced page by page while it is sent, so it has no size cap and holds a
//! few pages in memory (two read ahead, one proven, one encoded). `X-Audit-Tree-Size` names the
//! checkpoint every proof is against; an interrupted download resumes with `tree_size` set to it
//! and `after_seq` to the last seq received, and proves against the same checkpoint. A failure
//! mid-stream aborts the response (the client sees a broken transfer, never a short file that
//! looks complete).

use audit_model::{Problem, ProblemKind, Reason};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::evidence::export::{Export, ExportError, ExportFilter, ExportFormat};
use crate::http::answers::Answers;
use crate::http::authn::{Caller, ClientAddress};
use crate::http::params::{self, Flag, NonNegative, Params, TimeParam};
use crate::http::problem::ApiError;
use crate::http::proxy_user::ProxyUser;
use crate::http::AppState;
use crate::store::{EventFilter, EventQuery, Order};
use axum::Json;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
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
    /// Only events of this type (this and the filters below apply to every format)
    event_type: Option<String>,
    /// Only events of this outcome
    event_outcome: Option<String>,
    /// Only events of this actor
    actor_id: Option<String>,
    /// Only events about this kind of resource
    resource_type: Option<String>,
    /// Only events about this resource
    resource_id: Option<String>,
    /// Only events of this namespace
    namespace: Option<String>,
    /// Only events of this severity
    severity: Option<String>,
    /// Only events this principal wrote
    submitted_by: Option<String>,
    /// Prove against the checkpoint of this size (default: the latest)
    #[param(value_type = Option<i64>, minimum = 0)]
    tree_size: Option<NonNegative>,
    /// Resume after this seq (with the tree_size of the interrupted export)
    #[param(value_type = Option<i64>, minimum = 0)]
    after_seq: Option<NonNegative>,
    /// `ndjson` (streamed with proofs; verifiable offline with `datastorage verify --export`)
    /// or `csv`. Without it: `ndjson` on the native answers (`Prefer: answers=native`), the
    /// platform's signed export object on the platform's answers. (`json` asks for that object:
    /// the platform's exportAuditEvents, with the parameters its document gives, described in
    /// its document and docs/compatibility.md, not here.)
    #[param(value_type = Option<String>, pattern = "^(ndjson|csv)$")]
    format: Option<FormatParam>,
    // The platform's exportAuditEvents parameters (its document describes them).
    #[param(ignore)]
    start_time: Option<TimeParam>,
    #[param(ignore)]
    end_time: Option<TimeParam>,
    /// Only events of this category (also a parameter of the platform's signed export)
    event_category: Option<String>,
    #[param(ignore)]
    offset: Option<NonNegative>,
    #[param(ignore)]
    limit: Option<ExportLimit>,
    #[param(ignore)]
    include_detached_signature: Option<Flag>,
    #[param(ignore)]
    redact_pii: Option<Flag>,
}

impl ExportParams {
    /// The filters on an event's fields that were given: the filter, its parameter's name, the
    /// value.
    fn field_filters(&self) -> Vec<(EventFilter, &'static str, String)> {
        [
            (EventFilter::EventType, "event_type", &self.event_type),
            (
                EventFilter::EventCategory,
                "event_category",
                &self.event_category,
            ),
            (
                EventFilter::EventOutcome,
                "event_outcome",
                &self.event_outcome,
            ),
            (EventFilter::ActorId, "actor_id", &self.actor_id),
            (
                EventFilter::ResourceType,
                "resource_type",
                &self.resource_type,
            ),
            (EventFilter::ResourceId, "resource_id", &self.resource_id),
            (EventFilter::Namespace, "namespace", &self.namespace),
            (EventFilter::Severity, "severity", &self.severity),
            (EventFilter::SubmittedBy, "submitted_by", &self.submitted_by),
        ]
        .into_iter()
        .filter_map(|(f, name, v)| Some((f, name, v.clone()?)))
        .collect()
    }
}

/// `ndjson`, `csv`, or the platform's `json`.
#[derive(Debug, Clone, Copy)]
enum FormatParam {
    Stream(ExportFormat),
    Signed,
}

impl<'de> Deserialize<'de> for FormatParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "json" {
            return Ok(FormatParam::Signed);
        }
        ExportFormat::parse(&text)
            .map(FormatParam::Stream)
            .ok_or_else(|| params::refuse(Reason::InvalidValue, "must be ndjson, csv or json"))
    }
}

/// The most events of one signed export: 1 to 10 000.
#[derive(Debug, Clone, Copy)]
struct ExportLimit(u32);

impl<'de> Deserialize<'de> for ExportLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_SIGNED_EVENTS).contains(n))
            .map(ExportLimit)
            .ok_or_else(|| params::refuse(Reason::OutOfRange, "must be between 1 and 10000"))
    }
}

/// The most events of one signed export (the platform's), and the default.
const MAX_SIGNED_EVENTS: u32 = 10_000;
const DEFAULT_SIGNED_EVENTS: u32 = 1_000;

/// Exports events with their inclusion proofs against one signed checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "tamper-evidence",
    params(ExportParams),
    responses(
        (status = 200, description = "The export, streamed (X-Audit-Tree-Size names its checkpoint); or, without `format` on the platform's answers, the platform's signed export object", content((String = "application/x-ndjson"), (String = "text/csv"), (Object = "application/json"))),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such checkpoint (or none signed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    answers: Answers,
    user: ProxyUser,
    Caller(caller): Caller,
    ClientAddress(address): ClientAddress,
    uri: axum::http::Uri,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    // Recorded once the export is ready to answer (a refused one changes nothing), before a
    // byte of it is sent.
    let response = answer(&state, answers, user, params).await?;
    crate::access::record(
        &state.queue,
        (crate::access::EXPORT, "export"),
        &caller,
        address,
        serde_json::json!({"selection": uri.query().unwrap_or_default()}),
    )
    .await?;
    Ok(response)
}

/// The export the parameters ask for, not yet streamed.
async fn answer(
    state: &AppState,
    answers: Answers,
    user: ProxyUser,
    params: ExportParams,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (since, until) = (
        params.since.or(params.start_time).map(|t| t.resolve(now)),
        params.until.or(params.end_time).map(|t| t.resolve(now)),
    );
    // Without a format: the stream on the native answers, or when a stream's parameter
    // (`tree_size`, `after_seq`) asks for it; the platform's signed object otherwise.
    let wants_stream = params.tree_size.is_some() || params.after_seq.is_some();
    let format = match params.format {
        Some(f) => f,
        None if answers.native() || wants_stream => FormatParam::Stream(ExportFormat::Ndjson),
        None => FormatParam::Signed,
    };
    let format = match format {
        FormatParam::Signed => return signed(state, &params, user, (since, until), now).await,
        FormatParam::Stream(f) => f,
    };
    let signed_only = [
        ("offset", params.offset.is_some()),
        ("limit", params.limit.is_some()),
        (
            "include_detached_signature",
            params.include_detached_signature.is_some(),
        ),
        ("redact_pii", params.redact_pii.is_some()),
    ];
    if let Some((name, _)) = signed_only.iter().find(|(_, given)| *given) {
        return Err(ApiError::field(
            name,
            "only with format=json (the signed export)",
        ));
    }
    let correlation_id = params.correlation_id.clone();
    let tree_size = params.tree_size.map(|n| n.0);
    let after_seq = params.after_seq.map_or(0, |n| n.0 as i64);
    let fields = params
        .field_filters()
        .into_iter()
        .map(|(f, _, v)| (f, v))
        .collect();
    let filter = ExportFilter {
        since,
        until,
        correlation_id,
        after_seq,
        fields,
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

/// The platform's export: one signed JSON object (`AuditExportResponse`) of at most 10 000
/// events, each re-hashed against the leaf hash the log recorded (`hash_chain_valid`), with
/// `event_hash` (its leaf hash) and `previous_event_hash` (the leaf hash of the event before it
/// in the export) standing for the public implementation's hash chain. The signature is
/// Ed25519 by the checkpoint key over the SHA-256 of the `events` array as sent (see
/// `CheckpointVerifier::verify_export`); without a key (checkpoints disabled) it is empty and
/// `signature_algorithm` says `none`.
async fn signed(
    state: &AppState,
    params: &ExportParams,
    user: ProxyUser,
    (since, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::field("start_time", "must not be after end_time"));
        }
    }
    if params.tree_size.is_some() || params.after_seq.is_some() {
        let name = if params.tree_size.is_some() {
            "tree_size"
        } else {
            "after_seq"
        };
        return Err(ApiError::field(
            name,
            "only with format=ndjson or csv (the streamed export)",
        ));
    }
    let redact = params.redact_pii.is_some_and(|f| f.0);
    let exported_by = match user.who(None) {
        Ok(by) => by,
        Err(refused) => return Ok(refused.into_response()),
    };
    // The same filters as the streamed export (the platform's document names correlation_id
    // and event_category; the others narrow it the same way rather than being ignored).
    let fields = params.field_filters();
    let mut filters: Vec<(EventFilter, String)> =
        fields.iter().map(|(f, _, v)| (*f, v.clone())).collect();
    if let Some(c) = &params.correlation_id {
        filters.push((EventFilter::CorrelationId, c.clone()));
    }
    let limit = params.limit.map_or(DEFAULT_SIGNED_EVENTS, |l| l.0);
    let offset = params.offset.map_or(0, |o| o.0);
    let query = EventQuery {
        filters,
        since,
        until,
        order: Order::Asc,
        limit,
        offset,
        ..EventQuery::default()
    };
    let stored = state.store.query(&query).await.map_err(ApiError::from)?;
    let held: std::collections::HashSet<String> = state
        .store
        .holds(None, false)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|h| h.correlation_id)
        .collect();
    let mut events = Vec::with_capacity(stored.len());
    let mut valid = 0u64;
    let mut previous: Option<String> = None;
    for s in &stored {
        let e = &s.event;
        let recorded = s.leaf_hash.to_hex();
        let intact = e.leaf_hash() == s.leaf_hash;
        valid += u64::from(intact);
        let data = if redact {
            crate::derived::redaction::event_data(e.event_data())
        } else {
            e.event_data().clone()
        };
        let mut item = json!({
            "seq": s.seq,
            "event_id": e.event_id(),
            "version": e.event_version(),
            "event_type": e.event_type(),
            "event_timestamp": audit_model::timestamp::format(&e.event_timestamp()),
            "event_category": e.event_category(),
            "event_action": e.event_action(),
            "event_outcome": e.event_outcome().as_str(),
            "correlation_id": e.correlation_id(),
            "event_data": data,
            "event_hash": recorded,
            "hash_chain_valid": intact,
            "legal_hold": held.contains(e.correlation_id()),
        });
        if let Some(p) = previous.replace(recorded) {
            item["previous_event_hash"] = json!(p);
        }
        events.push(item);
    }
    let events = Value::Array(events);
    let digest: [u8; 32] = Sha256::digest(serde_json::to_vec(&events).unwrap_or_default()).into();
    let (signature, algorithm, fingerprint) = match &state.signer {
        Some(signer) => (signer.sign_export(&digest), "Ed25519", signer.key_id()),
        None => (String::new(), "none", String::new()),
    };
    let total = stored.len() as u64;
    let exported_by = if redact {
        crate::derived::redaction::email(&exported_by)
    } else {
        exported_by
    };
    let mut filters = json!({"offset": offset, "limit": limit});
    for (key, value) in [
        (
            "start_time",
            since.map(|t| audit_model::timestamp::format(&t)),
        ),
        (
            "end_time",
            until.map(|t| audit_model::timestamp::format(&t)),
        ),
        ("correlation_id", params.correlation_id.clone()),
    ] {
        if let Some(v) = value {
            filters[key] = json!(v);
        }
    }
    for (_, key, value) in fields {
        filters[key] = json!(value);
    }
    let body = json!({
        "export_metadata": {
            "export_timestamp": audit_model::timestamp::format(&audit_model::timestamp::truncate(now)),
            "export_format": "json",
            "query_filters": filters,
            "total_events": total,
            "signature": signature,
            "signature_algorithm": algorithm,
            "certificate_fingerprint": fingerprint,
            "exported_by": exported_by,
            "events_sha256": hex::encode(digest),
        },
        "events": events,
        "hash_chain_verification": {
            "total_events_verified": total,
            "valid_chain_events": valid,
            "broken_chain_events": total - valid,
            "chain_integrity_percentage": if total == 0 { 100.0 } else { valid as f64 * 100.0 / total as f64 },
            "verification_timestamp": audit_model::timestamp::format(&audit_model::timestamp::truncate(now)),
        },
    });
    Ok(Json(body).into_response())
}
