//! The Merkle tree's checkpoints as stored.

use audit_model::merkle::Hash;
use chrono::{DateTime, Utc};

use super::columns::ReadColumn;
use super::StoreError;

/// A signed tree head as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub root_hash: Hash,
    pub signed_at: DateTime<Utc>,
    pub origin: String,
    pub key_id: String,
    /// The C2SP signed note, as published.
    pub note: String,
}

/// A witness's cosignature of a checkpoint, as it answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    pub tree_size: i64,
    /// The witness's key name.
    pub witness: String,
    /// The cosignature's own timestamp (seconds since the epoch).
    pub cosigned_at: i64,
    /// The signature line (`— <witness> <base64>`, no newline).
    pub line: String,
}

/// Which checkpoints to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointQuery {
    /// The largest.
    Latest,
    /// The one of exactly this tree size.
    Size(i64),
    /// The smallest one whose tree size is at least this.
    Covering(i64),
    /// Signed at or after `since` (when given), tree size above `after_size`, ascending.
    Page {
        since: Option<DateTime<Utc>>,
        after_size: i64,
        limit: i64,
    },
}

/// The columns of a checkpoint row.
pub(super) const CHECKPOINT_COLUMNS: &str = "tree_size, root_hash, signed_at, origin, key_id, note";

/// A checkpoint from its row.
pub(super) fn decode_checkpoint(row: &impl ReadColumn) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tree_size: row.required(ReadColumn::int64, "tree_size")?,
        root_hash: row.required(ReadColumn::hash, "root_hash")?,
        signed_at: row.required(ReadColumn::time, "signed_at")?,
        origin: row.required(ReadColumn::text, "origin")?,
        key_id: row.required(ReadColumn::text, "key_id")?,
        note: row.required(ReadColumn::text, "note")?,
    })
}
