//! The writer: the one task that commits queued batches, and the thread it runs on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::batch::{Batch, Stage};
use super::{Answer, IngestError, IngestOutcome, Source, Submission};
use crate::config::IngestConfig;
use crate::dlq::{DlqBackend, DlqEntry, DlqError};
use crate::metrics as m;
use crate::store::{AppendOutcome, EventLog, PreparedEvent};

/// The single task that commits queued events.
pub struct LogWriter {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Submission>>>,
    store: Arc<dyn EventLog>,
    dlq: Arc<dyn DlqBackend>,
    config: IngestConfig,
    depth: Arc<AtomicUsize>,
    store_retry_interval: Duration,
    /// Set after a failed commit: until then, live writes go straight to the DLQ.
    store_down_until: Option<Instant>,
}

/// The writers' own thread, with a single-threaded runtime.
///
/// The writer is the log's one serialisation point: the write rate is its batch size over the
/// time it takes to turn a batch around, and most of that time is waiting for the database. On
/// the request-handling runtime, a writer woken by the database's answer waits in the run queue
/// behind the request tasks; on its own thread it runs as soon as the operating system wakes it.
/// Requests and the writer meet only through the queue and the answer channels.
///
/// Database connections the writers open are served by this thread's runtime, so it keeps
/// running after the writers stop until [`WriterThread::release`] (after the stores are closed).
pub struct WriterThread {
    stopped: oneshot::Receiver<bool>,
    release: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Waits until every writer has stopped (all queue handles dropped and the queue drained).
    /// Fails if a writer panicked.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        match (&mut self.stopped).await {
            Ok(true) => Ok(()),
            _ => anyhow::bail!("an ingest writer panicked"),
        }
    }

    /// Lets the thread's runtime stop, and waits for the thread to end.
    pub async fn release(mut self) {
        self.release.take();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl LogWriter {
    pub(super) fn new(
        rx: mpsc::Receiver<Submission>,
        store: Arc<dyn EventLog>,
        dlq: Arc<dyn DlqBackend>,
        config: IngestConfig,
        depth: Arc<AtomicUsize>,
        store_retry_interval: Duration,
    ) -> LogWriter {
        LogWriter {
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            store,
            dlq,
            config,
            depth,
            store_retry_interval,
            store_down_until: None,
        }
    }

    /// Runs until every [`IngestQueue`] handle is dropped and the queue is empty.
    ///
    /// Several writers may share one queue: each takes the receiver only while it collects a
    /// batch, so one writer collects the next batch while another commits. The store keeps `seq`
    /// gap-free across concurrent appends (the same mechanism as several replicas).
    pub async fn run(mut self) {
        // A stored batch whose answers wait until the next batch is on its way (see `commit`).
        let mut unanswered: Option<Stored> = None;
        loop {
            let submissions = {
                // Another writer may hold the queue while it waits for submissions, which may
                // be the next requests of the clients this writer has yet to answer.
                let mut rx = match self.rx.try_lock() {
                    Ok(rx) => rx,
                    Err(_) => {
                        Stored::answer_any(unanswered.take());
                        self.rx.lock().await
                    }
                };
                let first = if unanswered.is_some() {
                    rx.try_recv().ok()
                } else {
                    let Some(first) = rx.recv().await else { break };
                    Some(first)
                };
                let Some(first) = first else {
                    // Nothing waiting: answer now, then wait for the next submission.
                    Stored::answer_any(unanswered.take());
                    continue;
                };
                if !self.config.batch_linger.is_zero() {
                    // A linger would hold the answers back for as long as it lasts.
                    Stored::answer_any(unanswered.take());
                }
                Self::collect(&mut rx, first, &self.config).await
            };
            unanswered = self
                .commit(Batch::new(submissions), unanswered.take())
                .await;
        }
        tracing::info!("ingest queue drained; writer stopped");
    }

    /// Starts `count` writers on their own thread and runtime (see [`WriterThread`]).
    pub fn spawn_on_own_thread(self, count: usize) -> std::io::Result<WriterThread> {
        let (stopped_tx, stopped) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let template = Arc::new(self);
                    let writers: Vec<_> = (0..count.max(1))
                        .map(|_| tokio::spawn(Self::supervised(template.clone())))
                        .collect();
                    let mut panicked = false;
                    for writer in writers {
                        panicked |= writer.await.unwrap_or(true);
                    }
                    let _ = stopped_tx.send(!panicked);
                    // Connections opened here are driven by this runtime; keep it running until
                    // the application has closed its stores.
                    let _ = released.await;
                });
            })?;
        Ok(WriterThread {
            stopped,
            release: Some(release),
            thread: Some(thread),
        })
    }

    /// Runs a writer until the queue closes, starting a new one whenever one panics (its
    /// batch's requests get no acknowledgement, so nothing acknowledged is lost); whether any
    /// panicked.
    async fn supervised(template: Arc<LogWriter>) -> bool {
        let mut panicked = false;
        loop {
            match tokio::spawn(template.another().run()).await {
                Ok(()) => return panicked,
                Err(error) => {
                    panicked = true;
                    tracing::error!(%error, "ingest writer panicked; starting another");
                    metrics::counter!(m::WORKER_RESTARTS, "worker" => "ingest").increment(1);
                }
            }
        }
    }

    /// A second writer on the same queue and store.
    pub fn another(&self) -> LogWriter {
        LogWriter {
            rx: self.rx.clone(),
            store: self.store.clone(),
            dlq: self.dlq.clone(),
            config: self.config,
            depth: self.depth.clone(),
            store_retry_interval: self.store_retry_interval,
            store_down_until: None,
        }
    }

    /// Takes whatever is waiting behind `first`, up to the batch size, lingering if configured.
    async fn collect(
        rx: &mut mpsc::Receiver<Submission>,
        first: Submission,
        config: &IngestConfig,
    ) -> Vec<Submission> {
        let max = config.batch_max_events;
        let mut count = first.events.len();
        let mut batch = vec![first];
        while count < max {
            match rx.try_recv() {
                Ok(s) => {
                    count += s.events.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        if !config.batch_linger.is_zero() && count < max {
            let deadline = tokio::time::Instant::now() + config.batch_linger;
            while count < max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
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

    /// Appends `batch`, answering `previous` as soon as the append is on its way to the store
    /// (its answers do not wait for this batch's commit, and this batch does not wait for them:
    /// answering was most of the writer's own time between two appends, which bounds the write
    /// rate). A stored batch is returned unanswered, to be answered the same way by the next call
    /// (or at once when nothing is queued); a batch that failed is answered here.
    async fn commit(&mut self, mut batch: Batch, previous: Option<Stored>) -> Option<Stored> {
        let total = batch.submitted();
        // Replays always try the store: the worker only replays once the store answers.
        let circuit_open = self.store_down_until.is_some_and(|t| Instant::now() < t)
            && !batch.sources.contains(&Source::Replay);
        let result = if circuit_open {
            Stored::answer_any(previous);
            Err(None)
        } else {
            let started = Instant::now();
            let _spans = batch.spans(Stage::Commit);
            let mut append = self.store.append(&batch.unique);
            // The first poll sends the statement, or gets as far towards it as it can.
            let first = futures::poll!(append.as_mut());
            Stored::answer_any(previous);
            let r = match first {
                Poll::Ready(r) => r,
                Poll::Pending => append.await,
            };
            let took = started.elapsed();
            metrics::histogram!(m::WRITE_DURATION, "table" => "audit_events")
                .record(took.as_secs_f64());
            tracing::debug!(events = batch.unique.len(), ?took, "batch appended");
            r.map_err(Some)
        };
        self.depth.fetch_sub(total, Ordering::Relaxed);
        metrics::gauge!(m::INGEST_QUEUE_DEPTH).set(self.depth.load(Ordering::Relaxed) as f64);
        metrics::histogram!(m::INGEST_BATCH_SIZE).record(total as f64);

        match result {
            Ok(appended) => {
                self.store_down_until = None;
                record_head(&appended);
                return Some(Stored { batch, appended });
            }
            Err(Some(e)) if e.is_data_error() => {
                tracing::warn!(error = %e, events = batch.unique.len(), "the database refused a batch; committing its events one by one");
                let events = std::mem::take(&mut batch.unique);
                let outcomes = self.commit_one_by_one(events).await;
                batch.answer_each(outcomes);
            }
            Err(e) => {
                let reason = match &e {
                    Some(e) => {
                        tracing::error!(error = %e, events = total, "batch commit failed; parking live events in the DLQ");
                        self.store_down_until = Some(Instant::now() + self.store_retry_interval);
                        e.label()
                    }
                    None => "store_down",
                };
                let detail = e.map_or_else(
                    || "the audit store failed recently".to_string(),
                    |e| format!("the audit store is unavailable: {e}"),
                );
                let live = self.park(&batch, reason, &detail).await;
                let replay = Err(IngestError::Unavailable(detail));
                batch.answer(&live, &replay);
            }
        }
        None
    }

    /// Puts the live events of a failed batch into the DLQ.
    async fn park(&self, batch: &Batch, reason: &'static str, detail: &str) -> Answer {
        let entries: Vec<DlqEntry> = batch
            .unique
            .iter()
            .zip(&batch.live)
            .filter(|(_, live)| **live)
            .map(|(e, _)| DlqEntry::new(e.event.clone(), detail))
            .collect();
        let n = entries.len() as u64;
        let spans = batch.spans(Stage::Dlq);
        let enqueued = self.dlq.enqueue(entries).await;
        drop(spans);
        match enqueued {
            Ok(()) => {
                metrics::counter!(m::DLQ_ENQUEUED, "reason" => reason).increment(n);
                for (event, live) in batch.unique.iter().zip(&batch.live) {
                    if *live {
                        metrics::counter!(m::AUDIT_TRACES, "service" => m::service_label(event.event.event_category()), "status" => "dlq_fallback").increment(1);
                    }
                }
                Ok(batch
                    .unique
                    .iter()
                    .map(|e| IngestOutcome::Queued(e.event.event_id()))
                    .collect())
            }
            Err(dlq_error) => {
                tracing::error!(error = %dlq_error, "the DLQ refused the events too; answering 503");
                for event in batch.unique.iter().zip(&batch.live).filter(|(_, l)| **l) {
                    metrics::counter!(m::AUDIT_TRACES, "service" => m::service_label(event.0.event.event_category()), "status" => "error").increment(1);
                }
                let why = match dlq_error {
                    DlqError::Full { .. } => format!("{detail}; {dlq_error}"),
                    other => format!("{detail}; the dead-letter queue is unavailable too: {other}"),
                };
                Err(IngestError::Unavailable(why))
            }
        }
    }

    /// Commits each event in its own transaction, so only the refused ones fail.
    async fn commit_one_by_one(&mut self, events: Vec<PreparedEvent>) -> Vec<IngestOutcome> {
        let services = services(&events);
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let one = std::slice::from_ref(&event);
            let mut appended = self.store.append(one).await;
            // Another replica may have stored this id after the statement looked for it (while
            // it waited for the log head): appended again, it reads as a duplicate or conflict.
            for _ in 0..2 {
                if !matches!(&appended, Err(e) if e.is_unique_violation()) {
                    break;
                }
                appended = self.store.append(one).await;
            }
            let outcome = match appended {
                Ok(mut o) => match o.pop() {
                    Some(o) => IngestOutcome::of(event, o),
                    None => refused(&event, "the store gave no answer".into()),
                },
                Err(e) => refused(&event, e.to_string()),
            };
            outcomes.push(outcome);
        }
        record_outcomes(&services, &outcomes);
        outcomes
    }
}

/// A batch its store appended, waiting to be answered.
struct Stored {
    batch: Batch,
    appended: Vec<AppendOutcome>,
}

impl Stored {
    fn answer_any(stored: Option<Stored>) {
        if let Some(stored) = stored {
            stored.answer();
        }
    }

    /// Answers every submission of the batch and counts the outcomes.
    fn answer(mut self) {
        let services = services(&self.batch.unique);
        let outcomes: Vec<IngestOutcome> = std::mem::take(&mut self.batch.unique)
            .into_iter()
            .zip(self.appended)
            .map(|(event, appended)| IngestOutcome::of(event, appended))
            .collect();
        record_outcomes(&services, &outcomes);
        self.batch.answer_each(outcomes);
    }
}

fn refused(event: &PreparedEvent, reason: String) -> IngestOutcome {
    IngestOutcome::Refused {
        event_id: event.event.event_id(),
        reason,
    }
}

/// The `service` label of each event's metrics.
fn services(events: &[PreparedEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| m::service_label(e.event.event_category()))
        .collect()
}

/// Counts the outcomes per (service, status), one metric update per pair, and records the lag of
/// each created event (one histogram handle per service).
fn record_outcomes(services: &[&'static str], outcomes: &[IngestOutcome]) {
    let mut counts: HashMap<(&'static str, &'static str), u64> = HashMap::new();
    let mut lags: HashMap<&'static str, metrics::Histogram> = HashMap::new();
    let now = Utc::now();
    for (&service, outcome) in services.iter().zip(outcomes) {
        *counts.entry((service, outcome.status())).or_default() += 1;
        if let IngestOutcome::Created(stored) = outcome {
            let lag = (now - stored.event.event_timestamp())
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6;
            lags.entry(service)
                .or_insert_with(|| metrics::histogram!(m::AUDIT_LAG, "service" => service))
                .record(lag.max(0.0));
        }
    }
    for ((service, status), n) in counts {
        metrics::counter!(m::AUDIT_TRACES, "service" => service, "status" => status).increment(n);
    }
}

/// Publishes the highest `seq` this process committed (`datastorage_log_head_seq`; with several
/// replicas the log's head is the highest any reports).
fn record_head(appended: &[AppendOutcome]) {
    static HEAD: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let highest = appended
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Created { seq, .. } => Some(*seq),
            _ => None,
        })
        .max();
    if let Some(seq) = highest {
        let head = HEAD.fetch_max(seq, Ordering::Relaxed).max(seq);
        metrics::gauge!(m::LOG_HEAD_SEQ).set(head as f64);
    }
}
