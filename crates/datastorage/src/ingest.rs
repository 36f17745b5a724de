//! The ingest pipeline: handlers submit parsed events to an [`IngestQueue`]; one [`LogWriter`]
//! task commits them in batches (group commit) and answers every waiter.
//!
//! A handler never holds a database connection. Under load, requests that arrive while a commit
//! is in flight are committed together in the next transaction, so batches grow with load and
//! one durable commit per request stops being the ceiling. A submission is never split across
//! transactions, so a batch request is stored all at once or not at all.
//!
//! Invariants: an event is answered `Created` only after its transaction committed; every
//! submission gets exactly one answer (its reply channel is consumed once), also when the store
//! fails; when all queue handles are dropped the writer commits what is queued, then stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::metrics as m;
use crate::store::{AppendOutcome, LogStore, PreparedEvent, StoreError};

/// Why a submission was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("the audit store is unavailable: {0}")]
    Store(Arc<StoreError>),
    #[error("the ingest pipeline is shut down")]
    Closed,
}

struct Submission {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, IngestError>>,
}

/// The handlers' side of the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Submission>,
    depth: Arc<AtomicUsize>,
}

impl IngestQueue {
    /// Creates the queue and the writer that drains it into `store`.
    pub fn new(store: Arc<dyn LogStore>, config: IngestConfig) -> (IngestQueue, LogWriter) {
        // Capacity counts submissions; a submission holds at least one event.
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let queue = IngestQueue {
            tx,
            depth: depth.clone(),
        };
        let writer = LogWriter {
            rx,
            store,
            config,
            depth,
        };
        (queue, writer)
    }

    /// Submits events (distinct or not) and waits until they are committed, answering per event
    /// in input order.
    pub async fn submit(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        let n = events.len();
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(Submission { events, reply }).await.is_err() {
            self.depth.fetch_sub(n, Ordering::Relaxed);
            return Err(IngestError::Closed);
        }
        metrics::gauge!(m::INGEST_QUEUE_DEPTH).set(self.depth.load(Ordering::Relaxed) as f64);
        answer.await.unwrap_or(Err(IngestError::Closed))
    }

    /// Events waiting for the writer.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// The single task that commits queued events.
pub struct LogWriter {
    rx: mpsc::Receiver<Submission>,
    store: Arc<dyn LogStore>,
    config: IngestConfig,
    depth: Arc<AtomicUsize>,
}

impl LogWriter {
    /// Runs until every [`IngestQueue`] handle is dropped and the queue is empty.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let batch = self.collect(first).await;
            self.commit(batch).await;
        }
        tracing::info!("ingest queue drained; writer stopped");
    }

    /// Takes whatever is waiting behind `first`, up to the batch size, lingering if configured.
    async fn collect(&mut self, first: Submission) -> Vec<Submission> {
        let max = self.config.batch_max_events;
        let mut count = first.events.len();
        let mut batch = vec![first];
        while count < max {
            match self.rx.try_recv() {
                Ok(s) => {
                    count += s.events.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        if !self.config.batch_linger.is_zero() && count < max {
            let deadline = tokio::time::Instant::now() + self.config.batch_linger;
            while count < max {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(s)) => {
                        count += s.events.len();
                        batch.push(s);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        batch
    }

    async fn commit(&mut self, batch: Vec<Submission>) {
        let total: usize = batch.iter().map(|s| s.events.len()).sum();
        // De-duplicate by event_id: the first occurrence goes to the store, later ones refer to it.
        let mut unique: Vec<PreparedEvent> = Vec::with_capacity(total);
        let mut first_index: HashMap<Uuid, usize> = HashMap::with_capacity(total);
        // Per submission, per event: the index of its first occurrence, and its own hash when it
        // is a repeat.
        let mut refs: Vec<Vec<(usize, Option<[u8; 32]>)>> = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for sub in batch {
            let mut sub_refs = Vec::with_capacity(sub.events.len());
            for event in sub.events {
                match first_index.get(&event.event.event_id) {
                    Some(&i) => sub_refs.push((i, Some(event.leaf_hash))),
                    None => {
                        first_index.insert(event.event.event_id, unique.len());
                        sub_refs.push((unique.len(), None));
                        unique.push(event);
                    }
                }
            }
            refs.push(sub_refs);
            replies.push(sub.reply);
        }

        let started = Instant::now();
        let result = self.store.append(&unique).await;
        let elapsed = started.elapsed().as_secs_f64();
        self.depth.fetch_sub(total, Ordering::Relaxed);
        metrics::gauge!(m::INGEST_QUEUE_DEPTH).set(self.depth.load(Ordering::Relaxed) as f64);
        metrics::histogram!(m::INGEST_BATCH_SIZE).record(total as f64);
        metrics::histogram!(m::WRITE_DURATION, "table" => "audit_events").record(elapsed);

        match result {
            Ok(outcomes) => {
                record_outcomes(&unique, &outcomes);
                for (sub_refs, reply) in refs.into_iter().zip(replies) {
                    let answer = sub_refs
                        .iter()
                        .map(|&(i, repeat)| occurrence_outcome(&outcomes[i], repeat))
                        .collect();
                    // A waiter that went away (client disconnected) needs no answer.
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = total, "batch commit failed");
                for event in &unique {
                    metrics::counter!(m::AUDIT_TRACES, "service" => m::service_label(&event.event.event_category), "status" => "error").increment(1);
                }
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Store(e.clone())));
                }
            }
        }
    }
}

/// The answer for one occurrence of an event: the store's outcome for the first occurrence; for
/// a repeat inside the same batch, a duplicate of the stored event when its hash matches, else a
/// conflict.
fn occurrence_outcome(outcome: &AppendOutcome, repeat: Option<[u8; 32]>) -> AppendOutcome {
    let Some(hash) = repeat else {
        return outcome.clone();
    };
    let stored = outcome.stored().clone();
    if stored.leaf_hash == hex::encode(hash) {
        AppendOutcome::Duplicate(stored)
    } else {
        AppendOutcome::Conflict(stored)
    }
}

fn record_outcomes(events: &[PreparedEvent], outcomes: &[AppendOutcome]) {
    let now = Utc::now();
    for (event, outcome) in events.iter().zip(outcomes) {
        let service = m::service_label(&event.event.event_category);
        let status = match outcome {
            AppendOutcome::Created(_) => "success",
            AppendOutcome::Duplicate(_) => "duplicate",
            AppendOutcome::Conflict(_) => "conflict",
        };
        metrics::counter!(m::AUDIT_TRACES, "service" => service, "status" => status).increment(1);
        if let AppendOutcome::Created(_) = outcome {
            let lag = (now - event.event.event_timestamp)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6;
            metrics::histogram!(m::AUDIT_LAG, "service" => service).record(lag.max(0.0));
        }
    }
}
