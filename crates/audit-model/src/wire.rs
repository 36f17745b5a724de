//! An event as JSON types its fields, before they are checked: the first of parsing's two steps.
//!
//! [`WireEvent`] has each field with its JSON type and nothing else known about it. It is read
//! from JSON text in one pass by serde, without building a JSON tree, when every field has its
//! type and no field is unknown or repeated; otherwise from the JSON tree field by field
//! ([`WireEvent::from_value`]), which records every field of the wrong type (and every unknown
//! one) so that the answer names all of them. Either way the second step,
//! [`WireEvent::into_event`], checks the values and fills the defaults. A text that serde reads
//! is read the same from its tree, so both ways give the same event or the same errors (a
//! property test holds them to it); serde's way only costs less than building the tree (figures
//! in `docs/benchmarks.md`, 2026-12-01).

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::event::{
    check_event_data, AuditEvent, EventOutcome, Receipt, DEFAULT_RETENTION_DAYS, MAX_ACTOR_IP,
    MAX_RETENTION_DAYS, MAX_SHORT, MAX_TEXT, MAX_VERSION, SYSTEM_EVENT_PREFIX,
};
use crate::fields::{
    check_member, check_range, check_text, check_timestamp, check_uuid, required, FieldErrors,
    ObjectReader, Reason, TIMESTAMP_MESSAGE, UUID_MESSAGE,
};
use crate::identifier::{fold, has_invisible, INVISIBLE_MESSAGE};
use crate::json::StrictMap;

/// The id of an event written without one but with its time: a digest of its content (a UUIDv8
/// of the first 16 bytes of SHA-256 over a domain tag and the canonical form with the nil id).
///
/// A writer that retries after an ambiguous failure (the answer lost, a timeout) sends the same
/// content again, gets the same id, and the log stores the event once (the retry is answered as
/// already stored). The platform's client sends no `event_id` but always its own
/// `event_timestamp`, to the nanosecond (kept to the microsecond). The limit, by design: two
/// writes of exactly the same content, time included, are one event. An event written without
/// its time gets the time of receipt, which no retry repeats, so it gets a fresh UUIDv7.
pub(crate) fn content_id(event: &AuditEvent) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"audit-event-content-id/v1\0");
    hasher.update(event.canonical_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// Fields Data Storage sets and a writer cannot give (any value, `null` included, is refused,
/// with [`SERVER_SET_MESSAGE`] rather than as unknown).
const SERVER_SET: [&str; 3] = ["submitted_by", "received_at", "record_kind"];
const SERVER_SET_MESSAGE: &str =
    "is set by Data Storage (the authenticated writer, the time of receipt, the typed record's kind); a writer cannot give it";

/// The fields of an event with their JSON types (`null` reads as absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireEvent {
    event_id: Option<String>,
    event_version: Option<String>,
    /// The platform's name for `event_version`.
    version: Option<String>,
    event_timestamp: Option<String>,
    event_type: Option<String>,
    event_category: Option<String>,
    event_action: Option<String>,
    event_outcome: Option<String>,
    actor_type: Option<String>,
    actor_id: Option<String>,
    actor_ip: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    resource_name: Option<String>,
    correlation_id: Option<String>,
    parent_event_id: Option<String>,
    parent_event_date: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    namespace: Option<String>,
    cluster_id: Option<String>,
    severity: Option<String>,
    duration_ms: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    /// Read strictly: a key repeated inside `event_data` is refused as at the top.
    event_data: Option<StrictMap>,
    retention_days: Option<i64>,
    is_sensitive: Option<bool>,
}

impl WireEvent {
    /// Reads the fields of a JSON tree, recording each of the wrong type and each unknown one.
    pub(crate) fn from_value(value: Value) -> Result<(WireEvent, FieldErrors), FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let wire = WireEvent {
            event_id: r.opt_formatted("event_id", UUID_MESSAGE),
            event_version: r.opt_any_string("event_version"),
            version: r.opt_any_string("version"),
            event_timestamp: r.opt_formatted("event_timestamp", TIMESTAMP_MESSAGE),
            event_type: r.opt_any_string("event_type"),
            event_category: r.opt_any_string("event_category"),
            event_action: r.opt_any_string("event_action"),
            event_outcome: r.opt_any_string("event_outcome"),
            actor_type: r.opt_any_string("actor_type"),
            actor_id: r.opt_any_string("actor_id"),
            actor_ip: r.opt_any_string("actor_ip"),
            resource_type: r.opt_any_string("resource_type"),
            resource_id: r.opt_any_string("resource_id"),
            resource_name: r.opt_any_string("resource_name"),
            correlation_id: r.opt_any_string("correlation_id"),
            parent_event_id: r.opt_formatted("parent_event_id", UUID_MESSAGE),
            parent_event_date: r.opt_formatted("parent_event_date", TIMESTAMP_MESSAGE),
            trace_id: r.opt_any_string("trace_id"),
            span_id: r.opt_any_string("span_id"),
            namespace: r.opt_any_string("namespace"),
            cluster_id: r.opt_any_string("cluster_id"),
            severity: r.opt_any_string("severity"),
            duration_ms: r.opt_any_int("duration_ms"),
            error_code: r.opt_any_string("error_code"),
            error_message: r.opt_any_string("error_message"),
            event_data: r.opt_object("event_data").map(StrictMap),
            retention_days: r.opt_any_int("retention_days"),
            is_sensitive: r.opt_bool("is_sensitive"),
        };
        for key in SERVER_SET {
            if r.take(key).is_some() {
                r.errors_mut()
                    .add(key, Reason::InvalidValue, SERVER_SET_MESSAGE);
            }
        }
        Ok((wire, r.finish()))
    }

    /// Checks every field (adding to `errors`, which may hold the typing step's) and fills the
    /// defaults the platform uses: `event_id` (UUIDv7), `event_version` `1.0`, `event_timestamp`
    /// now, `actor_type` `service`, `actor_id` `<category>-service`, `resource_type` the
    /// category, `resource_id` the correlation id.
    ///
    /// The platform's client writes the version as `version` and an unset optional text as
    /// `""` (a single-cluster setup's `cluster_id`): `version` is `event_version` (both may be
    /// given when they agree), and an empty optional text is absent.
    pub(crate) fn into_event(
        self,
        receipt: Receipt<'_>,
        mut errors: FieldErrors,
    ) -> Result<AuditEvent, FieldErrors> {
        let now = receipt.at;
        let e = &mut errors;
        let opt_text = |e: &mut FieldErrors, key: &str, value: Option<String>, max: usize| {
            value
                .filter(|s| !s.is_empty())
                .and_then(|s| check_text(e, key, s, max))
        };
        let text = |e: &mut FieldErrors, key: &str, value: Option<String>, max: usize| {
            required(e, key, value).and_then(|s| check_text(e, key, s, max))
        };
        let event_id = self.event_id.and_then(|s| check_uuid(e, "event_id", &s));
        let version_text = |e: &mut FieldErrors, key: &str, value: Option<String>| {
            value.and_then(|s| check_text(e, key, s, MAX_VERSION))
        };
        let event_version = match (
            version_text(e, "event_version", self.event_version),
            version_text(e, "version", self.version),
        ) {
            (Some(_), Some(_)) => {
                e.add(
                    "version",
                    Reason::InvalidValue,
                    "give one of event_version and version (the same field under the platform's name)",
                );
                None
            }
            (a, b) => a.or(b),
        };
        let event_timestamp = self
            .event_timestamp
            .and_then(|s| check_timestamp(e, "event_timestamp", &s));
        let identifier = |e: &mut FieldErrors, key: &str, value: Option<String>| {
            text(e, key, value, MAX_SHORT).filter(|s| {
                let visible = !has_invisible(s);
                if !visible {
                    e.add(key, Reason::InvalidValue, INVISIBLE_MESSAGE);
                }
                visible
            })
        };
        let event_type = identifier(e, "event_type", self.event_type);
        let event_category = identifier(e, "event_category", self.event_category);
        let event_action = identifier(e, "event_action", self.event_action);
        let event_outcome = text(e, "event_outcome", self.event_outcome, 50)
            .and_then(|s| check_member(e, "event_outcome", &s, &EventOutcome::ALL));
        let actor_type = opt_text(e, "actor_type", self.actor_type, MAX_SHORT);
        let actor_id = opt_text(e, "actor_id", self.actor_id, MAX_SHORT);
        let actor_ip = opt_text(e, "actor_ip", self.actor_ip, MAX_ACTOR_IP);
        let resource_type = opt_text(e, "resource_type", self.resource_type, MAX_SHORT);
        let resource_id = opt_text(e, "resource_id", self.resource_id, MAX_SHORT);
        let resource_name = opt_text(e, "resource_name", self.resource_name, MAX_SHORT);
        let correlation_id = text(e, "correlation_id", self.correlation_id, MAX_SHORT);
        let parent_event_id = self
            .parent_event_id
            .and_then(|s| check_uuid(e, "parent_event_id", &s));
        let parent_event_date = self
            .parent_event_date
            .and_then(|s| check_timestamp(e, "parent_event_date", &s));
        let trace_id = opt_text(e, "trace_id", self.trace_id, MAX_SHORT);
        let span_id = opt_text(e, "span_id", self.span_id, MAX_SHORT);
        let namespace = opt_text(e, "namespace", self.namespace, MAX_SHORT);
        let cluster_id = opt_text(e, "cluster_id", self.cluster_id, MAX_SHORT);
        let severity = opt_text(e, "severity", self.severity, 50);
        let duration_ms = self
            .duration_ms
            .and_then(|n| check_range(e, "duration_ms", n, 0, i64::MAX));
        let error_code = opt_text(e, "error_code", self.error_code, MAX_SHORT);
        let error_message = opt_text(e, "error_message", self.error_message, MAX_TEXT);
        let retention_days = self
            .retention_days
            .and_then(|n| check_range(e, "retention_days", n, 1, MAX_RETENTION_DAYS));
        let event_data = required(e, "event_data", self.event_data.map(|m| m.0));
        if let Some(data) = &event_data {
            check_event_data(data, e);
        }
        let folded_type = event_type.as_deref().map(fold);
        let record_like = folded_type
            .as_deref()
            .and_then(crate::records::kind_by_prefix)
            .filter(|_| event_id.is_some_and(|id| id.get_version_num() == 5));
        if let Some(kind) = record_like {
            e.add(
                "event_id",
                Reason::InvalidValue,
                format!(
                    "a UUIDv5 event_id with the prefix {} is how {} records were marked before they carried record_kind; give another id (or none)",
                    kind.event_type_prefix(),
                    kind.view
                ),
            );
        }
        if folded_type
            .as_deref()
            .is_some_and(|t| t.starts_with(SYSTEM_EVENT_PREFIX))
        {
            e.add(
                "event_type",
                Reason::InvalidValue,
                format!(
                    "the prefix {SYSTEM_EVENT_PREFIX} is reserved for the events Data Storage writes itself (legal holds, retention runs)"
                ),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Every required field is Some when no error was recorded.
        let (
            Some(event_type),
            Some(event_category),
            Some(event_action),
            Some(event_outcome),
            Some(correlation_id),
            Some(event_data),
        ) = (
            event_type,
            event_category,
            event_action,
            event_outcome
                .as_deref()
                .and_then(EventOutcome::from_str_exact),
            correlation_id,
            event_data,
        )
        else {
            unreachable!("required fields are reported as errors when absent")
        };
        let timed = event_timestamp.is_some();
        let mut event = AuditEvent {
            event_id: event_id.unwrap_or(Uuid::nil()),
            event_version: event_version.unwrap_or_else(|| "1.0".to_string()),
            event_timestamp: event_timestamp.unwrap_or_else(|| crate::timestamp::truncate(now)),
            actor_type: actor_type.unwrap_or_else(|| "service".to_string()),
            // The authenticated writer, else a name made of the category, which fits the field
            // however long the category is (one of 250 characters would make an actor of 258).
            actor_id: actor_id.unwrap_or_else(|| match receipt.writer {
                Some(w) if w.authenticated => {
                    crate::limits::fit(w.principal, MAX_SHORT).into_owned()
                }
                _ => {
                    crate::limits::fit(&format!("{event_category}-service"), MAX_SHORT).into_owned()
                }
            }),
            actor_ip,
            resource_type: resource_type.unwrap_or_else(|| event_category.clone()),
            resource_id: resource_id.unwrap_or_else(|| correlation_id.clone()),
            event_type,
            event_category,
            event_action,
            event_outcome,
            resource_name,
            correlation_id,
            parent_event_id,
            parent_event_date,
            trace_id,
            span_id,
            namespace,
            cluster_id,
            severity,
            duration_ms,
            error_code,
            error_message,
            event_data,
            retention_days: retention_days.map_or(DEFAULT_RETENTION_DAYS, |d| d as i32),
            is_sensitive: self.is_sensitive,
            record_kind: None,
            submitted_by: None,
            received_at: None,
        };
        if event_id.is_none() {
            event.event_id = if timed {
                content_id(&event)
            } else {
                Uuid::now_v7()
            };
        }
        // After the content id: a retry, received later, is the same event.
        Ok(event.received(receipt))
    }
}
