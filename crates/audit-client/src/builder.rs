//! Configuration of an [`AuditClient`](crate::AuditClient).

use std::path::PathBuf;
use std::time::Duration;

use crate::client::AuditClient;
use crate::token::TokenSource;
use crate::SERVER_BATCH_LIMIT;

/// Builds an [`AuditClient`]; every setting has a default.
#[derive(Debug, Clone)]
pub struct AuditClientBuilder {
    pub(crate) base_url: String,
    pub(crate) buffer_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_attempts: usize,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) spill_dir: Option<PathBuf>,
    pub(crate) token: Option<TokenSource>,
    pub(crate) service: String,
    pub(crate) on_rejected: Option<RejectionHook>,
}

/// What Data Storage refused for good (invalid, or a conflicting event with the same id): the
/// record is not stored and will not be sent again.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub event_id: uuid::Uuid,
    /// Data Storage's reason (its problem's detail), or why the request could not be made.
    pub reason: String,
}

/// Called for every [`Rejection`], on the client's sending task: it must not block.
#[derive(Clone)]
pub(crate) struct RejectionHook(pub(crate) std::sync::Arc<dyn Fn(Rejection) + Send + Sync>);

impl std::fmt::Debug for RejectionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RejectionHook")
    }
}

impl AuditClientBuilder {
    pub(crate) fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            buffer_capacity: 10_000,
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            spill_dir: None,
            token: None,
            service: "unknown".to_string(),
            on_rejected: None,
        }
    }

    /// Events held in memory (default 10 000).
    pub fn buffer_capacity(mut self, n: usize) -> Self {
        self.buffer_capacity = n.max(1);
        self
    }

    /// Events per request (default 100, at most [`SERVER_BATCH_LIMIT`]).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.clamp(1, SERVER_BATCH_LIMIT);
        self
    }

    /// Longest time an event waits in the buffer (default 1 s).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Timeout of one HTTP request (default 10 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Attempts per batch before it is spilled (or dropped), and the backoff between them:
    /// exponential with jitter from `min` up to `max` (defaults 3, 100 ms, 30 s).
    pub fn retry(mut self, max_attempts: usize, min: Duration, max: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Directory of the disk spill; without one, events that cannot be kept are dropped and
    /// counted.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Bearer token for every request.
    pub fn token(mut self, token: TokenSource) -> Self {
        self.token = Some(token);
        self
    }

    /// The `service` label of the client's metrics.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// Starts the client (its background tasks run on the current Tokio runtime).
    /// Calls `hook` for every record Data Storage refuses for good (besides counting and logging
    /// it), so the caller can report the loss where it belongs (a Kubernetes event on the object
    /// the record was about, say). `hook` runs on the sending task and must not block.
    pub fn on_rejected(mut self, hook: impl Fn(Rejection) + Send + Sync + 'static) -> Self {
        self.on_rejected = Some(RejectionHook(std::sync::Arc::new(hook)));
        self
    }

    pub fn build(self) -> Result<AuditClient, crate::RecordError> {
        AuditClient::start(self)
    }
}
