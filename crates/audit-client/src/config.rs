//! The client's settings as a plain value: made by the
//! [`AuditClientBuilder`](crate::AuditClientBuilder), taken by the client and its sending task.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::token::TokenSource;

/// Every setting of a client, with the builder's defaults.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
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
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) service: String,
    pub(crate) on_rejected: Option<RejectionHook>,
}

impl ClientConfig {
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
            ca_file: None,
            service: "unknown".to_string(),
            on_rejected: None,
        }
    }
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
pub(crate) struct RejectionHook(pub(crate) Arc<dyn Fn(Rejection) + Send + Sync>);

impl std::fmt::Debug for RejectionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RejectionHook")
    }
}
