//! The tamper-evident log: the Merkle tree over `audit_events` in `seq` order, extended and
//! signed by the [`Checkpointer`], and read back as inclusion and consistency proofs.
//!
//! The tree is built behind the ingest path, as certificate-transparency logs integrate behind
//! their sequencer: a write is acknowledged when its row (with `seq` and leaf hash) is committed;
//! within a checkpoint interval (1 s by default) the checkpointer reads the new leaf hashes in
//! `seq` order, writes the subtree roots they complete, and stores a signed checkpoint over the
//! new size, in one transaction. Ingest pays nothing for the tree; an event is provable from the
//! first checkpoint that covers it. Because the log head's lock makes commits happen in `seq`
//! order, a leaf visible at `seq = n` means every `seq < n` is visible too; a gap is corruption
//! and stops the checkpointer (it never signs over a hole).
//!
//! Nodes of levels 1 to 3 are not stored: each covers at most 8 leaves, and is folded from their
//! leaf hashes (stored with the events) whenever a proof or the checkpointer needs it. Storing
//! every node would insert one node row per event; from level 4 up it is one per 8 events, and a
//! proof reads at most 14 leaf hashes more.
//!
//! Several replicas may run checkpointers: nodes are deterministic (inserted if absent) and a
//! checkpoint of a size already stored is not replaced, so they agree whoever wins.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use audit_model::checkpoint::{Checkpoint, CheckpointSigner};
use audit_model::merkle::Hash;
use audit_model::subtrees::{self, NodeId};
use chrono::Utc;

use crate::evidence::witness::FileWitness;
use crate::shutdown::Shutdown;
use crate::store::{CheckpointQuery, RenderedRow, StoreError, StoredCheckpoint, TreeStore};

/// Leaves integrated per checkpoint at most, by default (a backlog becomes several checkpoints).
pub const LEAVES_PER_CHECKPOINT: i64 = 50_000;

/// The lowest level of the tree whose nodes are stored (level 0, the leaves, is always stored).
pub const LOWEST_STORED_LEVEL: u8 = 4;

/// Whether a node is folded from its leaves instead of read.
fn folded(id: &NodeId) -> bool {
    (1..LOWEST_STORED_LEVEL).contains(&id.level)
}

/// Reads nodes: stored ones as stored, the lowest levels folded from their leaf hashes. A node
/// that cannot be read (or one of whose leaves is missing) is absent from the answer.
async fn read_nodes(
    store: &dyn TreeStore,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, StoreError> {
    let mut wanted: HashSet<NodeId> = HashSet::with_capacity(ids.len());
    for id in ids {
        if folded(id) {
            wanted.extend(id.range().map(|leaf| NodeId::new(0, leaf)));
        } else {
            wanted.insert(*id);
        }
    }
    let wanted: Vec<NodeId> = wanted.into_iter().collect();
    let mut found = store.nodes(&wanted).await?;
    for id in ids.iter().filter(|id| folded(id)) {
        let leaves: Option<Vec<Hash>> = id
            .range()
            .map(|leaf| found.get(&NodeId::new(0, leaf)).copied())
            .collect();
        if let Some(leaves) = leaves {
            found.insert(*id, audit_model::merkle::root(&leaves));
        }
    }
    Ok(found)
}

/// Signs checkpoints over the log as it grows.
pub struct Checkpointer {
    store: Arc<dyn TreeStore>,
    signer: Arc<CheckpointSigner>,
    witness: Option<FileWitness>,
    /// The C2SP witnesses told of every checkpoint stored.
    cosigning: Option<Arc<super::cosign::Cosigning>>,
    /// Leaves integrated per checkpoint at most.
    chunk: i64,
}

impl Checkpointer {
    pub fn new(store: Arc<dyn TreeStore>, signer: Arc<CheckpointSigner>) -> Checkpointer {
        Checkpointer {
            store,
            signer,
            witness: None,
            cosigning: None,
            chunk: LEAVES_PER_CHECKPOINT,
        }
    }

    /// Integrates at most `leaves` (at least 1) per checkpoint instead of
    /// [`LEAVES_PER_CHECKPOINT`].
    pub fn with_chunk(mut self, leaves: i64) -> Checkpointer {
        self.chunk = leaves.max(1);
        self
    }

    /// Also appends every checkpoint this checkpointer stores to a witness file.
    pub fn with_witness(mut self, witness: FileWitness) -> Checkpointer {
        self.witness = Some(witness);
        self
    }

    /// Also tells the C2SP witnesses' tasks of every checkpoint stored (they submit it without
    /// the checkpointer waiting).
    pub fn with_cosigning(mut self, cosigning: Arc<super::cosign::Cosigning>) -> Checkpointer {
        self.cosigning = Some(cosigning);
        self
    }

    /// Integrates up to a chunk of new leaves and stores a signed checkpoint over them. `None`
    /// when there is nothing new.
    pub async fn advance(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self.integrate().await?.map(|(c, _)| c))
    }

    /// [`Checkpointer::advance`], also telling whether it took a whole chunk (so that more
    /// leaves may be waiting).
    async fn integrate(&self) -> Result<Option<(StoredCheckpoint, bool)>, StoreError> {
        let latest = self
            .store
            .checkpoints(&CheckpointQuery::Latest)
            .await?
            .pop();
        let size = latest.as_ref().map_or(0, |c| c.tree_size);
        // Taken before the leaves are read: the checkpoint covers what was committed by then.
        let timestamp = audit_model::timestamp::truncate(Utc::now());
        let leaves = self.store.leaf_hashes(size, self.chunk).await?;
        if leaves.is_empty() {
            return Ok(None);
        }
        for (i, (seq, _)) in leaves.iter().enumerate() {
            if *seq != size + 1 + i as i64 {
                return Err(StoreError::Corrupt(format!(
                    "the log has a gap: seq {} follows {}",
                    seq,
                    size + i as i64
                )));
            }
        }
        let frontier_ids = subtrees::frontier(size as u64);
        let stored = read_nodes(self.store.as_ref(), &frontier_ids).await?;
        let frontier: Vec<Hash> = frontier_ids
            .iter()
            .map(|id| {
                stored.get(id).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!("tree node {id:?} of checkpoint {size} is missing"))
                })
            })
            .collect::<Result<_, _>>()?;
        let hashes: Vec<Hash> = leaves.iter().map(|(_, h)| *h).collect();
        let extension = subtrees::extend(size as u64, &frontier, &hashes);
        let frontier_hashes: Vec<Hash> = extension.frontier.iter().map(|(_, h)| *h).collect();
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_string(),
            tree_size: size as u64 + hashes.len() as u64,
            root_hash: subtrees::range_root(&frontier_hashes),
            timestamp,
        };
        let stored = StoredCheckpoint {
            tree_size: checkpoint.tree_size as i64,
            root_hash: checkpoint.root_hash,
            signed_at: checkpoint.timestamp,
            origin: checkpoint.origin.clone(),
            key_id: self.signer.key_id(),
            note: self.signer.sign(&checkpoint),
        };
        let kept: Vec<(NodeId, Hash)> = extension
            .created
            .into_iter()
            .filter(|(id, _)| !folded(id))
            .collect();
        let ours = self.store.add_checkpoint(&kept, &stored).await?;
        metrics::gauge!(crate::metrics::TREE_SIZE).set(stored.tree_size as f64);
        metrics::gauge!(crate::metrics::CHECKPOINT_TIMESTAMP)
            .set(stored.signed_at.timestamp_millis() as f64 / 1000.0);
        if let (true, Some(witness)) = (ours, &self.witness) {
            // The checkpoint stands either way; a gap in the witness only weakens it.
            if let Err(error) = witness.record(&stored).await {
                metrics::counter!(crate::metrics::WITNESS_FAILURES).increment(1);
                tracing::error!(%error, tree_size = stored.tree_size, "cannot witness a checkpoint");
            }
        }
        if let Some(cosigning) = &self.cosigning {
            cosigning.signed(stored.tree_size);
        }
        let whole_chunk = hashes.len() as i64 == self.chunk;
        Ok(Some((stored, whole_chunk)))
    }

    /// Covers the leaves committed when it starts: one checkpoint, or one per chunk while a
    /// backlog fills whole chunks. Leaves committed meanwhile wait for the next tick; chasing
    /// them would sign a checkpoint per ingest batch under steady load.
    pub async fn tick(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut last = None;
        while let Some((c, whole_chunk)) = self.integrate().await? {
            last = Some(c);
            if !whole_chunk {
                break;
            }
        }
        Ok(last)
    }

    /// Advances until every committed leaf is covered; the last checkpoint stored, if any. Meant
    /// for when ingest has stopped (shutdown, tools): under steady writes it would not end.
    pub async fn catch_up(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut last = None;
        while let Some(c) = self.advance().await? {
            last = Some(c);
        }
        Ok(last)
    }

    /// Checkpoints every `interval` what is new by then (see [`Checkpointer::tick`]), until
    /// shutdown begins (after which the caller makes the final one, once the ingest queue is
    /// flushed).
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.begun() => return,
            }
            if let Err(error) = self.tick().await {
                metrics::counter!(crate::metrics::CHECKPOINT_FAILURES).increment(1);
                tracing::error!(%error, "cannot sign a checkpoint");
            }
        }
    }
}

/// The leaf hashes of consecutive leaves, from `first` on, and every node of the tree that
/// lies over them alone, computed once (about as many hashes as leaves).
pub struct KnownLeaves {
    /// `levels[l][k]` is the node of level `l` and index `starts[l] + k`.
    levels: Vec<Vec<Hash>>,
    starts: Vec<u64>,
}

impl KnownLeaves {
    /// The leaves `first..first + leaves.len()` and the nodes over them.
    pub fn new(first: u64, leaves: Vec<Hash>) -> KnownLeaves {
        let end = first + leaves.len() as u64;
        let (mut levels, mut starts) = (vec![leaves], vec![first]);
        loop {
            let level = levels.len() as u32;
            let (below, below_start) = (&levels[levels.len() - 1], starts[starts.len() - 1]);
            // Nodes of this level whose whole leaf range is held.
            let start = first.div_ceil(1 << level);
            let nodes: Vec<Hash> = (start..)
                .take_while(|index| (index + 1) << level <= end)
                .map(|index| {
                    let left = (2 * index - below_start) as usize;
                    audit_model::merkle::node_hash(&below[left], &below[left + 1])
                })
                .collect();
            if nodes.is_empty() {
                return KnownLeaves { levels, starts };
            }
            levels.push(nodes);
            starts.push(start);
        }
    }

    /// The hash of `id`, when it lies over the held leaves.
    pub fn node(&self, id: NodeId) -> Option<Hash> {
        let level = usize::from(id.level);
        let offset = id.index.checked_sub(*self.starts.get(level)?)?;
        self.levels[level]
            .get(usize::try_from(offset).ok()?)
            .copied()
    }
}

/// The leaves of a page of the log read in seq order (purged rows keep theirs), when its rows
/// are consecutive.
pub fn page_leaves(page: &[RenderedRow]) -> Option<KnownLeaves> {
    let first = page.first()?.seq;
    let consecutive = page
        .iter()
        .enumerate()
        .all(|(k, row)| row.seq == first + k as i64);
    let leaves = page.iter().map(|row| Hash::from(row.leaf_hash)).collect();
    (consecutive && first >= 1).then(|| KnownLeaves::new(first as u64 - 1, leaves))
}

/// The hashes of `ranges` (each an RFC 9162 subtree range) read from the stored tree, or
/// computed from `known` leaves where they lie over them.
async fn range_hashes(
    store: &dyn TreeStore,
    ranges: &[Range<u64>],
    known: Option<&KnownLeaves>,
) -> Result<Vec<Hash>, StoreError> {
    // The proofs of a page's leaves share most of their ranges (all but the lowest levels):
    // each distinct range is decomposed and hashed once.
    let key = |r: &Range<u64>| (r.start, r.end);
    let mut distinct: Vec<Range<u64>> = ranges.to_vec();
    distinct.sort_unstable_by_key(key);
    distinct.dedup();
    let plans: Vec<Vec<NodeId>> = distinct
        .iter()
        .map(|r| subtrees::decompose(r.clone()))
        .collect();
    let mut wanted: Vec<NodeId> = plans.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    // Nodes over the leaves the caller holds are computed; only the others are read.
    let (local, wanted): (Vec<NodeId>, Vec<NodeId>) = match known {
        Some(known) => wanted.into_iter().partition(|id| known.node(*id).is_some()),
        None => (Vec::new(), wanted),
    };
    let mut found = read_nodes(store, &wanted).await?;
    if let Some(known) = known {
        found.extend(
            local
                .into_iter()
                .filter_map(|id| Some((id, known.node(id)?))),
        );
    }
    let hashes = plans
        .iter()
        .map(|plan| {
            let parts =
                plan.iter()
                    .map(|id| {
                        found.get(id).copied().ok_or_else(|| {
                            StoreError::Corrupt(format!("tree node {id:?} is missing"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            Ok(subtrees::range_root(&parts))
        })
        .collect::<Result<Vec<Hash>, StoreError>>()?;
    Ok(ranges
        .iter()
        .map(|r| {
            let at = distinct
                .binary_search_by_key(&key(r), key)
                .expect("every range is among the distinct ones");
            hashes[at]
        })
        .collect())
}

/// The inclusion proof of leaf `index` (seq − 1) in the tree of `size` leaves.
pub async fn inclusion_proof(
    store: &dyn TreeStore,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    range_hashes(store, &subtrees::inclusion_ranges(index, size), None).await
}

/// The inclusion proofs of many leaves in the tree of `size` leaves, reading each stored node once.
pub async fn inclusion_proofs(
    store: &dyn TreeStore,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Vec<Hash>>, StoreError> {
    inclusion_proofs_over(store, indices, size, None).await
}

/// [`inclusion_proofs`] where the caller holds the leaf hashes of a run of the log (a page it
/// read): the nodes over them are computed from them, and only the rest of each path is read.
pub async fn inclusion_proofs_over(
    store: &dyn TreeStore,
    indices: &[u64],
    size: u64,
    known: Option<&KnownLeaves>,
) -> Result<Vec<Vec<Hash>>, StoreError> {
    let plans: Vec<Vec<Range<u64>>> = indices
        .iter()
        .map(|i| subtrees::inclusion_ranges(*i, size))
        .collect();
    let all: Vec<Range<u64>> = plans.iter().flatten().cloned().collect();
    let mut hashes = range_hashes(store, &all, known).await?.into_iter();
    Ok(plans
        .iter()
        .map(|plan| hashes.by_ref().take(plan.len()).collect())
        .collect())
}

/// The consistency proof from tree size `first` to `second`.
pub async fn consistency_proof(
    store: &dyn TreeStore,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, StoreError> {
    range_hashes(store, &subtrees::consistency_ranges(first, second), None).await
}

#[cfg(test)]
mod tests {
    use super::KnownLeaves;
    use audit_model::merkle::{leaf_hash, root, Hash};
    use audit_model::subtrees::NodeId;

    #[test]
    fn known_leaves_hold_exactly_the_nodes_over_them_with_their_roots() {
        let all: Vec<Hash> = (0u32..200).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for (first, len) in [
            (0u64, 200usize),
            (3, 1),
            (5, 0),
            (7, 100),
            (64, 64),
            (13, 131),
        ] {
            let known = KnownLeaves::new(first, all[first as usize..first as usize + len].to_vec());
            let end = first + len as u64;
            for level in 0u8..9 {
                for index in 0u64..(256 >> level) {
                    let id = NodeId::new(level, index);
                    let range = id.range();
                    let inside = range.start >= first && range.end <= end;
                    match known.node(id) {
                        Some(hash) => {
                            assert!(inside, "{id:?} is not over {first}..{end}");
                            let leaves = &all[range.start as usize..range.end as usize];
                            assert_eq!(hash, root(leaves), "{id:?}");
                        }
                        None => assert!(!inside, "{id:?} over {first}..{end} is missing"),
                    }
                }
            }
        }
    }
}
