//! The verifier: recomputes the log from stored content and checks it against the signed
//! checkpoints, trusting nothing the database says about hashes.
//!
//! It shares no code with the paths it checks (ingest hashing, the checkpointer's tree, the
//! proof API): leaves are recomputed from each row's content with `audit-model`'s canonical form,
//! the tree is rebuilt from those leaves, and every checkpoint's signature is checked with a
//! public key given by the operator (never read from the database). Faults, with the first bad
//! `seq` where the evidence names one:
//!
//! * **content changed**: a row's content no longer hashes to its stored leaf hash;
//! * **row missing**: `seq` has a gap;
//! * **rows reordered**: `received_at` goes backwards between neighbours (rows moved in `seq`)
//!   where no checkpoint the content reproduces fixes their order. The receipt time is taken
//!   under the log head, where the order is decided, so it never steps backwards along `seq`.
//!   Rows appended before that (`received_in_order_from`, recorded by the migration that made
//!   it so) were stamped by each replica's own clock and may step backwards without a fault:
//!   the tree alone proves their order;
//! * **row added**: a row after the latest checkpoint that was received before it (it should be
//!   covered), or received in the future;
//! * **checkpoint forged**: a checkpoint's signature does not verify, or its note disagrees with
//!   its row;
//! * **purged early**: a row's content was removed before its retention ended (the purge
//!   keeps `event_timestamp` and `retention_days` so this can be checked);
//! * **checkpoint inconsistent**: the root rebuilt from the content differs from a signed root.
//!   When content and hashes were rewritten consistently (leaf and every node above it), this is
//!   the only trace: the fault lies after the last checkpoint that still matches, which the
//!   report gives;
//! * **witness mismatch**: a checkpoint in the witness file (see [`crate::evidence::witness`]) is missing
//!   from the database or differs there (the log was rolled back or rewritten); the witnessed
//!   root must still be reproduced by the content.
//!
//! A row purged by retention has no content left to hash: its stored leaf hash stands in for
//! it, so the tree and every checkpoint still verify, and the report counts it as purged.

use std::collections::BTreeMap;
use std::sync::Arc;

use audit_model::checkpoint::CheckpointVerifier;
use audit_model::merkle::Hash;
use audit_model::subtrees;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evidence::pages::Pages;
use crate::evidence::witness::Witnessed;
use crate::store::{CheckpointQuery, LogStore, ScannedLeaf, StoreError, StoredCheckpoint};

/// Rows read per round trip.
const PAGE: i64 = 10_000;

/// Pages read at once.
const READS_AHEAD: usize = 2;

/// The kind of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    ContentChanged,
    RowMissing,
    RowsReordered,
    RowAdded,
    PurgedEarly,
    CheckpointForged,
    CheckpointInconsistent,
    WitnessMismatch,
}

/// One fault found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub fault: Fault,
    /// The first bad seq, where the evidence names one.
    pub seq: Option<i64>,
    pub detail: String,
}

/// What the verifier saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub events: u64,
    /// Rows whose content the retention purge removed (their leaf hashes still verify).
    pub purged: u64,
    /// Rows after the latest checkpoint (not covered by any signature yet).
    pub pending: u64,
    pub checkpoints: u64,
    /// The largest checkpoint whose root the content reproduces.
    pub verified_tree_size: u64,
    /// When the content stops reproducing the signed roots: the first seq that may be bad.
    pub window_start: Option<i64>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty()
    }

    /// The smallest seq a finding names; failing that, the first seq after the last checkpoint
    /// the content still reproduces.
    pub fn first_bad_seq(&self) -> Option<i64> {
        self.findings
            .iter()
            .filter_map(|f| f.seq)
            .min()
            .or(self.window_start)
    }

    fn add(&mut self, fault: Fault, seq: Option<i64>, detail: String) {
        self.findings.push(Finding { fault, seq, detail });
    }
}

/// Two neighbours whose receipt times step backwards along `seq`.
struct Backstep {
    prev_seq: i64,
    seq: i64,
    /// The one that looks out of place.
    bad: i64,
}

impl Backstep {
    /// The row to report as moved. Not when either row was appended before `in_order_from`
    /// (several replicas then stamped receipt times from their own clocks: a step there is how
    /// the log was written), nor when a signed tree of `proven` leaves fixes both rows' places
    /// (it proves their order; a step there can only come from a replica of a version before
    /// `in_order_from`, still writing during a rolling upgrade). When only the earlier row's
    /// place is proven, the later one is out of place.
    fn unproven(&self, proven: i64, in_order_from: i64) -> Option<i64> {
        if self.prev_seq < in_order_from || self.seq <= proven {
            None
        } else if self.bad <= proven {
            Some(self.seq)
        } else {
            Some(self.bad)
        }
    }
}

async fn all_checkpoints(store: &dyn LogStore) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut out = Vec::new();
    loop {
        let after_size = out.last().map_or(-1, |c: &StoredCheckpoint| c.tree_size);
        let page = store
            .checkpoints(&CheckpointQuery::Page {
                since: None,
                after_size,
                limit: 1000,
            })
            .await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Verifies the whole log in `store` against its checkpoints, signed by `key`.
pub async fn verify_store(
    store: &Arc<dyn LogStore>,
    key: &CheckpointVerifier,
) -> Result<Report, StoreError> {
    verify_log(store, key, &[]).await
}

/// Verifies the whole log against its checkpoints and the `witnessed` ones, signed by `key`.
pub async fn verify_log(
    store: &Arc<dyn LogStore>,
    key: &CheckpointVerifier,
    witnessed: &[Witnessed],
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let checkpoints = all_checkpoints(store.as_ref()).await?;
    report.checkpoints = checkpoints.len() as u64;
    let mut signed = signed_roots(&checkpoints, key, &mut report);
    check_witnessed(witnessed, &checkpoints, key, &mut signed, &mut report);
    let mut scan = Scan::new(signed, checkpoints.last().cloned());
    // Pages are read on their own tasks, each row's leaf recomputed from its columns as they
    // arrive, while the rows of the page before are checked: the work spreads over every core.
    let mut pages = Pages::leaves(store.clone(), PAGE, READS_AHEAD);
    while let Some(rows) = pages.next().await? {
        for row in &rows {
            scan.row(row, &mut report);
        }
    }
    scan.finish(store.received_in_order_from().await?, &mut report);
    report.findings.sort_by_key(|f| f.seq.unwrap_or(i64::MAX));
    Ok(report)
}

/// The newest checkpoint the witness `policy` accepts: signed by `key`, and cosigned by the
/// quorum (each cosignature checked against its witness's key; stored cosignature rows are not
/// trusted). `Err` says why none is: a log whose every witnessed checkpoint was rewritten has
/// none. The checkpoint's root is checked against the content by [`verify_log`].
pub async fn witnessed_checkpoint(
    store: &dyn LogStore,
    key: &CheckpointVerifier,
    policy: &audit_model::cosignature::WitnessPolicy,
) -> Result<Result<(i64, Vec<String>), String>, StoreError> {
    let names: Vec<String> = policy
        .witnesses
        .iter()
        .map(|w| w.name().to_string())
        .collect();
    let Some(size) = store.witnessed(&names, policy.quorum).await? else {
        return Ok(Err(format!(
            "no checkpoint is cosigned by {} of the {} witnesses",
            policy.quorum,
            names.len()
        )));
    };
    let Some(checkpoint) = store.checkpoints(&CheckpointQuery::Size(size)).await?.pop() else {
        return Ok(Err(format!("the witnessed checkpoint {size} is missing")));
    };
    let note = super::cosign::cosigned_note(store, &checkpoint).await?;
    if let Err(e) = key.verify(&note) {
        return Ok(Err(format!(
            "the witnessed checkpoint {size} does not verify: {e}"
        )));
    }
    Ok(policy
        .check(&note)
        .map(|by| (size, by))
        .map_err(|e| format!("the checkpoint {size} is {e} (its cosignatures do not verify)")))
}

/// The signed roots by tree size, from the checkpoints whose signature verifies; forged
/// checkpoints are reported and left out.
fn signed_roots(
    checkpoints: &[StoredCheckpoint],
    key: &CheckpointVerifier,
    report: &mut Report,
) -> BTreeMap<u64, Hash> {
    let mut signed = BTreeMap::new();
    for c in checkpoints {
        match key.verify(&c.note) {
            Ok(note) => {
                // What was signed is the truth, whatever the row's columns now say.
                if note.tree_size != c.tree_size as u64 || note.root_hash != c.root_hash {
                    report.add(
                        Fault::CheckpointForged,
                        None,
                        format!(
                            "checkpoint {}: its row disagrees with its signed note",
                            c.tree_size
                        ),
                    );
                }
                signed.insert(note.tree_size, note.root_hash);
            }
            Err(e) => report.add(
                Fault::CheckpointForged,
                None,
                format!("checkpoint {}: {e}", c.tree_size),
            ),
        }
    }
    signed
}

/// Holds the database's checkpoints to the `witnessed` ones, and adds the witnessed roots to
/// `signed` (the content must reproduce them).
fn check_witnessed(
    witnessed: &[Witnessed],
    checkpoints: &[StoredCheckpoint],
    key: &CheckpointVerifier,
    signed: &mut BTreeMap<u64, Hash>,
    report: &mut Report,
) {
    let stored_notes: BTreeMap<i64, &str> = checkpoints
        .iter()
        .map(|c| (c.tree_size, c.note.as_str()))
        .collect();
    for w in witnessed {
        match key.verify(&w.note) {
            Ok(note) => {
                match stored_notes.get(&(note.tree_size as i64)) {
                    Some(stored) if *stored == w.note => {}
                    Some(_) => report.add(
                        Fault::WitnessMismatch,
                        None,
                        format!(
                            "the database's checkpoint {} differs from the witnessed one",
                            note.tree_size
                        ),
                    ),
                    None => report.add(
                        Fault::WitnessMismatch,
                        None,
                        format!(
                            "the witnessed checkpoint {} is missing from the database (rolled back or rewritten)",
                            note.tree_size
                        ),
                    ),
                }
                // The witnessed root is the truth the content must reproduce.
                signed.insert(note.tree_size, note.root_hash);
            }
            Err(e) => report.add(
                Fault::CheckpointForged,
                None,
                format!("witnessed checkpoint {}: {e}", w.tree_size),
            ),
        }
    }
}

/// A row committed while the latest checkpoint was being made may have been received just
/// before it and still be uncovered; older uncovered rows were added behind the log's back.
const PENDING_SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// The pass over the rows in `seq` order: each row's own checks, and the tree rebuilt from
/// their leaves against the signed roots.
struct Scan {
    signed: BTreeMap<u64, Hash>,
    latest: Option<StoredCheckpoint>,
    /// Leaves integrated into the rebuilt tree, and its right edge.
    size: u64,
    frontier: Vec<Hash>,
    /// A row is missing or a signed root was not reproduced: the tree is rebuilt no further.
    tree_broken: bool,
    /// The largest signed size the content reproduces.
    last_good: u64,
    previous_received: Option<(i64, DateTime<Utc>)>,
    before_previous: Option<DateTime<Utc>>,
    backsteps: Vec<Backstep>,
}

impl Scan {
    fn new(signed: BTreeMap<u64, Hash>, latest: Option<StoredCheckpoint>) -> Self {
        Scan {
            signed,
            latest,
            size: 0,
            frontier: Vec::new(),
            tree_broken: false,
            last_good: 0,
            previous_received: None,
            before_previous: None,
            backsteps: Vec::new(),
        }
    }

    /// Takes the next row.
    fn row(&mut self, row: &ScannedLeaf, report: &mut Report) {
        report.events += 1;
        let seq = row.seq();
        let expected = self.size as i64 + 1;
        if seq != expected && !self.tree_broken {
            report.add(
                Fault::RowMissing,
                Some(expected),
                format!("seq {expected} is missing (the next row is seq {seq})"),
            );
            self.tree_broken = true;
        }
        let (leaf, received_at) = leaf_of(row, report);
        self.receipt_time(seq, received_at);
        self.coverage(seq, received_at, report);
        if !self.tree_broken {
            self.extend_tree(leaf, report);
        }
    }

    /// Notes a receipt time stepping back along `seq` (judged in [`Scan::finish`]).
    fn receipt_time(&mut self, seq: i64, received_at: DateTime<Utc>) {
        if let Some((prev_seq, prev)) = self.previous_received {
            if received_at < prev {
                // One of the two is out of place: the earlier row if it is also later than
                // its own predecessor's successor (moved back), else this one (moved forward).
                let bad = match self.before_previous {
                    Some(oldest) if oldest > received_at => seq,
                    _ => prev_seq,
                };
                self.backsteps.push(Backstep { prev_seq, seq, bad });
            }
            self.before_previous = Some(prev);
        }
        self.previous_received = Some((seq, received_at));
    }

    /// Whether a row the latest checkpoint does not cover may be uncovered, and counts it.
    fn coverage(&mut self, seq: i64, received_at: DateTime<Utc>, report: &mut Report) {
        if let Some(latest) = &self.latest {
            if seq > latest.tree_size
                && (received_at < latest.signed_at - PENDING_SLACK || received_at > Utc::now())
            {
                report.add(
                    Fault::RowAdded,
                    Some(seq),
                    format!(
                        "seq {seq} is not covered by the latest checkpoint ({}) although it was received before it",
                        latest.tree_size
                    ),
                );
            }
        }
        if self.latest.as_ref().is_none_or(|l| seq > l.tree_size) {
            report.pending += 1;
        }
    }

    /// Adds the leaf to the rebuilt tree and checks the root against a signed one of that size.
    fn extend_tree(&mut self, leaf: Hash, report: &mut Report) {
        let ext = subtrees::extend(self.size, &self.frontier, &[leaf]);
        self.frontier = ext.frontier.into_iter().map(|(_, h)| h).collect();
        self.size += 1;
        let size = self.size;
        if let Some(root) = self.signed.get(&size) {
            if *root == subtrees::range_root(&self.frontier) {
                self.last_good = size;
            } else {
                report.window_start = Some(self.last_good as i64 + 1);
                report.add(
                    Fault::CheckpointInconsistent,
                    None,
                    format!(
                        "the content no longer reproduces checkpoint {size}; the last checkpoint it reproduces is {}, so a row between seq {} and {size} was changed, added, removed or moved",
                        self.last_good,
                        self.last_good + 1
                    ),
                );
                self.tree_broken = true;
            }
        }
    }

    /// What only the whole pass shows: a signed size beyond the log's end, how far the content
    /// is proven, and the receipt-time steps that prove a reordering.
    fn finish(self, in_order_from: i64, report: &mut Report) {
        if let Some((&largest, _)) = self.signed.iter().next_back() {
            if largest > self.size && !self.tree_broken {
                report.add(
                    Fault::RowMissing,
                    Some(self.size as i64 + 1),
                    format!(
                        "checkpoint {largest} covers rows up to seq {largest}, the log ends at seq {}",
                        self.size
                    ),
                );
            }
        }
        report.verified_tree_size = self.last_good;
        for step in self.backsteps {
            if let Some(bad) = step.unproven(self.last_good as i64, in_order_from) {
                report.add(
                    Fault::RowsReordered,
                    Some(bad),
                    format!("seq {} was received after seq {}", step.prev_seq, step.seq),
                );
            }
        }
    }
}

/// A row's leaf, recomputed from its content (its stored hash for a purged row), and its
/// receipt time; reports content that no longer hashes to its leaf and an early purge.
fn leaf_of(row: &ScannedLeaf, report: &mut Report) -> (Hash, DateTime<Utc>) {
    let seq = row.seq();
    match row {
        ScannedLeaf::Content {
            leaf_hash,
            content_leaf,
            committed_at,
            ..
        } => {
            if content_leaf != leaf_hash {
                report.add(
                    Fault::ContentChanged,
                    Some(seq),
                    format!("seq {seq}: the content does not hash to the stored leaf hash"),
                );
            }
            ((*content_leaf).into(), *committed_at)
        }
        ScannedLeaf::Purged(p) => {
            report.purged += 1;
            if p.purged_at < p.expired_at() {
                report.add(
                    Fault::PurgedEarly,
                    Some(seq),
                    format!(
                        "seq {seq}: its content was purged at {}, before its retention ended at {}",
                        audit_model::timestamp::format(&p.purged_at),
                        audit_model::timestamp::format(&p.expired_at())
                    ),
                );
            }
            (p.leaf_hash.into(), p.committed_at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backstep;

    fn step(prev_seq: i64, seq: i64, bad: i64) -> Backstep {
        Backstep { prev_seq, seq, bad }
    }

    #[test]
    fn a_step_is_a_fault_only_where_neither_the_tree_nor_the_old_format_explains_it() {
        // Receipt times in order from seq 1, nothing signed: the step is a moved row.
        assert_eq!(step(100, 101, 100).unproven(0, 1), Some(100));
        // Both rows under a checkpoint the content reproduces: their order is proven.
        assert_eq!(step(100, 101, 100).unproven(2000, 1), None);
        assert_eq!(step(2000, 2001, 2001).unproven(2000, 1), Some(2001));
        // Only the earlier row's place is proven: the later one moved.
        assert_eq!(step(2000, 2001, 2000).unproven(2000, 1), Some(2001));
        // Rows appended before receipt times were taken under the log head.
        assert_eq!(step(100, 101, 100).unproven(0, 500), None);
        assert_eq!(step(499, 500, 500).unproven(0, 500), None);
        assert_eq!(step(500, 501, 500).unproven(0, 500), Some(500));
    }
}
