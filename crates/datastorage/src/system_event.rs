//! The events Data Storage writes about the log itself (legal holds, retention runs, the access
//! trail): built directly rather than parsed, since their `event_type` carries the
//! `datastorage.` prefix the API refuses from clients, and attested to the service's own
//! principal.

use audit_model::{AuditEvent, EventField, EventOutcome, FieldValue, DEFAULT_RETENTION_DAYS};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::PreparedEvent;

/// Namespace of the ids of the events Data Storage writes itself (UUIDv5).
pub(crate) const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6b75_6265_726e_6175_742d_6175_6469_7400);

/// An event Data Storage writes about the log itself. Built directly, not parsed: its
/// `event_type` carries the prefix the API refuses from clients.
pub(crate) struct SystemEvent {
    pub event_id: Uuid,
    pub at: DateTime<Utc>,
    pub event_type: &'static str,
    pub action: &'static str,
    pub actor: (&'static str, String),
    pub resource: (&'static str, String),
    pub correlation_id: String,
    pub data: serde_json::Value,
}

impl SystemEvent {
    pub(crate) fn prepare(self) -> PreparedEvent {
        let serde_json::Value::Object(event_data) = &self.data else {
            unreachable!("system event data is a JSON object")
        };
        let event = AuditEvent::from_fields(|field| {
            Ok::<_, std::convert::Infallible>(match field {
                EventField::EventId => FieldValue::Uuid(self.event_id),
                EventField::EventVersion => FieldValue::Text("1.0".into()),
                EventField::EventTimestamp => {
                    FieldValue::Time(audit_model::timestamp::truncate(self.at))
                }
                EventField::EventType => FieldValue::Text(self.event_type.into()),
                EventField::EventCategory => FieldValue::Text("datastorage".into()),
                EventField::EventAction => FieldValue::Text(self.action.into()),
                EventField::EventOutcome => FieldValue::Text(EventOutcome::Success.as_str().into()),
                EventField::ActorType => FieldValue::Text(self.actor.0.into()),
                EventField::ActorId => FieldValue::Text(self.actor.1.clone()),
                EventField::ResourceType => FieldValue::Text(self.resource.0.into()),
                EventField::ResourceId => FieldValue::Text(self.resource.1.clone()),
                EventField::CorrelationId => FieldValue::Text(self.correlation_id.clone()),
                EventField::EventData => FieldValue::Object(event_data.clone()),
                EventField::RetentionDays => FieldValue::Int(DEFAULT_RETENTION_DAYS.into()),
                // Written by the service itself, at the time of what it records (so that the
                // same record written again is the same event).
                EventField::SubmittedBy => FieldValue::Text(crate::auth::SERVICE_PRINCIPAL.into()),
                EventField::ReceivedAt => {
                    FieldValue::Time(audit_model::timestamp::truncate(self.at))
                }
                _ => FieldValue::Absent,
            })
        });
        PreparedEvent::new(event.expect("a system event has every required field"))
    }
}
