//! `audit-witness`: the witness side of C2SP `tlog-witness`.
//!
//! For each log it is configured with (a checkpoint verifier key; its name is the log's
//! origin), the witness keeps the newest checkpoint it cosigned ([`state`]). `POST
//! /add-checkpoint` brings an old size, a consistency proof and a new checkpoint; the witness
//! cosigns it (C2SP `tlog-cosignature`, Ed25519 `cosignature/v1`) only when the log signed it
//! and it is consistent with the checkpoint cosigned before, and records it before answering.
//! The answers are the specification's:
//!
//! | case | answer |
//! |---|---|
//! | a body that is not an old size, proof lines, a blank line and a checkpoint; more than 63 proof lines; the old size above the checkpoint's | 400 |
//! | the checkpoint's origin is not a configured log | 404 |
//! | no signature of the log's key verifies | 403 |
//! | the old size is not the size the witness cosigned last (or 0 if never) | 409, `text/x.tlog.size`: that size |
//! | the same size as cosigned last with another root hash | 409, `text/x.tlog.size` |
//! | the consistency proof does not verify | 422 |
//! | otherwise | 200: the cosignature line |
//!
//! A refused checkpoint the log did sign (409 for a different root, 422) is kept as evidence
//! of a fork ([`state::Refusal`]).

pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use audit_model::checkpoint::{split_note, CheckpointVerifier, TreeHead};
use audit_model::cosignature::Cosigner;
use audit_model::merkle::{empty_root, verify_consistency, Hash};
use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use state::{LogState, Refusal, State};

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `Content-Type` of a 409's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Metric names.
pub mod metrics_names {
    /// `add-checkpoint` requests by `outcome` (`cosigned`, `bad_request`, `unknown_log`,
    /// `bad_signature`, `conflict`, `inconsistent`, `error`).
    pub const REQUESTS: &str = "witness_add_checkpoint_requests_total";
    /// The size of the newest checkpoint cosigned, per `origin`.
    pub const COSIGNED_SIZE: &str = "witness_cosigned_tree_size";

    /// Gives the witness's families their HELP text (once its recorder is installed).
    pub fn describe() {
        metrics::describe_counter!(
            REQUESTS,
            "add-checkpoint requests, by outcome (cosigned, bad_request, unknown_log, bad_signature, conflict, inconsistent, error)."
        );
        metrics::describe_gauge!(
            COSIGNED_SIZE,
            "Tree size of the newest checkpoint cosigned, by log origin."
        );
    }
}

/// A witness: its key, the logs it knows, its state, and who may submit.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, CheckpointVerifier>,
    state: State,
    submitters: Option<Submitters>,
}

/// The bearer tokens allowed to submit checkpoints, by their SHA-256 (the witness holds no
/// token). The C2SP protocol authenticates the log by its signature; tokens in front of it keep
/// strangers from spending the witness's work and filling its refusal evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitters {
    digests: Vec<[u8; 32]>,
}

impl Submitters {
    /// Reads a file of SHA-256 hex digests, one per line (`#` starts a comment).
    pub fn parse(text: &str) -> anyhow::Result<Submitters> {
        let digests = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(l, &mut digest)
                    .map_err(|_| anyhow::anyhow!("{l:?} is not a SHA-256 in hex"))?;
                Ok(digest)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!digests.is_empty(), "no token digest is listed");
        Ok(Submitters { digests })
    }

    /// Whether `authorization` is `Bearer <a listed token>`, compared in constant time with
    /// every entry.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = sha2::Sha256::digest(token.trim().as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for d in &self.digests {
            found |= d.ct_eq(&digest);
        }
        found.into()
    }
}

/// Why a checkpoint is not cosigned: the status and the body of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    BadRequest(String),
    UnknownLog(String),
    BadSignature(String),
    /// The old size is not the witness's; the answer carries the witness's size.
    Conflict {
        size: u64,
        why: String,
    },
    Inconsistent(String),
    Internal(String),
}

impl Refused {
    fn outcome(&self) -> &'static str {
        match self {
            Refused::BadRequest(_) => "bad_request",
            Refused::UnknownLog(_) => "unknown_log",
            Refused::BadSignature(_) => "bad_signature",
            Refused::Conflict { .. } => "conflict",
            Refused::Inconsistent(_) => "inconsistent",
            Refused::Internal(_) => "error",
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let text = |status: StatusCode, why: String| {
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{why}\n"),
            )
                .into_response()
        };
        match self {
            Refused::BadRequest(why) => text(StatusCode::BAD_REQUEST, why),
            Refused::UnknownLog(why) => text(StatusCode::NOT_FOUND, why),
            Refused::BadSignature(why) => text(StatusCode::FORBIDDEN, why),
            Refused::Conflict { size, .. } => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                format!("{size}\n"),
            )
                .into_response(),
            Refused::Inconsistent(why) => text(StatusCode::UNPROCESSABLE_ENTITY, why),
            Refused::Internal(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        }
    }
}

/// An `add-checkpoint` request body, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission<'a> {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub note: &'a str,
}

/// Parses `old <size>\n`, up to 63 base64 hash lines, a blank line, the checkpoint.
pub fn parse_submission(body: &str) -> Result<Submission<'_>, Refused> {
    let bad = |why: &str| Refused::BadRequest(why.to_string());
    let (head, note) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("expected an old size line, proof lines, a blank line, a checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    if old != "0" && old.starts_with('0') || old.starts_with('+') {
        return Err(bad("the old size has leading zeroes or a sign"));
    }
    let old_size: u64 = old
        .parse()
        .map_err(|_| bad("the old size is not a decimal number"))?;
    let proof = lines
        .map(|l| {
            B64.decode(l)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))
        })
        .collect::<Result<Vec<Hash>, _>>()?;
    if proof.len() > MAX_PROOF_LINES {
        return Err(bad("more than 63 consistency proof lines"));
    }
    Ok(Submission {
        old_size,
        proof,
        note,
    })
}

impl Witness {
    /// A witness with `cosigner`'s key for the logs of `log_keys`, remembering in `state`.
    pub fn new(cosigner: Cosigner, log_keys: Vec<CheckpointVerifier>, state: State) -> Witness {
        Witness {
            cosigner,
            logs: log_keys
                .into_iter()
                .map(|k| (k.name().to_string(), k))
                .collect(),
            state,
            submitters: None,
        }
    }

    /// Only these bearer tokens may submit (401 otherwise).
    pub fn with_submitters(mut self, submitters: Submitters) -> Witness {
        self.submitters = Some(submitters);
        self
    }

    pub fn name(&self) -> &str {
        self.cosigner.name()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Handles one `add-checkpoint` body; the cosignature line on success.
    pub async fn add_checkpoint(&self, body: &str) -> Result<String, Refused> {
        let result = self.check_and_cosign(body).await;
        let outcome = match &result {
            Ok(_) => "cosigned",
            Err(refused) => refused.outcome(),
        };
        metrics::counter!(metrics_names::REQUESTS, "outcome" => outcome).increment(1);
        result
    }

    async fn check_and_cosign(&self, body: &str) -> Result<String, Refused> {
        let submission = parse_submission(body)?;
        let (note_body, _) =
            split_note(submission.note).map_err(|e| Refused::BadRequest(e.to_string()))?;
        let head = TreeHead::parse(note_body).map_err(|e| Refused::BadRequest(e.to_string()))?;
        let Some(log) = self.logs.get(head.origin) else {
            return Err(Refused::UnknownLog(format!(
                "no log with origin {:?} is known here",
                head.origin
            )));
        };
        log.verify_note(submission.note)
            .map_err(|e| Refused::BadSignature(e.to_string()))?;
        if submission.old_size > head.tree_size {
            return Err(Refused::BadRequest(format!(
                "the old size {} is above the checkpoint's size {}",
                submission.old_size, head.tree_size
            )));
        }
        let internal = |e: anyhow::Error| Refused::Internal(format!("the witness's state: {e}"));
        let known = self.state.get(head.origin).await.map_err(internal)?;
        let known_size = known.map_or(0, |k| k.tree_size);
        if submission.old_size != known_size {
            return Err(Refused::Conflict {
                size: known_size,
                why: format!("the witness cosigned size {known_size} last"),
            });
        }
        let new = LogState {
            tree_size: head.tree_size,
            root_hash: head.root_hash,
        };
        let evidence = |reason: String| Refusal {
            origin: head.origin.to_string(),
            old_size: submission.old_size,
            tree_size: head.tree_size,
            reason,
            request: body.to_string(),
        };
        if let Some(k) = known.filter(|k| k.tree_size == head.tree_size) {
            if k.root_hash != head.root_hash {
                let why = format!(
                    "size {} was cosigned with another root hash: the log forked",
                    k.tree_size
                );
                self.keep(evidence(why.clone())).await;
                return Err(Refused::Conflict {
                    size: known_size,
                    why,
                });
            }
        } else {
            let old_root = known.map_or_else(empty_root, |k| k.root_hash);
            if submission.old_size == 0 && !submission.proof.is_empty() {
                return Err(Refused::BadRequest(
                    "the proof must be empty from size 0".into(),
                ));
            }
            if !verify_consistency(
                submission.old_size,
                head.tree_size,
                &old_root,
                &head.root_hash,
                &submission.proof,
            ) {
                let why = format!(
                    "the consistency proof from size {} to {} does not verify: the log forked or the proof is wrong",
                    submission.old_size, head.tree_size
                );
                self.keep(evidence(why.clone())).await;
                return Err(Refused::Inconsistent(why));
            }
        }
        if !self
            .state
            .advance(head.origin, known, new)
            .await
            .map_err(internal)?
        {
            // Another request advanced the log since this one was checked.
            let now = self.state.get(head.origin).await.map_err(internal)?;
            return Err(Refused::Conflict {
                size: now.map_or(0, |k| k.tree_size),
                why: "another checkpoint was cosigned meanwhile".into(),
            });
        }
        metrics::gauge!(metrics_names::COSIGNED_SIZE, "origin" => head.origin.to_string())
            .set(head.tree_size as f64);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Ok(self.cosigner.cosign(note_body, now))
    }

    async fn keep(&self, refusal: Refusal) {
        tracing::error!(
            origin = %refusal.origin,
            old_size = refusal.old_size,
            tree_size = refusal.tree_size,
            reason = %refusal.reason,
            "refused a checkpoint the log signed"
        );
        if let Err(error) = self.state.refused(&refusal).await {
            tracing::error!(%error, "cannot keep the refused checkpoint");
        }
    }
}

/// The witness's HTTP interface: `POST /add-checkpoint`, health, metrics.
pub fn router(
    witness: Arc<Witness>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { text }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

async fn add_checkpoint(
    AxumState(witness): AxumState<Arc<Witness>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    if let Some(submitters) = &witness.submitters {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !submitters.allows(authorization) {
            metrics::counter!(metrics_names::REQUESTS, "outcome" => "unauthorized").increment(1);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"audit-witness\"")],
                "a submitter's bearer token is required\n",
            )
                .into_response();
        }
    }
    match witness.add_checkpoint(&body).await {
        Ok(line) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn ready(AxumState(witness): AxumState<Arc<Witness>>) -> Response {
    match witness.state.get("").await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state database: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submissions_parse_as_the_specification_writes_them() {
        let hash = B64.encode([1u8; 32]);
        let body = format!("old 20852014\n{hash}\n{hash}\n\nexample.com/log\n5\n{hash}\n\n— x y\n");
        let s = parse_submission(&body).unwrap();
        assert_eq!((s.old_size, s.proof.len()), (20852014, 2));
        assert!(s.note.starts_with("example.com/log\n"));
        let empty = parse_submission("old 0\n\nexample.com/log\n").unwrap();
        assert_eq!((empty.old_size, empty.proof.len()), (0, 0));
        for bad in [
            "old 01\n\nx\n".to_string(),
            "old -1\n\nx\n".into(),
            "old 1\nnot-base64\n\nx\n".into(),
            "new 1\n\nx\n".into(),
            "old 1\n".into(),
            format!("old 1\n{}\nx\n", format!("{hash}\n").repeat(64)),
        ] {
            assert!(
                matches!(parse_submission(&bad), Err(Refused::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
