//! Data Storage: the only service of the remediation platform that talks to the audit database.
//!
//! Reading order: [`config`] (what the operator sets), [`store`] (the append-only log in
//! PostgreSQL or SQLite), [`ingest`] (group commit: many requests, one transaction), [`http`]
//! (the REST API), [`evidence`] (the signed Merkle tree, its proofs, exports and the
//! verifier), [`shutdown`] (how the service stops without losing an acknowledged write).
//! [`Application`] wires them together; `main.rs` is the CLI around it.

pub mod access;
pub mod auth;
pub mod config;
pub mod derived;
pub mod dlq;
pub mod evidence;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod monitor;
mod open_files;
pub mod replay;
pub mod retention;
pub mod shutdown;
pub mod similarity;
pub mod store;
pub mod supervise;
mod system_event;
pub mod telemetry;
pub mod tls;
pub mod watched;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use audit_model::checkpoint::CheckpointSigner;
use config::Config;
use dlq::DlqBackend;
use evidence::tree::Checkpointer;
use http::AppState;
use ingest::IngestQueue;
use replay::Replayer;
use shutdown::Shutdown;
use store::LogStore;
use supervise::supervise;

/// The store the API reads: the primary itself, or reads routed to the configured replica
/// (probed before the first request, then once a second until shutdown).
async fn read_replica(
    config: &Config,
    primary: &Arc<dyn LogStore>,
    shutdown: &Shutdown,
) -> anyhow::Result<(Arc<dyn LogStore>, Option<tokio::task::JoinHandle<()>>)> {
    let Some(settings) = &config.read_replica else {
        return Ok((primary.clone(), None));
    };
    let replica = store::PostgresStore::connect_replica(
        &settings.url,
        settings.password.as_deref(),
        config.database_max_connections,
    )
    .context("cannot configure the read replica")?;
    let reads = Arc::new(store::ReplicaReads::new(
        primary.clone(),
        replica,
        settings.max_lag,
    ));
    if !reads.probe().await {
        tracing::warn!("the read replica is not usable yet; reads go to the primary until it is");
    }
    let task = {
        let (reads, stop) = (reads.clone(), shutdown.clone());
        supervise("replica", shutdown.clone(), move || {
            reads.clone().watch(stop.clone())
        })
    };
    Ok((reads, Some(task)))
}

/// A built service: listener bound, store connected and migrated, writer ready.
pub struct Application {
    listener: TcpListener,
    config: Config,
    store: Arc<dyn LogStore>,
    dlq: Arc<dyn DlqBackend>,
    signer: Option<Arc<CheckpointSigner>>,
    shutdown: Shutdown,
}

impl Application {
    /// Connects the store (applying migrations) and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // The key first: a service that cannot sign should not start taking writes.
        let signer = match &config.checkpoint {
            Some(c) => Some(Arc::new(evidence::keys::load(
                &c.key_file,
                c.create_key,
                &c.origin,
            )?)),
            None => {
                tracing::warn!("checkpoints are disabled: the log is not signed");
                None
            }
        };
        let store = store::connect(&config.database, config.database_max_connections)
            .await
            .context("cannot open the audit store")?;
        let dlq = dlq::connect(&config.dlq)
            .await
            .with_context(|| format!("cannot open the dead-letter queue {}", config.dlq.url))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Application {
            listener,
            config,
            store,
            dlq,
            signer,
            shutdown: Shutdown::new(),
        })
    }

    /// The dead-letter queue this application parks events in.
    pub fn dlq(&self) -> Arc<dyn DlqBackend> {
        self.dlq.clone()
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
            dlq,
            signer,
            shutdown,
        } = self;
        let (queue, writer) = IngestQueue::new(
            store.clone(),
            dlq.clone(),
            config.ingest,
            config.store_retry_interval,
        );
        let mut writers = writer.spawn_on_own_thread(config.ingest.writers)?;
        let replayer = Arc::new(Replayer::new(
            dlq.clone(),
            queue.clone(),
            store.clone(),
            config.replay.clone(),
        ));
        let replay_task = {
            let (replayer, stop) = (replayer.clone(), shutdown.clone());
            supervise("replay", shutdown.clone(), move || {
                replayer.clone().run(stop.clone())
            })
        };
        let cosigning = match config.checkpoint.as_ref().and_then(|c| c.witnesses.clone()) {
            Some(set) => Some(
                evidence::cosign::Cosigning::new(store.clone(), set)
                    .context("cannot configure the witnesses' HTTP client")?,
            ),
            None => None,
        };
        let cosigning_task = cosigning.clone().map(|c| {
            let stop = shutdown.clone();
            supervise("cosigning", shutdown.clone(), move || {
                c.clone().run(stop.clone())
            })
        });
        let checkpointer = match (&signer, &config.checkpoint) {
            (Some(signer), Some(settings)) => {
                let mut c = Checkpointer::new(store.clone(), signer.clone());
                if let Some(path) = &settings.witness_file {
                    c = c.with_witness(evidence::witness::FileWitness::new(path.clone()));
                }
                if let Some(cosigning) = &cosigning {
                    c = c.with_cosigning(cosigning.clone());
                }
                Some(Arc::new(c))
            }
            _ => None,
        };
        let checkpoint_task = match (&checkpointer, &config.checkpoint) {
            (Some(c), Some(settings)) => {
                let (c, interval, stop) = (c.clone(), settings.interval, shutdown.clone());
                Some(supervise("checkpoint", shutdown.clone(), move || {
                    c.clone().run(interval, stop.clone())
                }))
            }
            _ => None,
        };
        if config.retention.is_none() {
            ::metrics::gauge!(metrics::RETENTION_ENABLED).set(0.0);
        }
        let retention_task = config.retention.clone().map(|settings| {
            let (store, queue, stop) = (store.clone(), queue.clone(), shutdown.clone());
            supervise("retention", shutdown.clone(), move || {
                retention::RetentionWorker {
                    store: store.clone(),
                    queue: queue.clone(),
                    config: settings.clone(),
                }
                .run(stop.clone())
            })
        });
        let partitions_task = {
            let (store, stop) = (store.clone(), shutdown.clone());
            supervise("partitions", shutdown.clone(), move || {
                retention::prepare_partitions(store.clone(), stop.clone())
            })
        };
        let (auth, tokens_task) = authentication(&config.auth, &shutdown).await?;
        let limits = Arc::new(auth::limits::RateLimits::new(
            config.auth.rate_limit,
            config.auth.address_rate_limit,
        ));
        let limits_task = tokio::spawn(forget_idle_buckets(limits.clone(), shutdown.clone()));
        let denials = Arc::new(access::Denials::default());
        let denials_task = tokio::spawn(denials.clone().run(
            queue.clone(),
            access::WINDOW,
            shutdown.clone(),
        ));
        let (reads, replica_task) = read_replica(&config, &store, &shutdown).await?;
        let state = AppState::new(http::Shared {
            queue,
            store: reads.clone(),
            dlq,
            replayer,
            shutdown: shutdown.clone(),
            metrics: metrics::prometheus(),
            batch_max_items: config.batch_max_items,
            write_answers: config.write_answers,
            trusted_user_header: config.trusted_user_header.clone(),
            embedding_dimension: config.embedding_dimension,
            verifier: signer.as_ref().map(|s| Arc::new(s.verifier())),
            signer: signer.clone(),
            auth,
            open_routes: http::authn::OpenRoutes {
                metrics: config.auth.public_metrics,
                checkpoints: config.auth.public_checkpoints,
            },
            limits: limits.clone(),
            denials,
            witnesses: cosigning.as_ref().map(|c| c.set().clone()),
            subscribers: http::routes::stream::Subscribers::new(config.stream_max_subscribers),
            ui_public_key: config
                .ui_public_key
                .clone()
                .or_else(|| signer.as_ref().map(|s| s.verifier().to_text())),
        });
        let app = http::app(
            state,
            &http::HttpSettings {
                body: http::admission::BodyRules {
                    limit: config.body_limit_bytes,
                    read_timeout: config.http.body_read_timeout,
                    min_rate_bytes_per_second: config.http.body_min_rate_bytes_per_second,
                },
                body_budget: config.body_budget_bytes,
                cors_allowed_origins: config.http.cors_allowed_origins.clone(),
            },
        );
        let limits = http::serve::ServeLimits {
            connection: http::connection::ConnectionLimits {
                header_read_timeout: config.http.header_read_timeout,
                idle_timeout: config.http.idle_timeout,
            },
            max_connections: open_files::fit_connections(config.http.max_connections),
        };
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
        let stop_serving = async move {
            graceful.begun().await;
            tracing::info!(delay = ?delay, "shutdown begun: readiness is 503; waiting before closing the listener");
            tokio::time::sleep(delay).await;
            tracing::info!("listener closing; draining in-flight requests");
        };
        let tls = match &config.tls {
            None => None,
            Some(files) => {
                let tls =
                    Arc::new(tls::TlsServer::load(files.clone()).context("cannot configure TLS")?);
                let stop = shutdown.clone();
                tokio::spawn(watched::watch(
                    tls.clone(),
                    async move { stop.begun().await },
                ));
                Some(tls)
            }
        };
        tracing::info!(
            addr = %addr,
            store = store.backend(),
            tls = tls.is_some(),
            client_certificates = tls.as_ref().is_some_and(|t| t.verifies_clients()),
            "datastorage serving"
        );
        let mut server = tokio::spawn(http::serve::serve(listener, app, limits, tls, stop_serving));
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
            Ok(()) => {}
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e.into()),
        }
        // The replay worker drains for a bounded time, then drops its queue handle; the router
        // (with every other handle) is gone, so the writer commits what is queued and stops.
        replay_task.await?;
        if let Some(task) = tokens_task {
            task.await?;
        }
        limits_task.await?;
        denials_task.await?;
        if let Some(task) = retention_task {
            task.await?;
        }
        partitions_task.await?;
        if let Some(task) = cosigning_task {
            task.await?;
        }
        if let Some(task) = replica_task {
            task.await?;
        }
        writers.stopped().await?;
        // Everything acknowledged is committed: sign the final checkpoint over it.
        if let Some(task) = checkpoint_task {
            task.await?;
        }
        if let Some(c) = checkpointer {
            match c.catch_up().await {
                Ok(Some(last)) => {
                    tracing::info!(tree_size = last.tree_size, "final checkpoint signed")
                }
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "cannot sign the final checkpoint"),
            }
        }
        // With a replica, `reads` closes both pools.
        reads.close().await;
        writers.release().await;
        tracing::info!("datastorage stopped");
        Ok(())
    }
}

/// The authenticators the configuration enables, and the task keeping the tokens file current.
async fn authentication(
    config: &config::AuthConfig,
    shutdown: &Shutdown,
) -> anyhow::Result<(auth::Auth, Option<tokio::task::JoinHandle<()>>)> {
    let Some(required) = &config.required else {
        if config.disabled_by_default {
            tracing::warn!("authentication is disabled: no authenticator is configured and the listener is on loopback, so every local caller may read, write and administer the log");
        } else {
            tracing::warn!("authentication is disabled (auth.enabled: disabled): every caller may read, write and administer the log");
        }
        return Ok((auth::Auth::Disabled, None));
    };
    let tokens = required
        .tokens_file
        .as_deref()
        .map(auth::tokens::StaticTokens::load)
        .transpose()?
        .map(Arc::new);
    let task = tokens.clone().map(|tokens| {
        tracing::info!(tokens = tokens.len(), "static tokens loaded");
        let stop = shutdown.clone();
        tokio::spawn(watched::watch(tokens, async move { stop.begun().await }))
    });
    let kubernetes = match &required.kubernetes {
        Some(k) => {
            let client = auth::kubernetes::client(k.kubeconfig.as_deref())
                .await
                .context("cannot configure the Kubernetes API client for TokenReview")?;
            tracing::info!(audience = %k.audience, "Kubernetes ServiceAccount tokens are reviewed by the API server");
            Some(auth::kubernetes::Reviews::new(
                client,
                auth::kubernetes::ReviewSettings {
                    audience: k.audience.clone(),
                    cache_ttl: k.cache_ttl,
                    cache_size: k.cache_size,
                    write_scopes: k.write_scopes.clone(),
                },
            ))
        }
        None => None,
    };
    let authenticators = auth::Authenticators { tokens, kubernetes };
    Ok((auth::Auth::Required(Arc::new(authenticators)), task))
}

/// Forgets the rate-limit buckets that are full again, every minute until the stop.
async fn forget_idle_buckets(limits: Arc<auth::limits::RateLimits>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.begun() => return,
            _ = tick.tick() => limits.forget_idle(),
        }
    }
}
