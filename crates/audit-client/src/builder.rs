//! Configuration of an [`AuditClient`](crate::AuditClient).

use std::path::PathBuf;
use std::time::Duration;

use crate::client::AuditClient;
use crate::config::{ClientConfig, Rejection, RejectionHook};
use crate::token::TokenSource;
use crate::SERVER_BATCH_LIMIT;

/// Builds an [`AuditClient`]; every setting has a default.
#[derive(Debug, Clone)]
pub struct AuditClientBuilder {
    config: ClientConfig,
}

impl AuditClient {
    /// Starts configuring a client for the Data Storage at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> AuditClientBuilder {
        AuditClientBuilder {
            config: ClientConfig::new(base_url),
        }
    }
}

impl AuditClientBuilder {
    /// Events held in memory (default 10 000).
    pub fn buffer_capacity(mut self, n: usize) -> Self {
        self.config.buffer_capacity = n.max(1);
        self
    }

    /// Events per request (default 100, at most [`SERVER_BATCH_LIMIT`]).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n.clamp(1, SERVER_BATCH_LIMIT);
        self
    }

    /// Longest time an event waits in the buffer (default 1 s).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.config.flush_interval = d;
        self
    }

    /// Timeout of one HTTP request (default 10 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }

    /// Attempts per batch before it is spilled (or dropped), and the backoff between them:
    /// exponential with jitter from `min` up to `max` (defaults 3, 100 ms, 30 s).
    pub fn retry(mut self, max_attempts: usize, min: Duration, max: Duration) -> Self {
        self.config.max_attempts = max_attempts.max(1);
        self.config.min_backoff = min;
        self.config.max_backoff = max.max(min);
        self
    }

    /// Directory of the disk spill; without one, events that cannot be kept are dropped and
    /// counted.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.spill_dir = Some(dir.into());
        self
    }

    /// Bearer token for every request.
    pub fn token(mut self, token: TokenSource) -> Self {
        self.config.token = Some(token);
        self
    }

    /// The CA bundle (PEM, one or more certificates) an `https` Data Storage's certificate is
    /// verified against, besides the public web roots: a cluster's private CA, a cert-manager
    /// issuer. Read when the client is built.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_file = Some(path.into());
        self
    }

    /// The `service` label of the client's metrics.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.config.service = name.into();
        self
    }

    /// Calls `hook` for every record Data Storage refuses for good (besides counting and logging
    /// it), so the caller can report the loss where it belongs (a Kubernetes event on the object
    /// the record was about, say). `hook` runs on the sending task and must not block.
    pub fn on_rejected(mut self, hook: impl Fn(Rejection) + Send + Sync + 'static) -> Self {
        self.config.on_rejected = Some(RejectionHook(std::sync::Arc::new(hook)));
        self
    }

    /// Starts the client (its background tasks run on the current Tokio runtime).
    pub fn build(self) -> Result<AuditClient, crate::RecordError> {
        AuditClient::start(self.config)
    }
}
