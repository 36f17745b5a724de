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
/// those [`no_bodies`] drops.
pub fn install<W>(wanted: EnvFilter, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(writer)
                .with_filter(wanted.and(no_bodies())),
        )
        .init();
}
