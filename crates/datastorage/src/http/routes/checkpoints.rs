//! Tamper evidence over HTTP: the public key, signed checkpoints, inclusion and consistency
//! proofs. Hashes are lower-case hex; the signed note is returned verbatim so a client can check
//! it with the public key and nothing else.

use audit_model::{FieldErrors, ObjectReader, Problem, ProblemKind, Reason, StoredEvent};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::evidence::chain::{self, ChainError};
use crate::evidence::tree;
use crate::http::params::{self, Limit, NonNegative, Params, PositionCursor, TimeParam};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::store::{CheckpointQuery, StoredCheckpoint};

/// The key that signs checkpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// The signed-note verifier key, `<name>+<key id>+<base64(0x01 || Ed25519 public key)>`.
    pub public_key: String,
    pub key_id: String,
    /// The log's name, the first line of every checkpoint.
    pub origin: String,
    /// Always `ed25519`.
    pub algorithm: &'static str,
}

/// A signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub tree_size: i64,
    /// Hex of the RFC 9162 root hash.
    pub root_hash: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    pub origin: String,
    pub key_id: String,
    /// The C2SP signed note.
    pub note: String,
}

impl From<StoredCheckpoint> for CheckpointView {
    fn from(c: StoredCheckpoint) -> Self {
        CheckpointView {
            tree_size: c.tree_size,
            root_hash: hex::encode(c.root_hash),
            timestamp: c.signed_at,
            origin: c.origin,
            key_id: c.key_id,
            note: c.note,
        }
    }
}

/// A page of checkpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointPage {
    pub data: Vec<CheckpointView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// An event with its inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventProof {
    pub event: StoredEvent,
    /// `seq - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Hex hashes, RFC 9162 §2.1.3 order.
    pub inclusion_proof: Vec<String>,
    pub checkpoint: CheckpointView,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Hex hashes, RFC 9162 §2.1.4 order.
    pub proof: Vec<String>,
}

fn hexes(hashes: Vec<audit_model::merkle::Hash>) -> Vec<String> {
    hashes.into_iter().map(hex::encode).collect()
}

fn disabled() -> ApiError {
    ApiError::not_found("checkpoints are disabled on this service")
}

/// One checkpoint, its note with the witnesses' cosignatures appended.
async fn one(
    state: &AppState,
    query: CheckpointQuery,
) -> Result<Option<StoredCheckpoint>, ApiError> {
    let Some(checkpoint) = state
        .store
        .checkpoints(&query)
        .await
        .map_err(ApiError::from)?
        .pop()
    else {
        return Ok(None);
    };
    Ok(Some(cosigned(state, checkpoint).await?))
}

/// The checkpoint with its note carrying the witnesses' cosignatures (when there are witnesses).
async fn cosigned(
    state: &AppState,
    mut checkpoint: StoredCheckpoint,
) -> Result<StoredCheckpoint, ApiError> {
    if state.witnesses.is_some() {
        checkpoint.note = crate::evidence::cosign::cosigned_note(state.store.as_ref(), &checkpoint)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(checkpoint)
}

/// The checkpoints' public key.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints/public-key", tag = "tamper-evidence",
    responses(
        (status = 200, description = "The verifier key", body = PublicKey),
        (status = 404, description = "Checkpoints are disabled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn public_key(State(state): State<AppState>) -> Result<Json<PublicKey>, ApiError> {
    let verifier = state.verifier.as_ref().ok_or_else(disabled)?;
    Ok(Json(PublicKey {
        public_key: verifier.to_text(),
        key_id: verifier.key_id(),
        origin: verifier.name().to_string(),
        algorithm: "ed25519",
    }))
}

/// Which newest checkpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// `true`: the newest checkpoint cosigned by the configured witness quorum (404 until one
    /// is); default the newest signed one.
    pub witnessed: Option<bool>,
}

/// The newest signed checkpoint, or the newest the witness quorum cosigned; the note carries
/// the witnesses' cosignatures.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints/latest", tag = "tamper-evidence",
    params(LatestParams),
    responses(
        (status = 200, description = "The checkpoint", body = CheckpointView),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No checkpoint yet (or none cosigned by the quorum yet, or no witnesses configured)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn latest(
    State(state): State<AppState>,
    Params(params): Params<LatestParams>,
) -> Result<Json<CheckpointView>, ApiError> {
    if params.witnessed == Some(true) {
        let size = witnessed_size(&state).await?;
        return one(&state, CheckpointQuery::Size(size))
            .await?
            .map(|c| Json(c.into()))
            .ok_or_else(|| ApiError::not_found("the witnessed checkpoint is missing"));
    }
    one(&state, CheckpointQuery::Latest)
        .await?
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))
}

/// The tree size of the newest checkpoint the configured witness quorum cosigned; 404 when
/// no witnesses are configured or none is cosigned by the quorum yet.
async fn witnessed_size(state: &AppState) -> Result<i64, ApiError> {
    let set = state.witnesses.as_ref().ok_or_else(|| {
        ApiError::not_found("no witnesses are configured (checkpoints.witnesses)")
    })?;
    state
        .store
        .witnessed(&set.names(), set.quorum)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no checkpoint is cosigned by {} of the witnesses yet",
                set.quorum
            ))
        })
}

/// 404 unless the checkpoint of `size` is cosigned by the configured witness quorum.
async fn require_witnessed(state: &AppState, size: i64) -> Result<(), ApiError> {
    let set = state.witnesses.as_ref().ok_or_else(|| {
        ApiError::not_found("no witnesses are configured (checkpoints.witnesses)")
    })?;
    let names = set.names();
    let cosigned = state
        .store
        .cosignatures(size)
        .await
        .map_err(ApiError::from)?
        .iter()
        .filter(|c| names.contains(&c.witness))
        .count();
    if cosigned < set.quorum {
        return Err(ApiError::not_found(format!(
            "the checkpoint of tree size {size} is cosigned by {cosigned} of the witnesses, not {}",
            set.quorum
        )));
    }
    Ok(())
}

/// Query parameters of the checkpoint list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckpointListParams {
    /// Signed at or after (RFC 3339 or a duration back, e.g. 24h)
    #[param(value_type = Option<String>)]
    since: Option<TimeParam>,
    /// 1..1000, default 100
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<Limit>,
    /// `next_cursor` of the previous page (the last checkpoint's tree size)
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,18}$")]
    cursor: Option<PositionCursor>,
    /// Accepted and ignored, as the other lists take it (a checkpoint has one time).
    #[serde(rename = "until")]
    #[param(ignore)]
    _until: Option<serde::de::IgnoredAny>,
}

/// Checkpoints in tree-size order.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints", operation_id = "list_checkpoints", tag = "tamper-evidence",
    params(CheckpointListParams),
    responses(
        (status = 200, description = "A page of checkpoints", body = CheckpointPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Params(params): Params<CheckpointListParams>,
) -> Result<Json<CheckpointPage>, ApiError> {
    let since = params.since.map(|t| t.resolve(Utc::now()));
    let limit = Limit::or_default(params.limit);
    let after_size = params.cursor.map_or(0, |c| c.0);
    let mut data = state
        .store
        .checkpoints(&CheckpointQuery::Page {
            since,
            after_size,
            limit: i64::from(limit) + 1,
        })
        .await
        .map_err(ApiError::from)?;
    let more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_cursor = more
        .then(|| data.last().map(|c| PositionCursor::encode(c.tree_size)))
        .flatten();
    Ok(Json(CheckpointPage {
        data: data.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// The query parameter of an event's proof.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    /// Prove against the checkpoint of this size (default: the latest)
    #[param(value_type = Option<u64>)]
    tree_size: Option<NonNegative>,
}

/// An event, its inclusion proof and the checkpoint it proves against.
#[utoipa::path(get, path = "/api/v1/audit/events/{event_id}/proof", tag = "tamper-evidence",
    params(
        ("event_id" = Uuid, Path, description = "The event's id"),
        ProofParams,
    ),
    responses(
        (status = 200, description = "The proof", body = EventProof),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event or checkpoint, or the event is not covered yet", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Its content was purged by retention", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn event_proof(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventProof>, ApiError> {
    // The path and the query are both checked before either is refused, so every bad
    // parameter is named at once.
    let query = params::read::<ProofParams>(query.as_deref().unwrap_or_default());
    let mut errors = query.as_ref().err().cloned().unwrap_or_default();
    let id = Uuid::parse_str(&id).ok().or_else(|| {
        errors.add("event_id", Reason::InvalidFormat, "must be a UUID");
        None
    });
    let (Some(id), Ok(params)) = (id, query) else {
        return Err(ApiError::validation(&errors));
    };
    let size = params.tree_size.map(|n| n.0);
    let event = ApiError::live_event(state.store.get(id).await.map_err(ApiError::from)?, id)?;
    let checkpoint = match size {
        Some(n) => one(&state, CheckpointQuery::Size(n as i64))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no checkpoint of tree size {n}")))?,
        None => match one(&state, CheckpointQuery::Latest).await? {
            // The newest a read replica has may not cover an event read from the primary.
            Some(latest) if latest.tree_size < event.seq => {
                one(&state, CheckpointQuery::Covering(event.seq))
                    .await?
                    .unwrap_or(latest)
            }
            Some(latest) => latest,
            None => return Err(ApiError::not_found("no checkpoint has been signed yet")),
        },
    };
    if event.seq > checkpoint.tree_size {
        return Err(ApiError::not_found(format!(
            "event seq {} is not covered by the checkpoint of size {} yet; ask again after the next checkpoint",
            event.seq, checkpoint.tree_size
        )));
    }
    let index = (event.seq - 1) as u64;
    let tree_size = checkpoint.tree_size as u64;
    let proof = tree::inclusion_proof(state.store.as_ref(), index, tree_size)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(EventProof {
        event,
        leaf_index: index,
        tree_size,
        inclusion_proof: hexes(proof),
        checkpoint: checkpoint.into(),
    }))
}

/// The query parameters of a consistency proof (both required).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The smaller tree size
    #[param(value_type = i64, minimum = 0, required = true)]
    from: Option<NonNegative>,
    /// The larger tree size, at most the latest checkpoint's
    #[param(value_type = i64, minimum = 0, required = true)]
    to: Option<NonNegative>,
}

/// A consistency proof between two tree sizes.
#[utoipa::path(get, path = "/api/v1/audit/consistency", tag = "tamper-evidence",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "Bad or missing sizes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such proof: `to` beyond the latest checkpoint, or `from` above `to`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn consistency(
    State(state): State<AppState>,
    Params(params): Params<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    // The document marks both required, and `Params` refuses a query without them.
    let (Some(NonNegative(from)), Some(NonNegative(to))) = (params.from, params.to) else {
        return Err(ApiError::field("from", "from and to are required"));
    };
    let latest = one(&state, CheckpointQuery::Latest)
        .await?
        .map_or(0, |c| c.tree_size as u64);
    // Sizes the log has not reached, or a log that would have shrunk, have no proof: not found.
    if from > to {
        return Err(ApiError::not_found(format!(
            "no consistency proof from tree size {from} to the smaller {to}"
        )));
    }
    if to > latest {
        return Err(ApiError::not_found(format!(
            "no checkpoint of tree size {to}: the latest is {latest}"
        )));
    }
    let proof = tree::consistency_proof(state.store.as_ref(), from, to)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: hexes(proof),
    }))
}

/// What to check.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyChainRequest {
    pub correlation_id: String,
    /// Check against the checkpoint of this tree size (default the newest signed one).
    pub tree_size: Option<i64>,
    /// `true`: check against the newest checkpoint the witness quorum cosigned (with
    /// `tree_size`: that checkpoint, which the quorum must have cosigned).
    pub witnessed: Option<bool>,
}

/// One event that did not verify.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainFailure {
    pub event_id: Uuid,
    pub seq: i64,
    /// `content_changed` (the content does not hash to the stored leaf) or `not_in_tree` (the
    /// inclusion proof does not reach the signed root).
    pub reason: &'static str,
}

/// The verdict on one correlation's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyChainResponse {
    pub correlation_id: String,
    /// No failures (events newer than the checkpoint are `pending`, not failures).
    pub is_valid: bool,
    pub total_events: u64,
    pub verified_events: u64,
    /// Events stored after the checkpoint; covered by the next one.
    pub pending_events: u64,
    pub failures: Vec<ChainFailure>,
    pub tree_size: u64,
    pub checkpoint: Option<CheckpointView>,
    /// The failures as the platform names them (`tampered_events`).
    pub tampered_events: Vec<TamperedEvent>,
    /// When the verdict was reached.
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub verification_time: chrono::DateTime<chrono::Utc>,
    /// The verdict in words.
    pub message: String,
}

/// An event that did not verify, in the platform's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TamperedEvent {
    pub event_id: uuid::Uuid,
    /// What is wrong with it (`content_changed`, `not_in_tree`) and what that means.
    pub message: String,
}

/// Reads a verify-chain request; every bad field is reported at once.
pub(crate) fn read_verify_chain(
    body: serde_json::Value,
) -> Result<VerifyChainRequest, FieldErrors> {
    let mut reader = ObjectReader::new(body)?;
    let correlation_id = reader.string("correlation_id", audit_model::MAX_SHORT);
    let tree_size = reader.opt_int("tree_size", 1, i64::MAX);
    let witnessed = reader.opt_bool("witnessed");
    let errors = reader.finish();
    match correlation_id {
        Some(correlation_id) if errors.is_empty() => Ok(VerifyChainRequest {
            correlation_id,
            tree_size,
            witnessed,
        }),
        _ => Err(errors),
    }
}

/// Checks every event of a correlation against a signed checkpoint (the newest, the one of
/// `tree_size`, or with `witnessed` the newest the witness quorum cosigned): its content
/// re-hashed, its inclusion proof verified against the signed root.
#[utoipa::path(post, path = "/api/v1/audit/verify-chain", tag = "tamper-evidence",
    request_body(content = Object, description = "`correlation_id` (the schema is made from `read_verify_chain`)"),
    responses(
        (status = 200, description = "The verdict, valid or not", body = VerifyChainResponse),
        (status = 400, description = "A bad request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Checkpoints are disabled, no checkpoint of that tree size, or none cosigned by the witness quorum", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_chain(
    State(state): State<AppState>,
    crate::http::authn::Caller(caller): crate::http::authn::Caller,
    crate::http::authn::ClientAddress(address): crate::http::authn::ClientAddress,
    crate::http::extract::JsonBody(body): crate::http::extract::JsonBody,
) -> Result<Json<VerifyChainResponse>, ApiError> {
    let request = read_verify_chain(body).map_err(|e| ApiError::validation(&e))?;
    let verifier = state.verifier.clone().ok_or_else(disabled)?;
    let against = match (request.tree_size, request.witnessed) {
        (Some(size), Some(true)) => {
            require_witnessed(&state, size).await?;
            CheckpointQuery::Size(size)
        }
        (Some(size), _) => CheckpointQuery::Size(size),
        (None, Some(true)) => CheckpointQuery::Size(witnessed_size(&state).await?),
        (None, _) => CheckpointQuery::Latest,
    };
    if let CheckpointQuery::Size(size) = against {
        let found = state.store.checkpoints(&against).await;
        if found.map_err(ApiError::from)?.is_empty() {
            return Err(ApiError::not_found(format!(
                "no checkpoint of tree size {size}"
            )));
        }
    }
    let verdict = chain::verify_chain(
        state.store.as_ref(),
        &verifier,
        &request.correlation_id,
        &against,
    )
    .await
    .map_err(|e| match e {
        ChainError::Store(e) => ApiError::from(e),
        e @ ChainError::CheckpointInvalid(_) => {
            ApiError::new(ProblemKind::ServiceUnavailable, e.to_string())
        }
    })?;
    // Recorded once the check is done (a refused one changes nothing), before it is answered.
    crate::access::record(
        &state.queue,
        (crate::access::VERIFY_CHAIN, "verify_chain"),
        &caller,
        address,
        serde_json::json!({"correlation_id": request.correlation_id}),
    )
    .await?;
    let tampered_events = verdict
        .failures
        .iter()
        .map(|f| TamperedEvent {
            event_id: f.event_id,
            message: format!(
                "{} (seq {}): {}",
                f.fault.as_str(),
                f.seq,
                f.fault.meaning()
            ),
        })
        .collect();
    let message = if verdict.is_valid() {
        format!(
            "all {} events verified ({} against the signed checkpoint of size {}, {} stored after it)",
            verdict.total_events, verdict.verified_events, verdict.tree_size, verdict.pending_events
        )
    } else {
        format!(
            "{} of {} events failed verification",
            verdict.failures.len(),
            verdict.total_events
        )
    };
    Ok(Json(VerifyChainResponse {
        tampered_events,
        verification_time: audit_model::timestamp::truncate(chrono::Utc::now()),
        message,
        correlation_id: request.correlation_id,
        is_valid: verdict.is_valid(),
        total_events: verdict.total_events,
        verified_events: verdict.verified_events,
        pending_events: verdict.pending_events,
        failures: verdict
            .failures
            .iter()
            .map(|f| ChainFailure {
                event_id: f.event_id,
                seq: f.seq,
                reason: f.fault.as_str(),
            })
            .collect(),
        tree_size: verdict.tree_size,
        checkpoint: match verdict.checkpoint {
            Some(c) => Some(cosigned(&state, c).await?.into()),
            None => None,
        },
    }))
}
