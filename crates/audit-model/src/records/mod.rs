//! The six typed seed audit records, one per controller, each with its validation rules, its
//! natural key, and its mapping onto a unified [`AuditEvent`].
//!
//! A record is stored as one event of the unified log: `event_id` is a UUIDv5 of the record's
//! kind and natural key (so re-sending a record is idempotent), `correlation_id` is the
//! `remediation_id`, `event_type` is `<category>.<kind>.<status>`, `event_data` is the record
//! itself. SQL views with the seed's table names expose the records with the seed's columns.

mod ai_analysis;
mod effectiveness;
mod notification;
mod orchestration;
mod signal_processing;
mod workflow_execution;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{AuditEvent, EventOutcome, Receipt, DEFAULT_RETENTION_DAYS, MAX_SHORT};
use crate::fields::{FieldErrors, ObjectReader};

pub use ai_analysis::{embedding, AiAnalysisAudit};
pub use effectiveness::EffectivenessAudit;
pub use notification::NotificationAudit;
pub use orchestration::OrchestrationAudit;
pub use signal_processing::SignalProcessingAudit;
pub use workflow_execution::WorkflowExecutionAudit;

/// Identifiers and names.
pub(crate) const MAX_NAME: usize = crate::limits::MAX_SHORT;
/// Enumerated values (checked for length before membership).
pub(crate) const MAX_ENUM: usize = 50;
/// Free text (reports, messages).
pub(crate) const MAX_TEXT: usize = crate::limits::MAX_TEXT;

/// Namespace of the records' UUIDv5 event ids.
pub const RECORD_NAMESPACE: Uuid = Uuid::from_u128(0x6b75_6265_726e_6175_7400_6175_6469_7431);

/// What distinguishes one kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKind {
    /// The seed table name, also the SQL view's name.
    pub view: &'static str,
    /// The REST path segment: `/api/v1/audit/<path>`.
    pub path: &'static str,
    /// `event_category` of its events.
    pub category: &'static str,
    /// Middle part of its `event_type`.
    pub noun: &'static str,
    /// `resource_type` of its events (the CRD kind).
    pub resource_type: &'static str,
    /// `actor_id` of its events.
    pub actor_id: &'static str,
    /// The field that identifies the subject (`GET /api/v1/audit/<path>/{id}`).
    pub id_field: &'static str,
    /// The view column of the record's main time (what `since`/`until` filter on).
    pub time_field: &'static str,
    /// Fields a list can be filtered by (besides `since`/`until`).
    pub filters: &'static [&'static str],
}

impl RecordKind {
    /// The `event_type` prefix of this kind's events (`<category>.<noun>.`).
    pub fn event_type_prefix(&self) -> String {
        format!("{}.{}.", self.category, self.noun)
    }
}

/// Every kind, in the platform's order.
pub const KINDS: [RecordKind; 6] = [
    NotificationAudit::KIND,
    SignalProcessingAudit::KIND,
    OrchestrationAudit::KIND,
    AiAnalysisAudit::KIND,
    WorkflowExecutionAudit::KIND,
    EffectivenessAudit::KIND,
];

/// The server's settings a record's validation depends on.
#[derive(Debug, Clone, Copy)]
pub struct RecordRules {
    pub now: DateTime<Utc>,
    /// Required length of an AI decision's `embedding`.
    pub embedding_dimension: usize,
}

impl RecordRules {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            embedding_dimension: 1536,
        }
    }
}

/// A typed seed audit record.
pub trait SeedRecord: Serialize + Sized + Send + 'static {
    const KIND: RecordKind;

    /// Parses untrusted JSON, reporting every bad field at once.
    fn parse(value: Value, rules: &RecordRules) -> Result<Self, FieldErrors>;
    /// The natural key, field by field, in the order that defines the record's identity.
    fn natural_key(&self) -> Vec<(&'static str, String)>;
    /// The status or phase that ends the `event_type`.
    fn status(&self) -> &str;
    fn outcome(&self) -> EventOutcome;
    fn remediation_id(&self) -> &str;
    /// Value of [`RecordKind::id_field`].
    fn subject_id(&self) -> &str;
    /// The record's main time, the event's `event_timestamp`.
    fn main_time(&self) -> DateTime<Utc>;

    /// Whether `stored` (the `event_data` of a stored record with the same natural key) holds the
    /// same record, so that re-sending it is a no-op rather than a conflict.
    fn same_record(&self, stored: &Map<String, Value>) -> bool {
        matches!(serde_json::to_value(self), Ok(Value::Object(mine)) if &mine == stored)
    }

    /// The deterministic event id: UUIDv5 of the kind and the natural key.
    fn event_id(&self) -> Uuid {
        let mut name = Self::KIND.view.to_string();
        for (_, value) in self.natural_key() {
            name.push('\u{1f}');
            name.push_str(&value);
        }
        Uuid::new_v5(&RECORD_NAMESPACE, name.as_bytes())
    }

    /// The record as an event of the unified log, received as `receipt` says: its actor is the
    /// authenticated writer, else the kind's service.
    fn to_event(&self, receipt: Receipt<'_>) -> AuditEvent {
        let kind = Self::KIND;
        let event_data = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A record is a struct of plain fields, which serialises to an object.
            _ => Map::new(),
        };
        AuditEvent {
            event_id: self.event_id(),
            event_version: "1.0".to_string(),
            event_timestamp: self.main_time(),
            event_type: format!("{}{}", kind.event_type_prefix(), self.status()),
            event_category: kind.category.to_string(),
            event_action: self.status().to_string(),
            event_outcome: self.outcome(),
            actor_type: "service".to_string(),
            actor_id: match receipt.writer {
                Some(w) if w.authenticated => {
                    crate::limits::fit(w.principal, MAX_SHORT).into_owned()
                }
                _ => kind.actor_id.to_string(),
            },
            actor_ip: None,
            resource_type: kind.resource_type.to_string(),
            resource_id: self.subject_id().to_string(),
            resource_name: None,
            correlation_id: self.remediation_id().to_string(),
            parent_event_id: None,
            parent_event_date: None,
            trace_id: None,
            span_id: None,
            namespace: None,
            cluster_id: None,
            severity: None,
            duration_ms: None,
            error_code: None,
            error_message: None,
            event_data,
            retention_days: DEFAULT_RETENTION_DAYS,
            is_sensitive: None,
            record_kind: Some(kind.view.to_string()),
            submitted_by: None,
            received_at: None,
        }
        .received(receipt)
    }
}

/// The kind whose `event_type` prefix `event_type` starts with, if any. With a UUIDv5 id such
/// an event is a typed record stored before records carried `record_kind` (see the unified
/// parser, which refuses that combination).
pub fn kind_by_prefix(event_type: &str) -> Option<RecordKind> {
    // `<category>.<noun>.`, compared in place.
    KINDS.into_iter().find(|k| {
        event_type
            .strip_prefix(k.category)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(k.noun))
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A required value, or `unreachable` when `errors` is empty (every absent required field adds an
/// error).
pub(crate) fn req<T>(value: Option<T>) -> T {
    value.expect("a required field without a recorded error")
}

/// Ends parsing: the errors, or the record built by `build` (which may use [`req`]).
pub(crate) fn finish<T>(r: ObjectReader, build: impl FnOnce() -> T) -> Result<T, FieldErrors> {
    let errors = r.finish();
    if errors.is_empty() {
        Ok(build())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct() {
        let prefixes: std::collections::HashSet<String> =
            KINDS.iter().map(|k| k.event_type_prefix()).collect();
        assert_eq!(prefixes.len(), 6);
        let views: std::collections::HashSet<&str> = KINDS.iter().map(|k| k.view).collect();
        assert_eq!(views.len(), 6);
        assert_eq!(
            kind_by_prefix("notification.delivery.sent").map(|k| k.view),
            Some("notification_audit")
        );
        assert_eq!(kind_by_prefix("notification.message.sent"), None);
        for kind in KINDS {
            let prefix = kind.event_type_prefix();
            assert_eq!(
                kind_by_prefix(&format!("{prefix}x")).map(|k| k.view),
                Some(kind.view)
            );
            assert_eq!(kind_by_prefix(&prefix[..prefix.len() - 1]), None);
        }
    }
}
