//! Writes the verifiable export ([`audit_model::export`]): the checkpoint, then the selected
//! events in `seq` order with their inclusion proofs against it. Streamed page by page, so its
//! size is not bounded by memory; resumable with `after_seq`.

use audit_model::export::{ExportHeader, ExportedEvent, FORMAT};
use audit_model::StoredEvent;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::store::{CheckpointQuery, LogStore, StoreError};
use crate::tree;

/// Events read (and proven) per round trip.
const PAGE: i64 = 1000;

/// Which events to export (all of them when empty).
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    /// Resume after this seq.
    pub after_seq: i64,
}

impl ExportFilter {
    fn matches(&self, e: &StoredEvent) -> bool {
        self.since.is_none_or(|t| e.event.event_timestamp >= t)
            && self.until.is_none_or(|t| e.event.event_timestamp < t)
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| &e.event.correlation_id == c)
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("no checkpoint {0}")]
    NoCheckpoint(String),
}

/// Writes the export proving against the checkpoint of `tree_size` (the latest when `None`);
/// returns the number of events written.
pub async fn write_ndjson(
    store: &dyn LogStore,
    filter: &ExportFilter,
    tree_size: Option<u64>,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<u64, ExportError> {
    let query = match tree_size {
        Some(n) => CheckpointQuery::Size(n as i64),
        None => CheckpointQuery::Latest,
    };
    let checkpoint = store.checkpoints(&query).await?.pop().ok_or_else(|| {
        ExportError::NoCheckpoint(tree_size.map_or("yet".into(), |n| format!("of size {n}")))
    })?;
    let size = checkpoint.tree_size as u64;
    let header = ExportHeader {
        format: FORMAT.to_string(),
        tree_size: size,
        note: checkpoint.note,
    };
    out.write_all(header.to_line().as_bytes()).await?;
    out.write_all(b"\n").await?;
    let mut after = filter.after_seq;
    let mut written = 0u64;
    while (after as u64) < size {
        let page = store.scan(after, PAGE.min(size as i64 - after)).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let selected: Vec<StoredEvent> = page.into_iter().filter(|e| filter.matches(e)).collect();
        let indices: Vec<u64> = selected.iter().map(|e| e.seq as u64 - 1).collect();
        let proofs = tree::inclusion_proofs(store, &indices, size).await?;
        let mut chunk = String::new();
        for (e, proof) in selected.into_iter().zip(proofs) {
            chunk.push_str(&ExportedEvent::new(e.seq, &proof, e.event).to_line());
            chunk.push('\n');
            written += 1;
        }
        out.write_all(chunk.as_bytes()).await?;
    }
    out.flush().await?;
    Ok(written)
}
