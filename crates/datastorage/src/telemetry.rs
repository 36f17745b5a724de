//! Structured logs through `tracing` (JSON by default; `RUST_LOG` sets the filter), and the
//! service's spans exported as OpenTelemetry traces when an OTLP endpoint is configured (see
//! `audit_tracing`; `RUST_LOG` does not filter them).
//!
//! Lines are written by a thread of their own from a bounded queue, never by the thread that
//! logs: when standard error cannot take them (a pipe nobody reads, a log driver that fell
//! behind, a full disk) the queue fills and further lines are dropped and counted
//! (`datastorage_log_lines_dropped_total`), so no request, health check, writer or replay worker
//! ever waits for a log line.

use std::sync::OnceLock;

use audit_tracing::{TraceSettings, TracingGuard};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// Lines held while the sink is slow; beyond them lines are dropped (about 2 MB of JSON lines).
pub const BUFFERED_LINES: usize = 8192;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer's thread and the span exporter; dropping it writes what is queued
/// (waiting at most about a second for a sink that does not take it) and exports the spans
/// still buffered.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    // Dropped first: its last spans may log.
    traces: Option<TracingGuard>,
    _worker: Option<WorkerGuard>,
}

impl LogGuard {
    /// Exports the spans ended so far now (tests and tools; the exporter otherwise sends them
    /// every few seconds).
    pub fn flush_traces(&self) {
        if let Some(traces) = &self.traces {
            traces.flush();
        }
    }
}

/// Installs the global subscriber, logs only (once; later calls are ignored and return an
/// empty guard).
pub fn init(format: LogFormat) -> LogGuard {
    init_with_traces(format, &TraceSettings::off("datastorage"))
}

/// [`init`], also exporting spans as `traces` says. An exporter that cannot be built is
/// logged, and the service runs without traces.
pub fn init_with_traces(format: LogFormat, traces: &TraceSettings) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    // Spans are for the trace exporter; log lines carry their own fields.
    let lines = filter.add_directive(
        format!("{}=off", audit_tracing::TARGET)
            .parse()
            .expect("a target directive"),
    );
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(lines)
            .boxed(),
        LogFormat::Text => fmt.with_filter(lines).boxed(),
    };
    let (spans, traces_guard, failure) = match audit_tracing::init::<Registry>(traces) {
        Ok((layer, guard)) => (layer, Some(guard), None),
        Err(error) => (None, None, Some(error)),
    };
    let mut layers = vec![fmt];
    layers.extend(spans);
    let installed = tracing_subscriber::registry().with(layers).try_init();
    if let Some(error) = failure {
        tracing::error!(%error, "cannot export traces; running without them");
    } else if let Some(endpoint) = &traces.endpoint {
        tracing::info!(%endpoint, sample_ratio = traces.sample_ratio, "exporting traces");
    }
    match installed {
        Ok(()) => {
            let _ = DROPPED.set(dropped);
            LogGuard {
                traces: traces_guard,
                _worker: Some(guard),
            }
        }
        Err(_) => LogGuard {
            traces: None,
            _worker: None,
        },
    }
}

/// Log lines dropped because the sink could not keep up, since the start.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
