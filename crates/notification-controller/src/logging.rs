//! What the controller never logs, whatever `RUST_LOG` asks for.
//!
//! The Kubernetes client logs the whole body of an answer it cannot decode (at warning level)
//! and of an unsuccessful one (at debug level), and a NotificationRequest's body holds its
//! message, which may hold a password. Those events come only from the client's request module;
//! everything it says there below error level is dropped. (The controller reads objects untyped,
//! so an object it cannot read no longer fails a decode; see
//! [`crate::reconcile::reconcile_object`].)

use tracing_subscriber::filter::{filter_fn, FilterExt, FilterFn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The module of the Kubernetes client that logs answer bodies.
const BODY_LOGGING_TARGET: &str = "kube_client::client";

/// A filter that drops every event of the client's request module below error level.
pub fn no_bodies() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|meta| {
        !(meta.target().starts_with(BODY_LOGGING_TARGET) && *meta.level() != tracing::Level::ERROR)
    })
}

/// Installs the process's logger: JSON lines to `writer`, the events `wanted` selects, never
/// those [`no_bodies`] drops; and the span exporter `traces` configures (none when it is off).
/// A span exporter that cannot be built is logged and left out.
pub fn install<W>(
    wanted: EnvFilter,
    writer: W,
    traces: &audit_tracing::TraceSettings,
) -> Option<audit_tracing::TracingGuard>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (spans, guard, failure) = match audit_tracing::init(traces) {
        Ok((layer, guard)) => (layer, Some(guard), None),
        Err(error) => (None, None, Some(error)),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(writer)
                .with_filter(wanted.and(no_bodies())),
        )
        .with(spans)
        .init();
    if let Some(error) = failure {
        tracing::error!(%error, "cannot export traces; running without them");
    }
    guard
}

/// A writer that keeps what is logged in memory, for checking what a run would have logged
/// (the tests search it for secrets). Clones share one buffer.
#[derive(Clone, Default)]
pub struct MemoryLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemoryLog {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for MemoryLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_clients_body_logging_is_dropped_at_any_level() {
        let captured = MemoryLog::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || writer.clone())
                .with_filter(EnvFilter::new("trace").and(no_bodies())),
        );
        tracing::subscriber::with_default(subscriber, || {
            // What the client logs for an answer it cannot decode, and for a failed request.
            tracing::warn!(target: "kube_client::client", "{{\"spec\":{{\"body\":\"password=hunter2\"}}}}, Error(\"unknown variant\")");
            tracing::debug!(target: "kube_client::client", "Unsuccessful data error parse: hunter2");
            tracing::error!(target: "kube_client::client", "an error is kept");
            tracing::warn!(target: "notification_controller::reconcile", "our own warning is kept");
        });
        let text = captured.text();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("an error is kept"), "{text}");
        assert!(text.contains("our own warning is kept"), "{text}");
    }
}
