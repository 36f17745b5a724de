//! The ingest pipeline: handlers submit parsed events to an [`IngestQueue`]; one [`LogWriter`]
//! task commits them in batches (group commit) and answers every waiter.
//!
//! A handler never holds a database connection. Under load, requests that arrive while a commit
//! is in flight are committed together in the next transaction, so batches grow with load and
//! one durable commit per request stops being the ceiling. A submission is never split across
//! transactions (unless the database refuses a batch's data, see below). A stored batch is
//! answered once the next batch is on its way to the store (or at once when nothing is
//! queued), so the writer's turn between two commits does not include answering.
//!
//! When a commit fails for a reason that is not the data's fault, the live events of the batch
//! go to the dead-letter queue and are answered `Queued`; for the next `store_retry_interval`
//! live batches go straight to the DLQ. Replayed events (from the DLQ) are never parked again:
//! their submission fails and the replay worker keeps them. When the database refuses the data
//! itself, the batch is committed event by event so one bad event cannot fail the others.
//!
//! Invariants: an event is answered `Created` only after its transaction committed and `Queued`
//! only after the DLQ holds it durably; every submission gets exactly one answer; when all queue
//! handles are dropped the writer commits what is queued, then stops.

mod batch;
mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_model::StoredEvent;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::dlq::DlqBackend;
use crate::metrics as m;
use crate::store::{AppendOutcome, EventLog, PreparedEvent};

pub use writer::{LogWriter, WriterThread};

/// What became of one submitted event.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// Stored now.
    Created(StoredEvent),
    /// The identical event was already stored.
    Duplicate(StoredEvent),
    /// Its `event_id` is stored with different content (the stored event is given).
    Conflict(StoredEvent),
    /// Parked durably in the DLQ; it will be stored when the database returns.
    Queued(Uuid),
    /// The database refused this event's data (it passed validation); it is not stored.
    Refused { event_id: Uuid, reason: String },
}

impl IngestOutcome {
    /// Whether the event is in the log (now or before) or durably parked to reach it.
    pub fn is_kept(&self) -> bool {
        matches!(
            self,
            IngestOutcome::Created(_) | IngestOutcome::Duplicate(_) | IngestOutcome::Queued(_)
        )
    }

    /// The outcome of appending `event`, which a created outcome takes over (no copy).
    fn of(event: PreparedEvent, appended: AppendOutcome) -> Self {
        match appended {
            AppendOutcome::Created { seq, committed_at } => {
                IngestOutcome::Created(event.into_stored(seq, committed_at))
            }
            AppendOutcome::Duplicate(s) => IngestOutcome::Duplicate(s),
            AppendOutcome::Conflict(s) => IngestOutcome::Conflict(s),
        }
    }

    /// Its `status` label in the audit-trace metrics.
    fn status(&self) -> &'static str {
        match self {
            IngestOutcome::Created(_) => "success",
            IngestOutcome::Duplicate(_) => "duplicate",
            IngestOutcome::Conflict(_) => "conflict",
            IngestOutcome::Queued(_) => "dlq_fallback",
            IngestOutcome::Refused { .. } => "refused",
        }
    }
}

/// Why a submission was not answered per event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// Neither the store nor (for live writes) the DLQ could take the events.
    #[error("{0}")]
    Unavailable(String),
    #[error("the ingest pipeline is shut down")]
    Closed,
}

/// Where a submission comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// An API request: may be parked in the DLQ.
    Live,
    /// The replay worker: must not be parked again.
    Replay,
}

type Answer = Result<Vec<IngestOutcome>, IngestError>;

struct Submission {
    events: Vec<PreparedEvent>,
    source: Source,
    reply: oneshot::Sender<Answer>,
    /// The span of the request (or replay) that submitted the events: the writer's commit and
    /// DLQ spans are its children.
    parent: tracing::Span,
    /// `ingest.queue`: open while the submission waits for a writer.
    _queued: tracing::Span,
}

/// The handlers' side of the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Submission>,
    depth: Arc<AtomicUsize>,
}

impl IngestQueue {
    /// Creates the queue and the writer that drains it into `store` (or `dlq`).
    pub fn new(
        store: Arc<dyn EventLog>,
        dlq: Arc<dyn DlqBackend>,
        config: IngestConfig,
        store_retry_interval: Duration,
    ) -> (IngestQueue, LogWriter) {
        // Capacity counts submissions; a submission holds at least one event.
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let queue = IngestQueue {
            tx,
            depth: depth.clone(),
        };
        let writer = LogWriter::new(rx, store, dlq, config, depth, store_retry_interval);
        (queue, writer)
    }

    /// Submits events from an API request and waits for their outcomes, in input order.
    pub async fn submit(&self, events: Vec<PreparedEvent>) -> Answer {
        self.send(events, Source::Live).await
    }

    /// Submits events replayed from the DLQ; fails instead of parking them again.
    pub async fn submit_replay(&self, events: Vec<PreparedEvent>) -> Answer {
        self.send(events, Source::Replay).await
    }

    async fn send(&self, events: Vec<PreparedEvent>, source: Source) -> Answer {
        let n = events.len();
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(n, Ordering::Relaxed);
        // Only under a traced request (or replay): never a root of its own.
        let parent = tracing::Span::current();
        let queued = if parent.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(target: audit_tracing::TARGET, parent: &parent, "ingest.queue", events = n)
        };
        let sent = self.tx.send(Submission {
            events,
            source,
            reply,
            parent,
            _queued: queued,
        });
        if sent.await.is_err() {
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
