//! The dead-letter queue: where events wait, durably, while the store cannot take them.
//!
//! Two backends behind one trait, both run by the same conformance tests: Redis Streams
//! (`redis://…`, shared by every replica through a consumer group) and the local
//! [`audit_journal`] (`file://DIR`, the default). An entry holds one event; the replay worker
//! claims entries, replays them through the ingest pipeline, and settles each one: done
//! (`ack`), again later (`requeue` with a backoff), or dead (`bury` with the reason).
//!
//! Invariants: an entry is removed only after its event is committed (or moved to the dead
//! letters); a full queue refuses new entries instead of evicting old ones; a settle that is
//! interrupted by a crash may leave an entry twice, never zero times, and replays are
//! idempotent by `event_id`.

mod journal;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use audit_model::AuditEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use self::journal::JournalDlq;
pub use self::redis::{persistence_risks, RedisDlq};

/// One parked event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    pub event: AuditEvent,
    /// Failed replay attempts so far.
    pub attempts: u32,
    #[serde(with = "audit_model::timestamp")]
    pub enqueued_at: DateTime<Utc>,
    /// Not to be replayed before this time (backoff after a failed replay).
    #[serde(default, with = "audit_model::timestamp::option")]
    pub not_before: Option<DateTime<Utc>>,
    /// Why it is here (the last failure).
    pub reason: String,
}

impl DlqEntry {
    pub fn new(event: AuditEvent, reason: impl Into<String>) -> Self {
        Self {
            event,
            attempts: 0,
            enqueued_at: audit_model::timestamp::truncate(Utc::now()),
            not_before: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Plain data (strings, numbers, a JSON map) always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, DlqError> {
        serde_json::from_slice(bytes).map_err(|e| DlqError::Corrupt(e.to_string()))
    }
}

/// An entry that will not be replayed automatically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = Object)]
    pub event: AuditEvent,
    pub attempts: u32,
    pub reason: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub dead_at: DateTime<Utc>,
}

/// A claimed entry and the backend's id for it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub entry: DlqEntry,
}

/// Queue figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct DlqStats {
    pub backend: &'static str,
    /// Entries waiting for replay.
    pub depth: u64,
    /// Age of the oldest waiting entry, in seconds.
    pub oldest_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub capacity: u64,
}

/// DLQ failures.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("the dead-letter queue is full ({capacity} entries)")]
    Full { capacity: u64 },
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("journal: {0}")]
    Journal(#[from] audit_journal::JournalError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable entry: {0}")]
    Corrupt(String),
}

/// A dead-letter queue.
#[async_trait]
pub trait DlqBackend: Send + Sync + 'static {
    /// `redis` or `journal`.
    fn name(&self) -> &'static str;
    /// Parks entries durably, all or none; `Full` when they do not fit.
    async fn enqueue(&self, entries: Vec<DlqEntry>) -> Result<(), DlqError>;
    /// Takes up to `max` entries for replay (this replica's unsettled ones first, then stuck ones
    /// of dead replicas, then new ones).
    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, DlqError>;
    /// Removes entries whose events are committed.
    async fn ack(&self, ids: &[String]) -> Result<(), DlqError>;
    /// Gives claimed entries back untouched, to be claimed again later.
    async fn release(&self, ids: &[String]) -> Result<(), DlqError>;
    /// Replaces claimed entries with updated ones (attempts, backoff) at the back of the queue.
    async fn requeue(&self, items: Vec<(String, DlqEntry)>) -> Result<(), DlqError>;
    /// Moves claimed entries to the dead letters.
    async fn bury(&self, items: Vec<(String, DeadLetter)>) -> Result<(), DlqError>;
    async fn stats(&self) -> Result<DlqStats, DlqError>;
    /// Dead letters in the order they died, after the given id.
    async fn dead_letters(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<(String, DeadLetter)>, DlqError>;
    /// Moves a dead letter back to the queue with its attempts reset; `false` when absent.
    async fn retry_dead_letter(&self, id: &str) -> Result<bool, DlqError>;
    async fn ping(&self) -> Result<(), DlqError>;
}

/// Where the queue lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct DlqConfig {
    /// `redis://…` or `file://DIR`.
    pub url: String,
    pub capacity: u64,
    /// Redis key prefix (`<prefix>:events`, `<prefix>:dead`).
    pub redis_prefix: String,
    /// A Redis entry claimed by a replica that has been silent this long is taken over.
    pub claim_idle: std::time::Duration,
    /// The CA of the Redis server's certificate (`rediss://`); none: the public web roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
}

/// Opens the configured backend.
pub async fn connect(config: &DlqConfig) -> Result<Arc<dyn DlqBackend>, DlqError> {
    if let Some(dir) = config.url.strip_prefix("file://") {
        Ok(Arc::new(JournalDlq::open(dir.as_ref(), config.capacity)?))
    } else {
        Ok(Arc::new(
            RedisDlq::connect(
                &config.url,
                config.redis_ca_file.as_deref(),
                &config.redis_prefix,
                config.capacity,
                config.claim_idle,
            )
            .await?,
        ))
    }
}
