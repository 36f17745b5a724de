//! The replay worker: drains the dead-letter queue into the log through the ingest pipeline.
//!
//! It polls the store every `poll_interval` and drains as soon as the store answers. Each entry
//! is replayed with its original `event_id`, so a replay of an event that was in fact stored
//! (its commit succeeded but the answer was lost) is a duplicate, which counts as done. An entry
//! whose event conflicts with the stored one, or that the database refuses, is a dead letter at
//! once; an entry whose replay fails while the store answers is retried per the backoff schedule
//! and becomes a dead letter when the schedule is exhausted. At shutdown the worker drains for a
//! bounded time and leaves the rest for the next start.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use crate::config::ReplayConfig;
use crate::dlq::{Claimed, DeadLetter, DlqBackend, DlqEntry, DlqError};
use crate::ingest::{IngestError, IngestOutcome, IngestQueue};
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::store::{LogStore, PreparedEvent};

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplayReport {
    /// Entries stored by this drain.
    pub replayed: u64,
    /// Entries whose event was already stored (done as well).
    pub duplicates: u64,
    /// Entries put back with a backoff.
    pub requeued: u64,
    pub dead_lettered: u64,
    /// Entries still waiting afterwards.
    pub remaining: u64,
}

/// The worker. One per process; passes never overlap.
pub struct Replayer {
    dlq: Arc<dyn DlqBackend>,
    queue: IngestQueue,
    store: Arc<dyn LogStore>,
    config: ReplayConfig,
    /// Held during a pass; also remembers when only delayed entries were left.
    pass: Mutex<Option<(DateTime<Utc>, u64)>>,
}

impl Replayer {
    pub fn new(
        dlq: Arc<dyn DlqBackend>,
        queue: IngestQueue,
        store: Arc<dyn LogStore>,
        config: ReplayConfig,
    ) -> Self {
        Self {
            dlq,
            queue,
            store,
            config,
            pass: Mutex::new(None),
        }
    }

    /// Polls and drains until shutdown, then drains for at most `shutdown_drain`.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.begun() => break,
            }
            self.refresh_metrics().await;
            if self.store.ping().await.is_err() {
                continue;
            }
            if let Err(e) = self.drain(false, None).await {
                tracing::warn!(error = %e, "DLQ replay pass failed");
            }
        }
        if self.store.ping().await.is_ok() {
            let deadline = Instant::now() + self.config.shutdown_drain;
            match self.drain(false, Some(deadline)).await {
                Ok(r) => tracing::info!(
                    replayed = r.replayed,
                    remaining = r.remaining,
                    "DLQ drained at shutdown"
                ),
                Err(e) => tracing::warn!(error = %e, "DLQ drain at shutdown failed"),
            }
        }
    }

    /// Updates the DLQ gauges.
    pub async fn refresh_metrics(&self) {
        if let Ok(stats) = self.dlq.stats().await {
            metrics::gauge!(m::DLQ_DEPTH, "backend" => stats.backend).set(stats.depth as f64);
            metrics::gauge!(m::DLQ_OLDEST_AGE).set(stats.oldest_age_seconds.unwrap_or(0.0));
            metrics::gauge!(m::DLQ_CAPACITY).set(stats.capacity as f64);
        }
    }

    /// Replays every entry that is due (`force`: every entry), until the queue is empty, the
    /// store fails, or the deadline passes.
    pub async fn drain(
        &self,
        force: bool,
        deadline: Option<Instant>,
    ) -> Result<ReplayReport, DlqError> {
        let mut idle = self.pass.lock().await;
        let start_depth = self.dlq.stats().await?.depth;
        if let Some((until, depth)) = *idle {
            if !force && Utc::now() < until && depth == start_depth {
                return Ok(ReplayReport {
                    remaining: start_depth,
                    ..ReplayReport::default()
                });
            }
        }
        *idle = None;
        let mut report = ReplayReport::default();
        let mut seen = 0u64;
        let mut earliest_delayed: Option<DateTime<Utc>> = None;
        let mut any_due = false;
        while seen < start_depth && deadline.is_none_or(|d| Instant::now() < d) {
            let started = Instant::now();
            let claimed = self.dlq.claim(self.config.batch).await?;
            tracing::debug!(entries = claimed.len(), took = ?started.elapsed(), "DLQ claim");
            if claimed.is_empty() {
                break;
            }
            seen += claimed.len() as u64;
            let now = Utc::now();
            let (due, later): (Vec<Claimed>, Vec<Claimed>) = claimed
                .into_iter()
                .partition(|c| force || c.entry.not_before.is_none_or(|t| t <= now));
            for c in &later {
                earliest_delayed = earliest_delayed
                    .min(c.entry.not_before)
                    .or(c.entry.not_before);
            }
            self.dlq
                .requeue(later.into_iter().map(|c| (c.id, c.entry)).collect())
                .await?;
            if due.is_empty() {
                continue;
            }
            any_due = true;
            if !self.replay(due, &mut report).await? {
                break;
            }
        }
        if !any_due {
            if let Some(until) = earliest_delayed {
                *idle = Some((until, start_depth));
            }
        }
        report.remaining = self.dlq.stats().await?.depth;
        metrics::counter!(m::DLQ_REPLAYED).increment(report.replayed + report.duplicates);
        if report.replayed + report.duplicates + report.dead_lettered > 0 {
            tracing::info!(?report, "DLQ replay pass");
        }
        Ok(report)
    }

    /// Replays one claimed batch; `false` when the store failed (stop this pass).
    async fn replay(&self, due: Vec<Claimed>, report: &mut ReplayReport) -> Result<bool, DlqError> {
        let started = Instant::now();
        let events = due
            .iter()
            .map(|c| PreparedEvent::new(c.entry.event.clone()))
            .collect();
        let submitted = self.queue.submit_replay(events).await;
        tracing::debug!(entries = due.len(), took = ?started.elapsed(), "DLQ replay submitted");
        match submitted {
            Ok(outcomes) => {
                self.settle(due, outcomes, report).await?;
                Ok(true)
            }
            Err(IngestError::Closed) => {
                let ids: Vec<String> = due.into_iter().map(|c| c.id).collect();
                self.dlq.release(&ids).await?;
                Ok(false)
            }
            Err(IngestError::Unavailable(reason)) => {
                tracing::warn!(%reason, entries = due.len(), "replay failed although the store answered; backing off");
                self.back_off(due, &reason, report).await?;
                Ok(false)
            }
        }
    }

    /// The writer answered every entry: stored or already stored ones are acknowledged, ones
    /// the log cannot take are buried, ones parked again (the store failed meanwhile) released.
    async fn settle(
        &self,
        due: Vec<Claimed>,
        outcomes: Vec<IngestOutcome>,
        report: &mut ReplayReport,
    ) -> Result<(), DlqError> {
        let mut done = Vec::new();
        let mut dead = Vec::new();
        let mut keep = Vec::new();
        for (c, outcome) in due.into_iter().zip(outcomes) {
            match outcome {
                IngestOutcome::Created(_) => {
                    report.replayed += 1;
                    done.push(c.id);
                }
                IngestOutcome::Duplicate(_) => {
                    report.duplicates += 1;
                    done.push(c.id);
                }
                IngestOutcome::Conflict(stored) => {
                    let why = format!(
                        "conflict: event_id is stored with different content (seq {})",
                        stored.seq
                    );
                    dead.push((c.id, bury(c.entry, why, "conflict")));
                }
                IngestOutcome::Refused { reason, .. } => {
                    let why = format!("refused by the database: {reason}");
                    dead.push((c.id, bury(c.entry, why, "refused")));
                }
                IngestOutcome::Queued(_) => keep.push(c.id),
            }
        }
        report.dead_lettered += dead.len() as u64;
        let started = Instant::now();
        self.dlq.ack(&done).await?;
        self.dlq.bury(dead).await?;
        self.dlq.release(&keep).await?;
        tracing::debug!(took = ?started.elapsed(), "DLQ entries settled");
        Ok(())
    }

    /// The store failed the replay although it answered: each entry waits for its next try
    /// on the schedule, or is buried once the schedule is spent.
    async fn back_off(
        &self,
        due: Vec<Claimed>,
        reason: &str,
        report: &mut ReplayReport,
    ) -> Result<(), DlqError> {
        let mut again = Vec::new();
        let mut dead = Vec::new();
        let now = Utc::now();
        for c in due {
            let mut entry = c.entry;
            entry.attempts += 1;
            entry.reason = reason.to_string();
            match self.config.schedule.get(entry.attempts as usize - 1) {
                Some(wait) => {
                    entry.not_before = chrono::Duration::from_std(*wait).ok().map(|w| now + w);
                    again.push((c.id, entry));
                }
                None => {
                    let why = format!("exhausted {} replay attempts: {reason}", entry.attempts);
                    dead.push((c.id, bury(entry, why, "exhausted")));
                }
            }
        }
        report.requeued += again.len() as u64;
        report.dead_lettered += dead.len() as u64;
        self.dlq.requeue(again).await?;
        self.dlq.bury(dead).await?;
        Ok(())
    }
}

fn bury(entry: DlqEntry, reason: String, label: &'static str) -> DeadLetter {
    metrics::counter!(m::DLQ_DEAD_LETTERS, "reason" => label).increment(1);
    tracing::warn!(event_id = %entry.event.event_id(), %reason, "DLQ entry moved to the dead letters");
    DeadLetter {
        event: entry.event,
        attempts: entry.attempts,
        reason,
        dead_at: audit_model::timestamp::truncate(Utc::now()),
    }
}
