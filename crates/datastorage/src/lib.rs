//! Data Storage: the only service of the remediation platform that talks to the audit database.
//!
//! Reading order: [`config`] (what the operator sets), [`store`] (the append-only log in
//! PostgreSQL or SQLite), [`ingest`] (group commit: many requests, one transaction), [`http`]
//! (the REST API), [`shutdown`] (how the service stops without losing an acknowledged write).
//! [`Application`] wires them together; `main.rs` is the CLI around it.

pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod shutdown;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use config::Config;
use http::AppState;
use ingest::IngestQueue;
use shutdown::Shutdown;
use store::LogStore;

/// A built service: listener bound, store connected and migrated, writer ready.
pub struct Application {
    listener: TcpListener,
    config: Config,
    store: Arc<dyn LogStore>,
    shutdown: Shutdown,
}

impl Application {
    /// Connects the store (applying migrations) and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store = store::connect(&config.database, config.database_max_connections).await?;
        Self::with_store(config, store).await
    }

    /// Builds around an already connected store.
    pub async fn with_store(
        config: Config,
        store: Arc<dyn LogStore>,
    ) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Application {
            listener,
            config,
            store,
            shutdown: Shutdown::new(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shutdown handle: `begin()` starts a graceful shutdown.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The store this application writes to.
    pub fn store(&self) -> Arc<dyn LogStore> {
        self.store.clone()
    }

    /// Serves until `stop` resolves (or [`Shutdown::begin`] is called), then shuts down
    /// gracefully: readiness 503, propagation delay, drain, flush the ingest queue, close pools.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            config,
            store,
            shutdown,
        } = self;
        let (queue, writer) = IngestQueue::new(store.clone(), config.ingest);
        let writer: JoinHandle<()> = tokio::spawn(writer.run());
        let state = AppState {
            queue,
            store: store.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics::prometheus(),
            batch_max_items: config.batch_max_items,
        };
        let app = http::router(state, config.body_limit_bytes);
        let addr = listener.local_addr()?;

        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop => trigger.begin(),
                _ = trigger.begun() => {}
            }
        });
        let delay = config.shutdown_delay;
        let graceful = shutdown.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            graceful.begun().await;
            tracing::info!(delay = ?delay, "shutdown begun: readiness is 503; waiting before closing the listener");
            tokio::time::sleep(delay).await;
            tracing::info!("listener closing; draining in-flight requests");
        });
        tracing::info!(addr = %addr, store = store.backend(), "datastorage serving");
        let mut server = tokio::spawn(async move { server.await });
        let drain = config.drain_timeout;
        let served = tokio::select! {
            r = &mut server => r,
            _ = async {
                shutdown.begun().await;
                tokio::time::sleep(delay + drain).await;
            } => {
                tracing::warn!(timeout = ?drain, "drain timeout reached; abandoning in-flight requests");
                server.abort();
                server.await
            }
        };
        match served {
            Ok(result) => result?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e.into()),
        }
        // The router (and with it every queue handle) is gone: the writer commits what is queued
        // and stops.
        writer.await?;
        store.close().await;
        tracing::info!("datastorage stopped");
        Ok(())
    }
}
