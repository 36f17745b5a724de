//! Reads from a PostgreSQL streaming replica (`store.read_url`).
//!
//! [`ReplicaReads`] is a whole [`LogStore`] over two databases: every write (appends,
//! checkpoints, cosignatures, holds, the purge) goes to the primary, and so does the service's
//! own work (the writers, the checkpointer, retention, the cosigners keep the primary store
//! itself); the API's reads go to the replica while it is usable:
//!
//! * **usable** means the replica answered its last probe (once a second), carries this binary's
//!   schema, and replays at most `store.replica_max_lag` behind the primary. Otherwise reads go
//!   to the primary until a probe finds it usable again; a read that fails on the replica is
//!   asked of the primary at once and marks the replica unusable until the next probe.
//! * **What the replica does not have yet is read from the primary**: an event, a checkpoint or
//!   a tree node asked for by its id that the replica lacks, and the part of a scan (exports,
//!   `verify-chain`, proofs' leaves) past the replica's end. Stored rows never change (the purge
//!   aside, which only blanks content), so a scan continued on the primary from the replica's
//!   last row misses nothing and repeats nothing.
//! * **Lists** (queries, counts, typed records, timelines, the live stream's pages) are the
//!   replica's answer as of its replay position, at most `replica_max_lag` old; a client that
//!   must see its own write reads it by id, which falls back.
//! * Legal holds are read from the primary (a hold just placed must show at once).
//!
//! The probe publishes `datastorage_replica_lag_seconds` and `datastorage_replica_usable`;
//! `datastorage_replica_reads_total{database, reason}` counts where each read went and why.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::StoredEvent;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AppendOutcome, CheckpointQuery, DroppedPartition, EventLog, EventQuery, HoldRequest, HoldStore,
    LegalHold, LogEntry, LogStore, PlaceHold, PostgresStore, PreparedEvent, RecordQuery, Render,
    RenderedRow, ScannedLeaf, StoreError, StoredCheckpoint, StoredCosignature, StoredRecord,
    TreeStore,
};
use crate::derived::timeline::TimelineRow;
use crate::metrics;
use crate::shutdown::Shutdown;

/// How often the replica's state is read.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a read went where it went (the `reason` label).
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// Served by the replica.
    Replica,
    /// The replica was not usable (down, behind, or an older schema).
    NotUsable,
    /// The read failed on the replica.
    Failed,
    /// The replica did not have (all of) what was asked yet.
    NotReplicated,
}

fn count(reason: Reason) {
    let (database, reason) = match reason {
        Reason::Replica => ("replica", "usable"),
        Reason::NotUsable => ("primary", "not_usable"),
        Reason::Failed => ("primary", "replica_failed"),
        Reason::NotReplicated => ("primary", "not_replicated"),
    };
    ::metrics::counter!(metrics::REPLICA_READS, "database" => database, "reason" => reason)
        .increment(1);
}

/// The log over a primary and a streaming replica of it.
pub struct ReplicaReads {
    primary: Arc<dyn LogStore>,
    replica: PostgresStore,
    max_lag: Duration,
    usable: AtomicBool,
}

impl ReplicaReads {
    /// Reads from `replica` once [`ReplicaReads::watch`]'s first probe finds it usable.
    pub fn new(primary: Arc<dyn LogStore>, replica: PostgresStore, max_lag: Duration) -> Self {
        ReplicaReads {
            primary,
            replica,
            max_lag,
            usable: AtomicBool::new(false),
        }
    }

    /// Probes the replica every [`PROBE_INTERVAL`] until shutdown.
    pub async fn watch(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            self.probe().await;
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = shutdown.begun() => return,
            }
        }
    }

    /// Reads the replica's state once; whether reads now go to it.
    pub async fn probe(&self) -> bool {
        let usable = match self.replica.replay_lag().await {
            Ok(lag) => {
                ::metrics::gauge!(metrics::REPLICA_LAG).set(lag.as_secs_f64());
                if lag > self.max_lag {
                    tracing::debug!(?lag, "the read replica is behind; reads go to the primary");
                }
                lag <= self.max_lag
            }
            Err(error) => {
                if self.usable.load(Ordering::Relaxed) {
                    tracing::warn!(%error, "the read replica cannot be used; reads go to the primary");
                }
                false
            }
        };
        ::metrics::gauge!(metrics::REPLICA_USABLE).set(if usable { 1.0 } else { 0.0 });
        self.usable.store(usable, Ordering::Relaxed);
        usable
    }

    /// The replica, when reads go to it (counted as not usable otherwise).
    fn replica(&self) -> Option<&PostgresStore> {
        if self.usable.load(Ordering::Relaxed) {
            Some(&self.replica)
        } else {
            count(Reason::NotUsable);
            None
        }
    }

    /// A read the replica failed: not tried there again until the next probe.
    fn failed(&self, error: &StoreError) {
        if self.usable.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "a read on the replica failed; reads go to the primary");
        }
        ::metrics::gauge!(metrics::REPLICA_USABLE).set(0.0);
        count(Reason::Failed);
    }
}

/// `$call` with `$s` the replica when it is usable and its answer satisfies `$complete`, else
/// with `$s` the primary.
macro_rules! routed {
    ($self:ident, |$s:ident| $call:expr, $complete:expr) => {{
        if let Some($s) = $self.replica() {
            match $call.await {
                Ok(answer) if ($complete)(&answer) => {
                    count(Reason::Replica);
                    return Ok(answer);
                }
                Ok(_) => count(Reason::NotReplicated),
                Err(error) => $self.failed(&error),
            }
        }
        let $s: &dyn LogStore = $self.primary.as_ref();
        $call.await
    }};
}

/// Up to `$limit` rows after `$after` in seq order: the replica's, then what it lacks from the
/// primary (`$call` reads `$n` rows after `$from` from `$s`; `$seq` is a row's seq).
macro_rules! scanned {
    ($self:ident, $after:expr, $limit:expr, |$s:ident, $from:ident, $n:ident| $call:expr, $seq:expr) => {{
        let (after, limit): (i64, i64) = ($after, $limit);
        let mut rows = Vec::new();
        if let Some($s) = $self.replica() {
            let ($from, $n) = (after, limit);
            match $call.await {
                Ok(found) if found.len() as i64 >= limit => {
                    count(Reason::Replica);
                    return Ok(found);
                }
                Ok(found) => {
                    count(Reason::NotReplicated);
                    rows = found;
                }
                Err(error) => $self.failed(&error),
            }
        }
        let $s: &dyn LogStore = $self.primary.as_ref();
        let $from = rows.last().map_or(after, $seq);
        let $n = limit - rows.len() as i64;
        rows.extend($call.await?);
        Ok(rows)
    }};
}

#[async_trait]
impl EventLog for ReplicaReads {
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        self.primary.append(events).await
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError> {
        routed!(self, |s| s.get(event_id), Option::is_some)
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        routed!(self, |s| s.query(query), |_: &_| true)
    }

    async fn timeline_rows(
        &self,
        correlation_id: &str,
        limit: i64,
    ) -> Result<Vec<TimelineRow>, StoreError> {
        routed!(self, |s| s.timeline_rows(correlation_id, limit), |_: &_| {
            true
        })
    }

    async fn count_matching(&self, query: &EventQuery) -> Result<i64, StoreError> {
        routed!(self, |s| s.count_matching(query), |_: &_| true)
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        routed!(self, |s| s.records(query), |_: &_| true)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        routed!(self, |s| s.count(), |_: &_| true)
    }

    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError> {
        scanned!(
            self,
            after_seq,
            limit,
            |s, from, n| s.scan(from, n),
            LogEntry::seq
        )
    }

    async fn scan_leaves(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ScannedLeaf>, StoreError> {
        scanned!(
            self,
            after_seq,
            limit,
            |s, from, n| s.scan_leaves(from, n),
            ScannedLeaf::seq
        )
    }

    async fn scan_rendered(
        &self,
        after_seq: i64,
        limit: i64,
        render: Render,
    ) -> Result<Vec<RenderedRow>, StoreError> {
        scanned!(
            self,
            after_seq,
            limit,
            |s, from, n| s.scan_rendered(from, n, render.clone()),
            |row: &RenderedRow| row.seq
        )
    }

    async fn received_in_order_from(&self) -> Result<i64, StoreError> {
        self.primary.received_in_order_from().await
    }
}

#[async_trait]
impl TreeStore for ReplicaReads {
    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        scanned!(
            self,
            after_seq,
            limit,
            |s, from, n| s.leaf_hashes(from, n),
            |(seq, _): &(i64, Hash)| *seq
        )
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        let mut found = match self.replica() {
            Some(replica) => match replica.nodes(ids).await {
                Ok(found) => found,
                Err(error) => {
                    self.failed(&error);
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        let missing: Vec<NodeId> = ids
            .iter()
            .filter(|id| !found.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            count(Reason::Replica);
            return Ok(found);
        }
        if !found.is_empty() {
            count(Reason::NotReplicated);
        }
        found.extend(self.primary.nodes(&missing).await?);
        Ok(found)
    }

    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        self.primary.add_checkpoint(nodes, checkpoint).await
    }

    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        // A checkpoint asked for by its size, or the one covering a leaf, may be newer than
        // the replica, which may also have none yet; a page is the replica's.
        let one = !matches!(query, CheckpointQuery::Page { .. });
        routed!(self, |s| s.checkpoints(query), |found: &Vec<_>| !one
            || !found.is_empty())
    }

    async fn add_cosignature(&self, cosignature: &StoredCosignature) -> Result<bool, StoreError> {
        self.primary.add_cosignature(cosignature).await
    }

    async fn cosignatures(&self, tree_size: i64) -> Result<Vec<StoredCosignature>, StoreError> {
        routed!(self, |s| s.cosignatures(tree_size), |found: &Vec<_>| !found
            .is_empty())
    }

    async fn cosigned_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        routed!(self, |s| s.cosigned_sizes(), |_: &_| true)
    }

    async fn witnessed(
        &self,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<Option<i64>, StoreError> {
        routed!(self, |s| s.witnessed(witnesses, quorum), |_: &_| true)
    }
}

#[async_trait]
impl HoldStore for ReplicaReads {
    async fn place_hold(&self, request: &HoldRequest) -> Result<PlaceHold, StoreError> {
        self.primary.place_hold(request).await
    }

    async fn release_hold(&self, request: &HoldRequest) -> Result<Option<LegalHold>, StoreError> {
        self.primary.release_hold(request).await
    }

    async fn holds(
        &self,
        correlation_id: Option<&str>,
        include_released: bool,
    ) -> Result<Vec<LegalHold>, StoreError> {
        self.primary.holds(correlation_id, include_released).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.primary.purge_expired(now, limit).await
    }

    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        self.primary.count_held_expired(now).await
    }

    async fn drop_expired_partitions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<DroppedPartition>, StoreError> {
        self.primary.drop_expired_partitions(now).await
    }

    async fn prepare_partitions(
        &self,
        now: DateTime<Utc>,
        ahead: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.primary.prepare_partitions(now, ahead).await
    }
}

#[async_trait]
impl LogStore for ReplicaReads {
    fn backend(&self) -> &'static str {
        self.primary.backend()
    }

    /// The primary's answer: the service writes while the replica is away.
    async fn ping(&self) -> Result<(), StoreError> {
        self.primary.ping().await
    }

    async fn close(&self) {
        self.replica.close().await;
        self.primary.close().await;
    }
}
