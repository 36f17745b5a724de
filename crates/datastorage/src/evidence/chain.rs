//! One correlation's events checked against a signed checkpoint (the latest by default): each event's content
//! re-hashed and compared with its stored leaf hash, and its inclusion proof verified against
//! the signed root (what `POST /api/v1/audit/verify-chain` answers).

use audit_model::checkpoint::CheckpointVerifier;
use audit_model::merkle::{verify_inclusion, Hash};
use audit_model::StoredEvent;
use uuid::Uuid;

use super::tree;
use crate::store::{
    CheckpointQuery, Cursor, EventFilter, EventQuery, LogStore, Order, StoreError, StoredCheckpoint,
};

/// Events read per page of the correlation.
const PAGE: u32 = 1000;

/// Why one event did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFault {
    /// The content does not hash to the stored leaf hash.
    ContentChanged,
    /// The inclusion proof does not reach the signed root.
    NotInTree,
}

impl ChainFault {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainFault::ContentChanged => "content_changed",
            ChainFault::NotInTree => "not_in_tree",
        }
    }

    /// What the fault means, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            ChainFault::ContentChanged => {
                "the stored content no longer hashes to the leaf hash the log recorded"
            }
            ChainFault::NotInTree => {
                "the event's inclusion proof does not reach the signed checkpoint's root"
            }
        }
    }
}

/// One event that did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFailure {
    pub event_id: Uuid,
    pub seq: i64,
    pub fault: ChainFault,
}

/// The verdict on one correlation's events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainVerdict {
    pub total_events: u64,
    pub verified_events: u64,
    /// Events stored after the checkpoint (the next one covers them); not failures.
    pub pending_events: u64,
    pub failures: Vec<ChainFailure>,
    /// The size of the checkpoint checked against (0 when there is none yet).
    pub tree_size: u64,
    pub checkpoint: Option<StoredCheckpoint>,
}

impl ChainVerdict {
    /// No failures.
    pub fn is_valid(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Why a chain could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The latest stored checkpoint's signature does not verify with the service's key.
    #[error("the latest checkpoint does not verify: {0}")]
    CheckpointInvalid(String),
}

/// Checks every event of `correlation_id` against the checkpoint `against` picks (the latest,
/// or one of a given size).
pub async fn verify_chain(
    store: &dyn LogStore,
    verifier: &CheckpointVerifier,
    correlation_id: &str,
    against: &CheckpointQuery,
) -> Result<ChainVerdict, ChainError> {
    let checkpoint = store.checkpoints(against).await?.into_iter().next();
    let root = match &checkpoint {
        Some(c) => Some(signed_root(verifier, c)?),
        None => None,
    };
    let mut verdict = ChainVerdict {
        tree_size: root.map_or(0, |(size, _)| size),
        checkpoint,
        ..ChainVerdict::default()
    };
    let mut after = None;
    loop {
        let page = store.query(&page_after(correlation_id, after)).await?;
        let Some(last) = page.last() else { break };
        after = Some(Cursor {
            event_timestamp: last.event.event_timestamp(),
            seq: last.seq,
        });
        check_page(store, &page, root, &mut verdict).await?;
    }
    verdict.failures.sort_by_key(|f| f.seq);
    Ok(verdict)
}

/// The tree size and root hash the checkpoint's signature vouches for.
fn signed_root(
    verifier: &CheckpointVerifier,
    checkpoint: &StoredCheckpoint,
) -> Result<(u64, Hash), ChainError> {
    let note = verifier
        .verify(&checkpoint.note)
        .map_err(|e| ChainError::CheckpointInvalid(e.to_string()))?;
    Ok((note.tree_size, note.root_hash))
}

/// The correlation's events after `after`, in log order.
fn page_after(correlation_id: &str, after: Option<Cursor>) -> EventQuery {
    EventQuery {
        // Every event of the correlation, the service's own (a legal hold) among them.
        filters: vec![(EventFilter::CorrelationId, correlation_id.to_string())],
        order: Order::Asc,
        limit: PAGE,
        after,
        ..EventQuery::default()
    }
}

/// One page of events: each re-hashed, then (when the checkpoint covers it) proven included,
/// the proofs of the whole page read at once (each stored node once).
async fn check_page(
    store: &dyn LogStore,
    page: &[StoredEvent],
    root: Option<(u64, Hash)>,
    verdict: &mut ChainVerdict,
) -> Result<(), StoreError> {
    let fail = |stored: &StoredEvent, fault| ChainFailure {
        event_id: stored.event.event_id(),
        seq: stored.seq,
        fault,
    };
    let mut covered = Vec::with_capacity(page.len());
    for stored in page {
        verdict.total_events += 1;
        let leaf = stored.event.leaf_hash();
        if leaf != stored.leaf_hash {
            verdict
                .failures
                .push(fail(stored, ChainFault::ContentChanged));
        } else if root.is_some_and(|(size, _)| stored.seq as u64 <= size) {
            covered.push((stored, leaf));
        } else {
            verdict.pending_events += 1;
        }
    }
    let Some((tree_size, root)) = root else {
        return Ok(());
    };
    let indices: Vec<u64> = covered.iter().map(|(s, _)| s.seq as u64 - 1).collect();
    let proofs = tree::inclusion_proofs(store, &indices, tree_size).await?;
    for (((stored, leaf), index), proof) in covered.iter().zip(&indices).zip(&proofs) {
        if verify_inclusion(leaf.as_bytes(), *index, tree_size, proof, &root) {
            verdict.verified_events += 1;
        } else {
            verdict.failures.push(fail(stored, ChainFault::NotInTree));
        }
    }
    Ok(())
}
