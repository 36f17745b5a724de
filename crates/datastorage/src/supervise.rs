//! Background workers that never stop silently: a worker that panics, or returns while the
//! service is not shutting down, is logged as an error, counted in
//! `datastorage_worker_restarts_total{worker}`, and started again after a pause.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;

/// The pause before a failed worker is started again.
pub const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs `start()` until shutdown, starting it again whenever it ends before shutdown.
pub fn supervise<F, Fut>(worker: &'static str, shutdown: Shutdown, start: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    supervise_pausing(worker, shutdown, RESTART_PAUSE, start)
}

fn supervise_pausing<F, Fut>(
    worker: &'static str,
    shutdown: Shutdown,
    pause: Duration,
    start: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let ended = tokio::spawn(start()).await;
            if shutdown.is_draining() {
                return;
            }
            match ended {
                Err(e) if e.is_panic() => {
                    tracing::error!(worker, error = %e, "background worker panicked; starting it again")
                }
                _ => tracing::error!(worker, "background worker stopped; starting it again"),
            }
            metrics::counter!(crate::metrics::WORKER_RESTARTS, "worker" => worker).increment(1);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.begun() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_worker_that_panics_or_returns_is_started_again_until_shutdown() {
        let shutdown = Shutdown::new();
        let starts = Arc::new(AtomicU32::new(0));
        let (counted, stop) = (starts.clone(), shutdown.clone());
        let pause = Duration::from_millis(10);
        let task = supervise_pausing("test", shutdown.clone(), pause, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            async move {
                match n {
                    0 => panic!("a bug"),
                    1 => {} // returns early
                    _ => stop.begun().await,
                }
            }
        });
        // Panicked, returned, then runs until shutdown.
        while starts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(pause).await;
        }
        shutdown.begin();
        task.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
