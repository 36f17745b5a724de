//! The handle controllers hold: `record` (synchronous, never blocks), `flush`, `close`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_model::{AuditEvent, FieldErrors, RecordRules, SeedRecord};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::metric_names as m;
use crate::pending::Pending;
use crate::report::{CloseReport, Counters};
use crate::sender::{Item, Sender, SpillItem, Spiller};
use crate::token::Token;
use crate::transport::Transport;

/// Why `record` refused an event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The event is invalid; nothing will be sent.
    #[error("invalid audit event: {0}")]
    Invalid(FieldErrors),
    /// The buffer is full and no spill directory is configured; the event is dropped (counted).
    #[error("the audit buffer is full and no spill directory is configured")]
    BufferFull,
    /// The buffer is full and so is the queue to the disk spill (the disk cannot keep up); the
    /// event is dropped (counted).
    #[error("the audit buffer is full and the disk spill cannot keep up")]
    SpillBehind,
    /// The client was closed.
    #[error("the audit client is closed")]
    Closed,
    /// The client could not start (HTTP client or spill directory).
    #[error("cannot start the audit client: {0}")]
    Start(String),
}

/// The audit client. Cheap to clone; all clones share one buffer and one background task.
#[derive(Clone)]
pub struct AuditClient {
    tx: mpsc::Sender<Item>,
    /// To the spiller, when the buffer is full: bounded like the buffer, so memory stays bounded
    /// whatever the disk's speed.
    overflow: Option<mpsc::Sender<SpillItem>>,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
    service: Arc<str>,
}

impl AuditClient {
    pub(crate) fn start(config: ClientConfig) -> Result<AuditClient, RecordError> {
        let transport = Transport::new(
            config.base_url.clone(),
            config.request_timeout,
            config.token.clone().map(Token::new),
            config.ca_file.as_deref(),
        )
        .map_err(RecordError::Start)?;
        let spill = match &config.spill_dir {
            Some(dir) => Some(
                audit_journal::Journal::open(dir, audit_journal::JournalOptions::default())
                    .map_err(|e| {
                        RecordError::Start(format!("spill directory {}: {e}", dir.display()))
                    })?,
            ),
            None => None,
        };
        let counters = Arc::new(Counters::default());
        let service: Arc<str> = config.service.clone().into();
        let (tx, rx) = mpsc::channel(config.buffer_capacity);
        let overflow = spill.clone().map(|journal| {
            let (otx, orx) = mpsc::channel(config.buffer_capacity);
            tokio::spawn(Spiller::new(journal, orx, counters.clone(), service.clone()).run());
            otx
        });
        let sender = Sender::new(
            rx,
            transport,
            config,
            spill,
            counters.clone(),
            service.clone(),
        );
        tokio::spawn(sender.run());
        Ok(AuditClient {
            tx,
            overflow,
            counters,
            closed: Arc::new(AtomicBool::new(false)),
            service,
        })
    }

    /// Records a unified audit event (a JSON object with the ADR-034 fields; `event_id` and
    /// `event_timestamp` are filled when absent). Returns the event's id. Never blocks.
    pub fn record(&self, event: Value) -> Result<Uuid, RecordError> {
        let event = AuditEvent::parse(event, Utc::now()).map_err(RecordError::Invalid)?;
        let id = event.event_id();
        // Recorded in a traced span: the event carries its trace (unless it names its own), and
        // the request that sends it continues that trace.
        let (event, traceparent) = match audit_tracing::span_context(&tracing::Span::current()) {
            Some(context) => {
                let (trace_id, span_id) = audit_tracing::ids(&context);
                (
                    event.traced(&trace_id, &span_id),
                    Some(audit_tracing::traceparent_of(&context)),
                )
            }
            None => (event, None),
        };
        self.enqueue(Pending::Event {
            event: Box::new(event),
            traceparent,
        })?;
        Ok(id)
    }

    /// Records a typed seed record; it goes to its own endpoint with its deterministic id.
    pub fn record_typed<R: SeedRecord>(&self, record: &R) -> Result<Uuid, RecordError> {
        let body = serde_json::to_value(record)
            .map_err(|e| RecordError::Start(format!("record does not serialise: {e}")))?;
        // Check it as the server will, so an invalid record is the caller's error now.
        let parsed =
            R::parse(body.clone(), &RecordRules::new(Utc::now())).map_err(RecordError::Invalid)?;
        let event_id = parsed.event_id();
        self.enqueue(Pending::Record {
            path: R::KIND.path.to_string(),
            event_id,
            body,
            traceparent: audit_tracing::span_context(&tracing::Span::current())
                .map(|c| audit_tracing::traceparent_of(&c)),
        })?;
        Ok(event_id)
    }

    /// `notification_audit` record (`POST /api/v1/audit/notifications`).
    pub fn record_notification(
        &self,
        r: &audit_model::NotificationAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    /// `signal_processing_audit` record.
    pub fn record_signal_processing(
        &self,
        r: &audit_model::SignalProcessingAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    /// `orchestration_audit` record.
    pub fn record_orchestration(
        &self,
        r: &audit_model::OrchestrationAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    /// `ai_analysis_audit` record.
    pub fn record_ai_decision(
        &self,
        r: &audit_model::AiAnalysisAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    /// `workflow_execution_audit` record.
    pub fn record_execution(
        &self,
        r: &audit_model::WorkflowExecutionAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    /// `effectiveness_audit` record.
    pub fn record_effectiveness(
        &self,
        r: &audit_model::EffectivenessAudit,
    ) -> Result<Uuid, RecordError> {
        self.record_typed(r)
    }

    fn enqueue(&self, pending: Pending) -> Result<(), RecordError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RecordError::Closed);
        }
        metrics::counter!(m::RECORDED, "service" => self.service.to_string()).increment(1);
        let result = match self.tx.try_send(Item::Pending(pending)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Item::Pending(pending))) => match &self.overflow {
                Some(overflow) => match overflow.try_send(SpillItem::Pending(pending)) {
                    Ok(()) => Ok(()),
                    Err(_) => self.drop_one("spill_full", RecordError::SpillBehind),
                },
                None => self.drop_one("buffer_full", RecordError::BufferFull),
            },
            Err(_) => Err(RecordError::Closed),
        };
        metrics::gauge!(m::BUFFER_LEN, "service" => self.service.to_string())
            .set(self.buffer_len() as f64);
        result
    }

    /// Counts an event given up at `record`, and the error that says why.
    fn drop_one(&self, reason: &'static str, error: RecordError) -> Result<(), RecordError> {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::DROPPED, "service" => self.service.to_string(), "reason" => reason)
            .increment(1);
        Err(error)
    }

    /// Events waiting in memory.
    pub fn buffer_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Waits until everything recorded so far is acknowledged by the server or spilled to disk
    /// (or, without a spill, given up and counted).
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Item::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
        self.flush_overflow().await;
    }

    async fn flush_overflow(&self) {
        if let Some(overflow) = &self.overflow {
            let (reply, done) = oneshot::channel();
            if overflow.send(SpillItem::Barrier(reply)).await.is_ok() {
                let _ = done.await;
            }
        }
    }

    /// Stops accepting events, sends (or spills) what is buffered within `timeout`, and reports
    /// what the client did over its life.
    pub async fn close(&self, timeout: Duration) -> CloseReport {
        self.closed.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, done) = oneshot::channel();
        if self.tx.send(Item::Close { deadline, reply }).await.is_ok() {
            let _ = tokio::time::timeout_at(deadline + Duration::from_secs(5), done).await;
        }
        self.flush_overflow().await;
        self.counters.report()
    }

    /// The counts so far.
    pub fn report(&self) -> CloseReport {
        self.counters.report()
    }
}
