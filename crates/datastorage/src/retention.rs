//! Retention and legal hold.
//!
//! The retention worker purges, every `retention_interval`, the content of events whose own
//! `retention_days` have passed and whose correlation is under no active legal hold. On
//! PostgreSQL the content lives in monthly partitions: a partition whose events all expired and
//! none is held is dropped whole (no row by row delete, no bloat left behind); the expired,
//! unheld events of the others are purged in transactions of `retention_batch_size` events, as
//! on SQLite. A purged event keeps its leaf: `seq`, `event_id`, `leaf_hash`, `event_timestamp`,
//! `retention_days` and when it was purged: the Merkle tree and every signed checkpoint still
//! verify, and the verifier reports the row as purged. The database's triggers refuse any other
//! change, and any purge of a held or unexpired event, whoever asks.
//!
//! What Data Storage does to the log is itself in the log: placing and releasing a hold, and
//! each retention run with its counts, are audit events written through the ingest queue like
//! any other (so a database outage parks them in the DLQ instead of losing them). Their ids and
//! content are derived from the hold or the run, so a retried request stores them once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::config::RetentionConfig;
use crate::ingest::{IngestOutcome, IngestQueue};
use crate::shutdown::Shutdown;
use crate::store::{DroppedPartition, HoldStore, LegalHold, PreparedEvent, StoreError};
use crate::system_event::{SystemEvent, EVENT_NAMESPACE};

/// `event_type` of a hold being placed.
pub const HOLD_PLACED: &str = "datastorage.legal_hold.placed";
/// `event_type` of a hold being released.
pub const HOLD_RELEASED: &str = "datastorage.legal_hold.released";
/// `event_type` of a retention run.
pub const RETENTION_RUN: &str = "datastorage.retention.run";
/// The correlation every retention run is recorded under.
pub const RETENTION_CORRELATION: &str = "datastorage-retention";

/// The audit event of a hold placed (`released == false`) or released.
pub fn hold_event(hold: &LegalHold, released: bool) -> PreparedEvent {
    let (event_type, action, actor, at) = match (released, &hold.released_at) {
        (true, Some(at)) => (
            HOLD_RELEASED,
            "release",
            hold.released_by.clone().unwrap_or_default(),
            *at,
        ),
        _ => (HOLD_PLACED, "place", hold.placed_by.clone(), hold.placed_at),
    };
    SystemEvent {
        event_id: Uuid::new_v5(
            &EVENT_NAMESPACE,
            format!("legal-hold/{}/{action}", hold.id).as_bytes(),
        ),
        at,
        event_type,
        action,
        actor: ("user", actor),
        resource: ("legal_hold", hold.id.to_string()),
        correlation_id: hold.correlation_id.clone(),
        data: serde_json::to_value(hold).expect("a hold serialises"),
    }
    .prepare()
}

/// What one retention run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    #[serde(with = "audit_model::timestamp")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "audit_model::timestamp")]
    pub finished_at: DateTime<Utc>,
    /// Events whose content was purged (row by row, or with their partition).
    pub purged: u64,
    /// The content partitions dropped whole (PostgreSQL), each with its events' seq range.
    pub dropped_partitions: Vec<DroppedPartition>,
    /// Expired events kept because their correlation is under legal hold.
    pub held: u64,
    /// The smallest and largest seq purged.
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub batches: u64,
}

impl RunReport {
    /// `count` more events purged, with seqs from `first` to `last`.
    fn count_purged(&mut self, first: i64, last: i64, count: u64) {
        self.purged += count;
        self.first_seq = Some(self.first_seq.map_or(first, |f| f.min(first)));
        self.last_seq = Some(self.last_seq.map_or(last, |l| l.max(last)));
    }

    /// The run's audit event.
    pub fn event(&self) -> PreparedEvent {
        SystemEvent {
            event_id: Uuid::new_v5(
                &EVENT_NAMESPACE,
                format!(
                    "retention/{}",
                    audit_model::timestamp::format(&self.started_at)
                )
                .as_bytes(),
            ),
            at: self.finished_at,
            event_type: RETENTION_RUN,
            action: "purge",
            actor: ("service", "datastorage-retention".into()),
            resource: ("audit_log", "audit_events".into()),
            correlation_id: RETENTION_CORRELATION.into(),
            data: serde_json::to_value(self).expect("a report serialises"),
        }
        .prepare()
    }
}

/// Purges everything expired at `now` that no hold keeps, `batch_size` events per transaction.
pub async fn run_once(
    store: &dyn HoldStore,
    batch_size: i64,
    now: DateTime<Utc>,
) -> Result<RunReport, StoreError> {
    let started_at = Utc::now();
    let mut report = RunReport {
        started_at,
        finished_at: started_at,
        purged: 0,
        dropped_partitions: Vec::new(),
        held: 0,
        first_seq: None,
        last_seq: None,
        batches: 0,
    };
    // Whole partitions first: what is left is purged row by row.
    let dropped = store.drop_expired_partitions(now).await?;
    for d in &dropped {
        report.count_purged(d.first_seq, d.last_seq, d.events as u64);
    }
    report.dropped_partitions = dropped;
    loop {
        let seqs = store.purge_expired(now, batch_size).await?;
        if seqs.is_empty() {
            break;
        }
        report.batches += 1;
        report.count_purged(seqs[0], seqs[seqs.len() - 1], seqs.len() as u64);
        if (seqs.len() as i64) < batch_size {
            break;
        }
    }
    report.held = store.count_held_expired(now).await? as u64;
    report.finished_at = Utc::now();
    Ok(report)
}

/// The worker: a run every interval until shutdown begins.
pub struct RetentionWorker {
    pub store: Arc<dyn HoldStore>,
    pub queue: IngestQueue,
    pub config: RetentionConfig,
}

impl RetentionWorker {
    /// One run, recorded in the log.
    pub async fn run_and_record(&self) -> Result<RunReport, StoreError> {
        let report = run_once(self.store.as_ref(), self.config.batch_size, Utc::now()).await?;
        tracing::info!(
            purged = report.purged,
            held = report.held,
            first_seq = report.first_seq,
            last_seq = report.last_seq,
            "retention run"
        );
        metrics::counter!(crate::metrics::RETENTION_PURGED).increment(report.purged);
        match self.queue.submit(vec![report.event()]).await {
            Ok(outcomes) if outcomes.first().is_some_and(IngestOutcome::is_kept) => {}
            Ok(outcomes) => tracing::error!(
                outcome = ?outcomes.first(),
                "the retention run's audit event was not stored"
            ),
            Err(error) => tracing::error!(%error, "cannot record the retention run"),
        }
        Ok(report)
    }

    /// Runs at once, then every `interval`, until shutdown begins.
    pub async fn run(self, shutdown: Shutdown) {
        metrics::gauge!(crate::metrics::RETENTION_ENABLED).set(1.0);
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.begun() => return,
            }
            match self.run_and_record().await {
                Ok(_) => {
                    metrics::counter!(crate::metrics::RETENTION_RUNS, "outcome" => "success")
                        .increment(1);
                    metrics::gauge!(crate::metrics::RETENTION_LAST_SUCCESS)
                        .set(Utc::now().timestamp() as f64);
                }
                Err(error) => {
                    metrics::counter!(crate::metrics::RETENTION_FAILURES).increment(1);
                    metrics::counter!(crate::metrics::RETENTION_RUNS, "outcome" => "failure")
                        .increment(1);
                    tracing::error!(%error, "retention run failed");
                }
            }
        }
    }
}

/// Months of content partitions kept created ahead of the current one.
pub const PARTITIONS_AHEAD: u32 = 2;

/// How often the content partitions ahead are made sure of.
const PARTITIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Creates the content partitions of this month and the [`PARTITIONS_AHEAD`] next ones where
/// missing, at once and then every hour until shutdown begins: an append never waits for a new
/// month's partition to be made (it still creates one itself for an event outside them, such as
/// one from long ago). Nothing to do on a store without partitions.
pub async fn prepare_partitions(store: Arc<dyn HoldStore>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(PARTITIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.begun() => return,
        }
        match store.prepare_partitions(Utc::now(), PARTITIONS_AHEAD).await {
            Ok(created) => {
                for partition in created {
                    tracing::info!(partition, "content partition created ahead");
                }
            }
            Err(error) => tracing::warn!(
                %error,
                "cannot create the content partitions ahead; appends create their month's when needed"
            ),
        }
    }
}
