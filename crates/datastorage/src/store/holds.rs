//! Legal holds: what a hold is, and how it is placed or released.

use chrono::{DateTime, Utc};

use super::columns::ReadColumn;
use super::StoreError;

/// A legal hold on a correlation: while active, none of its events is purged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LegalHold {
    pub id: i64,
    pub correlation_id: String,
    pub reason: String,
    pub placed_by: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: DateTime<Utc>,
    #[serde(with = "audit_model::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<DateTime<Utc>>,
    pub release_reason: Option<String>,
    pub released_by: Option<String>,
}

/// What placing a hold did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceHold {
    Placed(LegalHold),
    /// The correlation was already under this active hold.
    AlreadyHeld(LegalHold),
}

/// A hold being placed or released: who and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    pub correlation_id: String,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The columns of a legal hold row.
pub(crate) const HOLD_COLUMNS: &str = "id, correlation_id, reason, placed_by, placed_at, \
    released_at, release_reason, released_by";

/// A hold from its row.
pub(super) fn decode_hold(row: &impl ReadColumn) -> Result<LegalHold, StoreError> {
    Ok(LegalHold {
        id: row.required(ReadColumn::int64, "id")?,
        correlation_id: row.required(ReadColumn::text, "correlation_id")?,
        reason: row.required(ReadColumn::text, "reason")?,
        placed_by: row.required(ReadColumn::text, "placed_by")?,
        placed_at: row.required(ReadColumn::time, "placed_at")?,
        released_at: row.time("released_at".into())?,
        release_reason: row.text("release_reason".into())?,
        released_by: row.text("released_by".into())?,
    })
}
