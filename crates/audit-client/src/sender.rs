//! The background side: batches the buffer, sends with retries, spills what cannot be sent, and
//! re-sends the spill (oldest first) whenever Data Storage answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use audit_journal::Journal;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{ClientConfig, Rejection};
use crate::metric_names as m;
use crate::pending::Pending;
use crate::report::{CloseReport, Counters};
use crate::transport::{Failure, ItemResult, Transport};

/// What the handle sends to the background task.
pub(crate) enum Item {
    Pending(Pending),
    Flush(oneshot::Sender<()>),
    Close {
        deadline: Instant,
        reply: oneshot::Sender<CloseReport>,
    },
}

/// What goes to the spiller (events that found the buffer full).
pub(crate) enum SpillItem {
    Pending(Pending),
    Barrier(oneshot::Sender<()>),
}

/// Appends overflowing events to the spill journal, in the order they were recorded.
pub(crate) struct Spiller {
    journal: Journal,
    rx: mpsc::Receiver<SpillItem>,
    counters: Arc<Counters>,
    service: Arc<str>,
}

impl Spiller {
    pub(crate) fn new(
        journal: Journal,
        rx: mpsc::Receiver<SpillItem>,
        counters: Arc<Counters>,
        service: Arc<str>,
    ) -> Self {
        Self {
            journal,
            rx,
            counters,
            service,
        }
    }

    pub(crate) async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut items = vec![first];
            while let Ok(more) = self.rx.try_recv() {
                items.push(more);
            }
            let mut batch = Vec::new();
            let mut barriers = Vec::new();
            for item in items {
                match item {
                    SpillItem::Pending(p) => batch.push(p),
                    SpillItem::Barrier(b) => barriers.push(b),
                }
            }
            spill(
                &self.journal,
                batch,
                &self.counters,
                &self.service,
                "buffer_full",
            )
            .await;
            for b in barriers {
                let _ = b.send(());
            }
        }
    }
}

/// Appends to the spill; counts them as spilled, or as dropped when the disk fails.
async fn spill(
    journal: &Journal,
    items: Vec<Pending>,
    counters: &Counters,
    service: &str,
    why: &'static str,
) {
    if items.is_empty() {
        return;
    }
    let n = items.len() as u64;
    match journal
        .append_batch(items.iter().map(Pending::to_bytes).collect())
        .await
    {
        Ok(_) => {
            counters.spilled.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::SPILLED, "service" => service.to_string()).increment(n);
            tracing::warn!(events = n, reason = why, "audit events spilled to disk");
        }
        Err(e) => {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::DROPPED, "service" => service.to_string(), "reason" => "spill_failed").increment(n);
            tracing::error!(error = %e, events = n, "cannot spill audit events; dropped");
        }
    }
}

pub(crate) struct Sender {
    rx: mpsc::Receiver<Item>,
    transport: Transport,
    config: ClientConfig,
    spill: Option<Journal>,
    counters: Arc<Counters>,
    service: Arc<str>,
}

impl Sender {
    pub(crate) fn new(
        rx: mpsc::Receiver<Item>,
        transport: Transport,
        config: ClientConfig,
        spill: Option<Journal>,
        counters: Arc<Counters>,
        service: Arc<str>,
    ) -> Self {
        Self {
            rx,
            transport,
            config,
            spill,
            counters,
            service,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = self.rx.recv() => match item {
                    Some(Item::Pending(p)) => {
                        batch.push(p);
                        if batch.len() >= self.config.batch_size {
                            self.deliver(std::mem::take(&mut batch), None).await;
                        }
                    }
                    Some(Item::Flush(reply)) => {
                        self.deliver(std::mem::take(&mut batch), None).await;
                        let _ = reply.send(());
                    }
                    Some(Item::Close { deadline, reply }) => {
                        self.rx.close();
                        while let Ok(item) = self.rx.try_recv() {
                            if let Item::Pending(p) = item {
                                batch.push(p);
                            }
                        }
                        self.deliver(std::mem::take(&mut batch), Some(deadline)).await;
                        self.drain_spill(Some(deadline)).await;
                        let _ = reply.send(self.counters.report());
                        return;
                    }
                    None => {
                        self.deliver(std::mem::take(&mut batch), None).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.deliver(std::mem::take(&mut batch), None).await;
                    }
                    self.drain_spill(None).await;
                }
            }
        }
    }

    /// Sends items in batches; the spill goes first so order is kept; what cannot be sent is
    /// spilled (or dropped and counted).
    async fn deliver(&mut self, items: Vec<Pending>, deadline: Option<Instant>) {
        for chunk in items.chunks(self.config.batch_size) {
            if !self.drain_spill(deadline).await {
                // Data Storage still does not take the spill: keep order, spill these too.
                self.give_up(chunk.to_vec(), "spill_pending").await;
                continue;
            }
            let leftovers = self
                .send_with_retry(chunk.to_vec(), self.config.max_attempts, deadline)
                .await;
            self.give_up(leftovers, "retries_exhausted").await;
        }
        metrics::gauge!(m::BUFFER_LEN, "service" => self.service.to_string()).set(
            (self
                .config
                .buffer_capacity
                .saturating_sub(self.rx.capacity())) as f64,
        );
    }

    async fn give_up(&self, items: Vec<Pending>, why: &'static str) {
        if items.is_empty() {
            return;
        }
        match &self.spill {
            Some(journal) => spill(journal, items, &self.counters, &self.service, why).await,
            None => {
                let n = items.len() as u64;
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::DROPPED, "service" => self.service.to_string(), "reason" => why).increment(n);
                tracing::error!(
                    events = n,
                    reason = why,
                    "audit events dropped (no spill directory)"
                );
            }
        }
    }

    /// Re-sends the spill, oldest first; `true` when it is empty afterwards.
    async fn drain_spill(&mut self, deadline: Option<Instant>) -> bool {
        let Some(journal) = self.spill.clone() else {
            return true;
        };
        while !journal.is_empty() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let reader = journal.clone();
            let batch_size = self.config.batch_size;
            let records =
                match tokio::task::spawn_blocking(move || reader.read(0, batch_size)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the audit spill");
                        return false;
                    }
                    Err(_) => return false,
                };
            let Some(last) = records.last().map(|(id, _)| *id) else {
                return true;
            };
            let mut items = Vec::with_capacity(records.len());
            for (_, bytes) in &records {
                match Pending::from_bytes(bytes) {
                    Some(p) => items.push(p),
                    None => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(m::DROPPED, "service" => self.service.to_string(), "reason" => "spill_unreadable").increment(1);
                    }
                }
            }
            // One attempt per pass: when Data Storage is down, the next tick tries again.
            let resent = items.len() as u64;
            if !self.send_with_retry(items, 1, deadline).await.is_empty() {
                return false;
            }
            metrics::counter!(m::RESENT, "service" => self.service.to_string()).increment(resent);
            let acker = journal.clone();
            let acked = tokio::task::spawn_blocking(move || acker.ack_through(last)).await;
            if !matches!(acked, Ok(Ok(()))) {
                return false;
            }
        }
        true
    }

    /// Sends `items`, retrying transient failures; returns the items still unsent.
    async fn send_with_retry(
        &self,
        mut items: Vec<Pending>,
        attempts: usize,
        deadline: Option<Instant>,
    ) -> Vec<Pending> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            let started = StdInstant::now();
            let Attempt {
                retry,
                retry_after,
                throttled,
            } = self.attempt(items).await;
            metrics::histogram!(m::BATCH_DURATION, "service" => self.service.to_string())
                .record(started.elapsed().as_secs_f64());
            if retry.is_empty() {
                return retry;
            }
            // Throttled: the service asks to slow down; that spends no attempt (nothing failed).
            let delay = if throttled {
                Some(Duration::ZERO)
            } else {
                delays.next()
            };
            let Some(delay) = delay else {
                return retry;
            };
            let wait = delay.max(retry_after.unwrap_or(Duration::ZERO));
            if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                return retry;
            }
            tokio::time::sleep(wait).await;
            items = retry;
        }
    }

    /// One attempt: unified events in one batch request, typed records one request each.
    /// Returns the items to retry and the longest `Retry-After` seen.
    async fn attempt(&self, items: Vec<Pending>) -> Attempt {
        let mut retry = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut throttled = false;
        let (events, records): (Vec<Pending>, Vec<Pending>) = items
            .into_iter()
            .partition(|p| matches!(p, Pending::Event { .. }));
        if !events.is_empty() {
            let refs: Vec<&audit_model::AuditEvent> = events
                .iter()
                .filter_map(|p| match p {
                    Pending::Event { event, .. } => Some(event.as_ref()),
                    Pending::Record { .. } => None,
                })
                .collect();
            let span = send_span(&events);
            match self.transport.send_events(&refs, &span).await {
                Ok(results) => {
                    for (p, r) in events.iter().zip(results) {
                        self.count(p, r);
                    }
                }
                Err(Failure::Retryable {
                    retry_after: ra,
                    reason,
                }) => {
                    tracing::warn!(%reason, events = events.len(), "audit batch failed; will retry");
                    retry_after = retry_after.max(ra);
                    retry.extend(events);
                }
                Err(Failure::Throttled { retry_after: ra }) => {
                    throttled = true;
                    retry_after = retry_after.max(Some(ra));
                    retry.extend(events);
                }
                Err(Failure::Permanent(reason)) => {
                    for p in &events {
                        self.count(p, ItemResult::Rejected(reason.clone()));
                    }
                }
            }
        }
        for p in records {
            let Pending::Record { path, body, .. } = &p else {
                continue;
            };
            let span = send_span(std::slice::from_ref(&p));
            match self.transport.send_record(path, body, &span).await {
                Ok(r) => self.count(&p, r),
                Err(Failure::Retryable {
                    retry_after: ra,
                    reason,
                }) => {
                    tracing::warn!(%reason, "audit record failed; will retry");
                    retry_after = retry_after.max(ra);
                    retry.push(p);
                }
                Err(Failure::Throttled { retry_after: ra }) => {
                    throttled = true;
                    retry_after = retry_after.max(Some(ra));
                    retry.push(p);
                }
                Err(Failure::Permanent(reason)) => self.count(&p, ItemResult::Rejected(reason)),
            }
        }
        Attempt {
            retry,
            retry_after,
            throttled,
        }
    }

    fn count(&self, p: &Pending, result: ItemResult) {
        match result {
            ItemResult::Sent => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::SENT, "service" => self.service.to_string()).increment(1);
            }
            ItemResult::Duplicate => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::SENT, "service" => self.service.to_string()).increment(1);
            }
            ItemResult::Rejected(reason) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::DROPPED, "service" => self.service.to_string(), "reason" => "rejected").increment(1);
                tracing::error!(event_id = %p.event_id(), %reason, "audit event rejected by Data Storage");
                if let Some(hook) = &self.config.on_rejected {
                    (hook.0)(Rejection {
                        event_id: p.event_id(),
                        reason,
                    });
                }
            }
        }
    }
}

/// The span of one request to Data Storage (`audit_client.send`): a child of the span the first
/// item was recorded in, linked to those of the others, so that the request (and Data Storage's
/// spans under it) belong to the caller's trace. Disabled when traces are off.
fn send_span(items: &[Pending]) -> tracing::Span {
    let mut contexts = items
        .iter()
        .filter_map(Pending::traceparent)
        .filter_map(audit_tracing::remote_context);
    let first = contexts.next();
    if !audit_tracing::wanted(first.as_ref()) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: audit_tracing::TARGET,
        "audit_client.send",
        otel.kind = "client",
        events = items.len()
    );
    if let (false, Some(first)) = (span.is_disabled(), &first) {
        audit_tracing::set_remote_parent(&span, first);
        let mut linked = std::collections::HashSet::new();
        for other in contexts.filter(|c| c.trace_id() != first.trace_id() && c.is_sampled()) {
            if linked.insert(other.trace_id()) && linked.len() <= MAX_LINKS {
                audit_tracing::add_link(&span, other);
            }
        }
    }
    span
}

/// Most other traces one request's span links to.
const MAX_LINKS: usize = 32;

/// What one attempt left to send.
struct Attempt {
    retry: Vec<Pending>,
    /// The longest `Retry-After` the service gave.
    retry_after: Option<Duration>,
    /// The service's rate limit refused something (429).
    throttled: bool,
}
