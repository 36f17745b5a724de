//! Wiring: the kube-rs `Controller` over NotificationRequests, the health and metrics server,
//! leader election, and the shutdown order (stop reconciling, flush the audit client, release
//! the Lease).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use audit_client::AuditClient;
use axum::routing::get;
use axum::Router;
use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::breaker::CircuitBreakers;
use crate::channels::Channels;
use crate::config::RunArgs;
use crate::crd::NotificationRequest;
use crate::leader::LeaseLock;
use crate::losses::Auditing;
use crate::metrics::PhaseGauge;
use crate::reconcile::{error_policy_object, reconcile_object, report_refusals, Clock, Context};

/// The name the controller reports events and audit records as.
pub const CONTROLLER_NAME: &str = "notification-controller";

/// The reconcile context for `client`.
pub fn context(
    client: Client,
    channels: Channels,
    breakers: CircuitBreakers,
    audit: Option<Auditing>,
    clock: Clock,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: CONTROLLER_NAME.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        channels,
        breakers,
        audit,
        phases: PhaseGauge::default(),
        clock,
    })
}

/// Runs the controller loop until `stop` completes, then lets running reconciles finish.
///
/// The loop lists and watches the objects untyped and reads each one on its own
/// ([`reconcile_object`]): a typed list would fail as a whole on one object this version cannot
/// read, and deliver nothing until someone deleted it.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let resource = ApiResource::erase::<NotificationRequest>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    let refusals = ctx
        .audit
        .as_ref()
        .and_then(|a| a.losses.take_refusals())
        .map(|rx| tokio::spawn(report_refusals(ctx.clone(), rx)));
    let stop = stop.shared();
    let controller = Controller::new_with(api, watcher::Config::default(), resource);
    let store = controller.store();
    let run = controller
        .graceful_shutdown_on(stop.clone())
        .run(reconcile_object, error_policy_object, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        });
    // kube-runtime's runner waits for the first LIST before it ends, even after a graceful
    // shutdown: a controller stopped before it could list (the API server unreachable, a
    // SIGTERM at start) would never stop, and the audit client would never be flushed. Nothing
    // can be reconciling then, so it stops at once; otherwise running reconciles get
    // SHUTDOWN_GRACE to finish.
    let bounded = async {
        stop.clone().await;
        if store.wait_until_ready().now_or_never().is_none() {
            tracing::info!("stopping before the first list of NotificationRequests completed");
            return;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "reconciles did not finish within the shutdown grace; stopping them"
        );
    };
    tokio::select! {
        _ = run => {}
        _ = bounded => {}
    }
    if let Some(task) = refusals {
        task.abort();
    }
}

/// How long a stopping controller lets running reconciles finish (a delivery takes at most
/// `DELIVERY_TIMEOUT`, 10 s by default); the audit client's close follows, within the pod's
/// default 30 s termination grace.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

fn health_router(metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
}

/// Waits for SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `notification-controller run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    crate::metrics::describe();
    let channels =
        Channels::from_settings(&args.channel_settings()?).map_err(|e| anyhow::anyhow!(e))?;
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let mut builder = AuditClient::builder(&args.data_storage_url)
        .spill_dir(&args.audit_spill_dir)
        .service_name(CONTROLLER_NAME);
    if let Some(path) = &args.audit_ca_file {
        builder = builder.ca_file(path.clone());
    }
    if let Some(path) = &args.audit_token_file {
        builder = builder.token(audit_client::TokenSource::File(path.clone()));
    }
    let auditing = Auditing::build(builder).context("cannot start the audit client")?;
    let audit = auditing.client.clone();

    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            termination().await;
            tracing::info!("termination requested");
            stop.cancel();
        });
    }
    {
        let stop = stop.clone();
        let router = health_router(metrics);
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "health and metrics server failed");
            }
        });
    }

    let lease = args.leader_elect.then(|| {
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("{CONTROLLER_NAME}-{}", uuid::Uuid::new_v4()));
        Arc::new(LeaseLock::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            args.lease_timings(),
        ))
    });
    if let Some(lease) = &lease {
        tracing::info!(identity = lease.identity(), "waiting for leadership");
        tokio::select! {
            _ = lease.acquire() => tracing::info!(identity = lease.identity(), "leading"),
            _ = stop.cancelled() => {
                audit.close(args.audit_close_timeout).await;
                return Ok(());
            }
        }
        let (lease, stop) = (lease.clone(), stop.clone());
        tokio::spawn(async move {
            lease.hold().await;
            stop.cancel();
        });
    }

    let breakers = CircuitBreakers::new(args.breaker_failure_threshold, args.breaker_cooldown);
    let ctx = context(
        client,
        channels,
        breakers,
        Some(auditing),
        Arc::new(chrono::Utc::now),
    );
    let namespace = (!args.watch_namespace.is_empty()).then_some(args.watch_namespace.as_str());
    let stopped = stop.clone();
    run_controller(ctx, namespace, async move { stopped.cancelled().await }).await;

    let report = audit.close(args.audit_close_timeout).await;
    tracing::info!(?report, "audit client closed");
    if let Some(lease) = &lease {
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "cannot release the Lease");
        }
    }
    Ok(())
}
