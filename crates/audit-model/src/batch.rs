//! Answers of the batch endpoint, one result per input item.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What happened to one item of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Stored now.
    Created,
    /// The identical event was already stored; nothing new was written.
    Duplicate,
    /// Refused (invalid, or its `event_id` holds different content); never retry it unchanged.
    Rejected,
    /// Parked durably in the dead-letter queue; it will be stored when the database returns.
    Queued,
}

/// The result for the item at `index` of the request array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchItemResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts of each status in a batch answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSummary {
    pub total: usize,
    pub created: usize,
    pub duplicate: usize,
    pub rejected: usize,
    pub queued: usize,
}

/// The answer of `POST /api/v1/audit/events/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
    pub summary: BatchSummary,
}

impl BatchResponse {
    /// Builds the answer and its summary from results in input order.
    pub fn new(results: Vec<BatchItemResult>) -> Self {
        let mut summary = BatchSummary {
            total: results.len(),
            ..BatchSummary::default()
        };
        for r in &results {
            match r.status {
                ItemStatus::Created => summary.created += 1,
                ItemStatus::Duplicate => summary.duplicate += 1,
                ItemStatus::Rejected => summary.rejected += 1,
                ItemStatus::Queued => summary.queued += 1,
            }
        }
        Self { results, summary }
    }
}
