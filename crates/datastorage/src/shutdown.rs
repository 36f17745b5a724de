//! Graceful shutdown as one small type shared by the server, the readiness probe and the tasks.
//!
//! Order of events on SIGTERM/SIGINT: readiness answers 503 at once (so the Kubernetes Service
//! drops this endpoint), the listener stays open for the propagation delay, then it closes and
//! in-flight requests get the drain timeout; finally the ingest queue is flushed and the pools
//! are closed. Nothing acknowledged is lost, because an acknowledgement is only sent after the
//! commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Shared shutdown state. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    draining: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
        }
    }

    /// Starts the shutdown: readiness turns 503 from now on. Idempotent.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has begun.
    pub async fn begun(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in self, so wait_for only ends when the value turns true.
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
