//! What waits to be sent: a unified event or a typed record; the same form is spilled to disk.

use audit_model::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Pending {
    /// For `POST /api/v1/audit/events/batch`.
    Event {
        event: Box<AuditEvent>,
        /// The trace the caller recorded it in (W3C `traceparent`), when traces are on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
    },
    /// For `POST /api/v1/audit/<path>` (a typed seed record).
    Record {
        path: String,
        event_id: Uuid,
        body: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
    },
}

impl Pending {
    pub(crate) fn event_id(&self) -> Uuid {
        match self {
            Pending::Event { event, .. } => event.event_id(),
            Pending::Record { event_id, .. } => *event_id,
        }
    }

    /// The trace the caller recorded it in.
    pub(crate) fn traceparent(&self) -> Option<&str> {
        match self {
            Pending::Event { traceparent, .. } | Pending::Record { traceparent, .. } => {
                traceparent.as_deref()
            }
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Plain data always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
