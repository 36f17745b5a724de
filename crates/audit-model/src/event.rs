//! The unified audit event (ADR-034 fields) and its stored form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event_field::{FieldRef, FromFieldsError};
use crate::fields::{FieldErrors, Reason, DUPLICATE_KEY_MESSAGE};
use crate::json::StrictJsonError;
use crate::wire::WireEvent;

/// Longest value of a `VARCHAR` field of the event.
pub use crate::limits::MAX_SHORT;
/// Longest `error_message` (a `TEXT` field; bounded so one event cannot exhaust memory).
pub use crate::limits::MAX_TEXT;
/// Longest `event_version` (the platform's `version`).
pub const MAX_VERSION: usize = 20;
/// Longest `actor_ip` (an IPv6 address written in full with an IPv4 tail).
pub const MAX_ACTOR_IP: usize = 45;
/// Largest serialised `event_data`.
pub const MAX_EVENT_DATA_BYTES: usize = 256 * 1024;
/// Deepest nesting of `event_data` (the object itself is depth 1).
pub const MAX_EVENT_DATA_DEPTH: usize = 10;
/// The `event_type` prefix of the events Data Storage writes about the log itself; clients
/// cannot use it, so such events cannot be forged through the API.
pub const SYSTEM_EVENT_PREFIX: &str = "datastorage.";

/// Retention when the event does not say (seven years, the platform's compliance default).
pub const DEFAULT_RETENTION_DAYS: i32 = 2555;
pub const MAX_RETENTION_DAYS: i64 = 36_500;

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventOutcome {
    Success,
    Failure,
    Pending,
}

impl EventOutcome {
    pub const ALL: [&'static str; 3] = ["success", "failure", "pending"];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Success => "success",
            EventOutcome::Failure => "failure",
            EventOutcome::Pending => "pending",
        }
    }

    pub fn from_str_exact(s: &str) -> Option<Self> {
        match s {
            "success" => Some(EventOutcome::Success),
            "failure" => Some(EventOutcome::Failure),
            "pending" => Some(EventOutcome::Pending),
            _ => None,
        }
    }
}

/// What the server attests of an event it receives: when it received it and, when it knows,
/// who sent it. Parsing records both in the event (`received_at`, `submitted_by`), outside what
/// decides an id-less event's content id, so a retry is still the same event.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    pub at: DateTime<Utc>,
    pub writer: Option<Writer<'a>>,
}

/// Who sent an event.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// Recorded as `submitted_by`.
    pub principal: &'a str,
    /// The principal was authenticated (not `anonymous`): it is then also the actor of an event
    /// that names none.
    pub authenticated: bool,
}

impl<'a> Receipt<'a> {
    pub fn new(at: DateTime<Utc>, writer: Writer<'a>) -> Receipt<'a> {
        Receipt {
            at,
            writer: Some(writer),
        }
    }
}

/// A receipt at `at` by an unknown writer: the event is not attested (neither field is set).
impl From<DateTime<Utc>> for Receipt<'static> {
    fn from(at: DateTime<Utc>) -> Receipt<'static> {
        Receipt { at, writer: None }
    }
}

/// Why a JSON text is not an event.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    Fields(FieldErrors),
}

crate::event_field::define_event! {
    // Built by the parsers (`AuditEvent::parse`, `AuditEvent::parse_json`) or rebuilt from its
    // fields (`AuditEvent::from_fields`); read through its accessors. `Deserialize` reads an
    // event whose content is proven otherwise (an export's line, checked by its hash). This
    // list is the one definition of the event's fields (`name / Variant: type`): the stores,
    // the canonical encoding and the exports follow it through `EventField`. (The doc comment
    // below is the API document's description of the event; its line breaks are kept there.)
    /// One audit event with every default filled in: exactly the immutable content that is stored
    /// and hashed. Absent optional fields are omitted from the canonical encoding, so adding an
    /// optional field later does not change the hash of older events.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct AuditEvent {
        event_id / EventId: Uuid,
        event_version / EventVersion: String,
        #[serde(with = "crate::timestamp")]
        #[schema(value_type = String, format = DateTime)]
        event_timestamp / EventTimestamp: DateTime<Utc>,
        event_type / EventType: String,
        event_category / EventCategory: String,
        event_action / EventAction: String,
        event_outcome / EventOutcome: EventOutcome,
        actor_type / ActorType: String,
        actor_id / ActorId: String,
        /// The address the action came from (the platform's `actor_ip`, at most 45 characters:
        /// an IPv6 address in full).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor_ip / ActorIp: Option<String>,
        resource_type / ResourceType: String,
        resource_id / ResourceId: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_name / ResourceName: Option<String>,
        correlation_id / CorrelationId: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_event_id / ParentEventId: Option<Uuid>,
        /// The parent event's time as the writer gave it (the platform's partition hint for
        /// `parent_event_id`; kept as written).
        #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::timestamp::option")]
        #[schema(value_type = Option<String>, format = DateTime)]
        parent_event_date / ParentEventDate: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id / TraceId: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        span_id / SpanId: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace / Namespace: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_id / ClusterId: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity / Severity: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms / DurationMs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code / ErrorCode: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_message / ErrorMessage: Option<String>,
        #[schema(value_type = Object)]
        event_data / EventData: Map<String, Value>,
        retention_days / RetentionDays: i32,
        /// The writer marks the event as holding sensitive data (personal data, secrets).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_sensitive / IsSensitive: Option<bool>,
        /// The kind of typed record (its view, such as `notification_audit`) of an event written
        /// through a typed record endpoint; set by Data Storage, never by a writer of the
        /// unified log. The typed views find their rows by it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record_kind / RecordKind: Option<String>,
        /// Who wrote the event: the principal Data Storage authenticated for the request that
        /// brought it (`anonymous` where authentication is disabled). Set by the server, never by
        /// a writer; signed with the rest of the event. Absent on events written before writers
        /// were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitted_by / SubmittedBy: Option<String>,
        /// When Data Storage received the request that brought the event. Set by the server and,
        /// on an event with `submitted_by`, signed with the rest of it (on an older event it is
        /// the commit time, outside the signed content).
        #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::timestamp::option")]
        #[schema(value_type = Option<String>, format = DateTime)]
        received_at / ReceivedAt: Option<DateTime<Utc>>,
    }
}

impl AuditEvent {
    /// Parses an untrusted JSON event, filling defaults as the platform does: `event_id` (UUIDv7),
    /// `event_version` `1.0`, `event_timestamp` now, `actor_type` `service`, `actor_id`
    /// `<category>-service`, `resource_type` the category, `resource_id` the correlation id.
    /// Every bad field is reported at once.
    pub fn parse<'a>(
        value: Value,
        receipt: impl Into<Receipt<'a>>,
    ) -> Result<AuditEvent, FieldErrors> {
        let (wire, errors) = WireEvent::from_value(value)?;
        wire.into_event(receipt.into(), errors)
    }

    /// Parses an untrusted event from JSON text: the same event, or the same errors, as
    /// [`AuditEvent::parse`] of the text's JSON value, with less work when every field has its
    /// JSON type (see `wire`).
    pub fn parse_json<'a>(
        text: &[u8],
        receipt: impl Into<Receipt<'a>>,
    ) -> Result<AuditEvent, ParseError> {
        let receipt = receipt.into();
        match serde_json::from_slice::<WireEvent>(text) {
            Ok(wire) => wire
                .into_event(receipt, FieldErrors::default())
                .map_err(ParseError::Fields),
            // Not well typed, not JSON, or a repeated key: the tree says which fields are wrong,
            // or what is.
            Err(_) => match crate::json::from_slice(text) {
                Ok(value) => AuditEvent::parse(value, receipt).map_err(ParseError::Fields),
                Err(StrictJsonError::Syntax(e)) => Err(ParseError::Json(e)),
                Err(StrictJsonError::DuplicateKey { path }) => {
                    let mut errors = FieldErrors::default();
                    errors.add(path, Reason::DuplicateKey, DUPLICATE_KEY_MESSAGE);
                    Err(ParseError::Fields(errors))
                }
            },
        }
    }

    /// The event attributed to a person the service authenticated (through the proxy in front
    /// of it): `actor_type` `user`, `actor_id` the person, whatever the writer claimed. The id
    /// stays, so a retry of the same request is still the same event.
    pub fn attributed_to(mut self, person: &str) -> AuditEvent {
        self.actor_type = "user".to_string();
        self.actor_id = person.to_string();
        self
    }

    /// The event as `receipt` received it: `submitted_by` the writer and `received_at` the time
    /// (to the microsecond, as stored); an unknown writer attests nothing.
    pub fn received(mut self, receipt: Receipt<'_>) -> AuditEvent {
        if let Some(writer) = receipt.writer {
            self.submitted_by = Some(crate::limits::fit(writer.principal, MAX_SHORT).into_owned());
            self.received_at = Some(crate::timestamp::truncate(receipt.at));
        }
        self
    }

    /// The event with the trace context it was written in (`trace_id`, `span_id`), unless the
    /// writer gave either itself.
    pub fn traced(mut self, trace_id: &str, span_id: &str) -> AuditEvent {
        if self.trace_id.is_none() && self.span_id.is_none() {
            self.trace_id = Some(trace_id.to_string());
            self.span_id = Some(span_id.to_string());
        }
        self
    }

    /// The same content with another attestation (`submitted_by`, `received_at`) and trace
    /// context (`trace_id`, `span_id`): what this event is as another request brought it. A
    /// retry of a write is received again, later, perhaps from another trace (a controller that
    /// records an event again after a restart), so two receipts of one event differ only
    /// there; comparing `stored` with `incoming.attested_as(stored)` tells a repeat from a
    /// conflict.
    pub fn attested_as(&self, other: &AuditEvent) -> AuditEvent {
        AuditEvent {
            trace_id: other.trace_id.clone(),
            span_id: other.span_id.clone(),
            ..self
                .clone()
                .with_attestation(other.submitted_by.clone(), other.received_at)
        }
    }

    /// The event with this attestation (as a store read it back).
    pub fn with_attestation(
        self,
        submitted_by: Option<String>,
        received_at: Option<DateTime<Utc>>,
    ) -> AuditEvent {
        AuditEvent {
            submitted_by,
            received_at,
            ..self
        }
    }

    /// The event as its leaf hash covers it: without a receipt time that is not signed.
    pub fn signed_content(self) -> AuditEvent {
        if self.receipt_signed() {
            self
        } else {
            AuditEvent {
                received_at: None,
                ..self
            }
        }
    }

    /// Whether `received_at` is signed: it is on an event with `submitted_by` (the two are the
    /// server's attestation, one unit); an event written before writers were recorded has its
    /// commit time there, outside its leaf.
    fn receipt_signed(&self) -> bool {
        self.submitted_by.is_some()
    }

    /// RFC 8785 (JCS) encoding of the event ([`canonical_bytes_of`] its fields).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_bytes_of(|field| self.get(field))
    }

    /// RFC 9162 leaf hash: `SHA-256(0x00 || canonical_bytes)`.
    pub fn leaf_hash(&self) -> LeafHash {
        leaf_hash_of_bytes(&self.canonical_bytes())
    }
}

/// RFC 8785 (JCS) encoding of the event whose fields `field` gives (absent ones omitted).
///
/// The same bytes as encoding the whole event with the JCS crate (a property test checks it
/// for any content), written member by member: the member names are the fields' ASCII names,
/// so their JCS order (UTF-16 code units) is their byte order ([`EventField::jcs_order`]).
/// Text is written by serde_json, whose string escapes are exactly JCS's; numbers as ECMAScript
/// prints the double (`ryu-js`, as the crate does); `event_data` by [`Members::value`]. The
/// crate buffers every member and parses each object key back from JSON to sort it, which
/// profiles of the write path showed as the largest single cost of a request.
///
/// `received_at` is part of the content only beside `submitted_by` (the server's attestation,
/// one unit); an event written before writers were recorded has its commit time there,
/// outside its leaf.
pub fn canonical_bytes_of<'a>(field: impl Fn(EventField) -> FieldRef<'a>) -> Vec<u8> {
    let members = match field(EventField::EventData) {
        FieldRef::Object(data) => data.len(),
        _ => 0,
    };
    let receipt_signed = field(EventField::SubmittedBy) != FieldRef::Absent;
    let mut m = Members(Vec::with_capacity(384 + members * 32));
    for &f in EventField::jcs_order() {
        let name = f.name();
        if f == EventField::ReceivedAt && !receipt_signed {
            continue;
        }
        match field(f) {
            FieldRef::Absent => {}
            FieldRef::Uuid(u) => m.uuid(name, &u),
            FieldRef::Text(t) => m.text(name, t),
            FieldRef::Time(t) => m.text(name, &crate::timestamp::format(&t)),
            // Integers as JCS writes every number: the double's shortest form.
            FieldRef::Int(i) => m.number(name, i as f64),
            FieldRef::Object(o) => m.object(name, o),
            FieldRef::Bool(b) => m.boolean(name, b),
        }
    }
    m.finish()
}

/// The leaf hash of the event whose fields `field` gives, without the event built: a stored
/// row's leaf recomputed from the row's columns as they are read (the verifier's way, which
/// saves rebuilding every event it reads). The same hash as [`AuditEvent::leaf_hash`] of the
/// event [`AuditEvent::from_fields`] rebuilds from the same values; `Err` names a required
/// field that is absent (from which no event could be rebuilt either).
pub fn leaf_hash_of<'a>(
    field: impl Fn(EventField) -> FieldRef<'a>,
) -> Result<LeafHash, FromFieldsError<std::convert::Infallible>> {
    if let Some(&absent) = EventField::ALL
        .iter()
        .find(|f| f.required() && field(**f) == FieldRef::Absent)
    {
        return Err(FromFieldsError::Value {
            field: absent.name(),
            problem: crate::event_field::ABSENT,
        });
    }
    Ok(leaf_hash_of_bytes(&canonical_bytes_of(field)))
}

/// RFC 9162 leaf hash of canonical bytes: `SHA-256(0x00 || bytes)`.
fn leaf_hash_of_bytes(canonical: &[u8]) -> LeafHash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(canonical);
    LeafHash(hasher.finalize().into())
}

impl EventField {
    /// The fields in the order JCS sorts member names (UTF-16 code units, which for these ASCII
    /// names is byte order).
    pub fn jcs_order() -> &'static [EventField] {
        static ORDER: std::sync::LazyLock<Vec<EventField>> = std::sync::LazyLock::new(|| {
            let mut fields = EventField::ALL.to_vec();
            fields.sort_by_key(|f| f.name());
            fields
        });
        &ORDER
    }
}

/// A JCS object written member by member, in the order given (which must be JCS order).
struct Members(Vec<u8>);

impl Members {
    fn name(&mut self, name: &str) {
        self.0.push(if self.0.is_empty() { b'{' } else { b',' });
        self.0.push(b'"');
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A number as JCS writes it: the double's shortest ECMAScript form.
    fn number(&mut self, name: &str, value: f64) {
        self.name(name);
        self.write_number(value);
    }

    fn write_number(&mut self, value: f64) {
        // An integer below 2^53 in magnitude is a double's exactly, and ECMAScript prints it digit
        // for digit (-0 as 0): written as the integer, without the search for the shortest
        // digits (most numbers of an event are such: counts, durations, retention days).
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if value.fract() == 0.0 && value.abs() < EXACT {
            self.0
                .extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
            return;
        }
        // serde_json holds no NaN or infinity, and the event's integers convert to finite doubles.
        self.0
            .extend_from_slice(ryu_js::Buffer::new().format_finite(value).as_bytes());
    }

    fn boolean(&mut self, name: &str, value: bool) {
        self.name(name);
        self.value(&Value::Bool(value));
    }

    fn object(&mut self, name: &str, value: &Map<String, Value>) {
        self.name(name);
        self.write_object(value);
    }

    /// A JSON value in JCS form: numbers as doubles, object members sorted by the UTF-16 code
    /// units of their names, strings with serde_json's (JCS's) escapes, no white space.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.0.extend_from_slice(b"null"),
            Value::Bool(true) => self.0.extend_from_slice(b"true"),
            Value::Bool(false) => self.0.extend_from_slice(b"false"),
            // Without serde_json's arbitrary precision every number has a double form.
            Value::Number(n) => self.write_number(n.as_f64().unwrap_or_default()),
            Value::String(s) => self.write_string(s),
            Value::Array(items) => {
                self.0.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.0.push(b',');
                    }
                    self.value(item);
                }
                self.0.push(b']');
            }
            Value::Object(map) => self.write_object(map),
        }
    }

    fn write_object(&mut self, map: &Map<String, Value>) {
        // The map iterates in UTF-8 byte (code point) order, which is UTF-16 order unless a name
        // holds characters from U+E000 on; only then are the members sorted again.
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        if map.keys().any(|k| k.chars().any(|c| c >= '\u{e000}')) {
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        }
        self.0.push(b'{');
        for (i, (key, value)) in members.into_iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.write_string(key);
            self.0.push(b':');
            self.value(value);
        }
        self.0.push(b'}');
    }

    fn write_string(&mut self, value: &str) {
        // Writing a string into a Vec cannot fail.
        serde_json::to_writer(&mut self.0, value).expect("a string always serialises");
    }

    fn text(&mut self, name: &str, value: &str) {
        self.name(name);
        self.write_string(value);
    }

    /// A UUID as serde writes it: hyphenated lower-case text.
    fn uuid(&mut self, name: &str, value: &Uuid) {
        self.text(
            name,
            value.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
        );
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

pub(crate) fn check_event_data(data: &Map<String, Value>, errors: &mut FieldErrors) {
    let depth = 1 + data.values().map(depth_of).max().unwrap_or(0);
    if depth > MAX_EVENT_DATA_DEPTH {
        errors.add(
            "event_data",
            Reason::TooDeep,
            format!("must not be nested deeper than {MAX_EVENT_DATA_DEPTH} levels"),
        );
        return;
    }
    if data.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)) {
        errors.add(
            "event_data",
            Reason::InvalidValue,
            crate::fields::NUL_MESSAGE,
        );
        return;
    }
    // Counted as it is written, not collected. A map of JSON values always serialises.
    let mut size = ByteCount(0);
    let size = serde_json::to_writer(&mut size, data).map_or(usize::MAX, |()| size.0);
    if size > MAX_EVENT_DATA_BYTES {
        errors.add(
            "event_data",
            Reason::TooLarge,
            format!("must be at most {} KiB", MAX_EVENT_DATA_BYTES / 1024),
        );
    }
}

/// A writer that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(m) => 1 + m.values().map(depth_of).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// An event's RFC 9162 leaf hash: 32 bytes inside the program, lower-case hex at its edges
/// (JSON, text columns, messages).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeafHash([u8; 32]);

impl LeafHash {
    pub const fn new(bytes: [u8; 32]) -> LeafHash {
        LeafHash(bytes)
    }

    /// The hash written as 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(text: &str) -> Option<LeafHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(LeafHash(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<LeafHash> for [u8; 32] {
    fn from(hash: LeafHash) -> [u8; 32] {
        hash.0
    }
}

impl std::fmt::Display for LeafHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for LeafHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeafHash({self})")
    }
}

impl Serialize for LeafHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for LeafHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        LeafHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a leaf hash is 64 hex digits"))
    }
}

/// An event as stored in the log: its content plus what the server assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Position in the log: gap-free and strictly increasing in commit order.
    pub seq: i64,
    /// Hex of the RFC 9162 leaf hash of the event.
    #[schema(value_type = String)]
    pub leaf_hash: LeafHash,
    /// When the log committed the event: taken where the order is decided, so it never steps
    /// back along `seq` (unlike `received_at`, the receipt of the request, which a write held in
    /// the dead-letter queue keeps). Not part of the signed content.
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub committed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        crate::timestamp::parse("2026-11-27T12:00:00Z").unwrap()
    }

    fn minimal() -> Value {
        json!({
            "event_type": "notification.message.sent",
            "event_category": "notification",
            "event_action": "sent",
            "event_outcome": "success",
            "correlation_id": "rr-1",
            "event_data": {"channel": "slack"}
        })
    }

    #[test]
    fn defaults_follow_the_platform() {
        let e = AuditEvent::parse(minimal(), now()).unwrap();
        assert_eq!(e.actor_type, "service");
        assert_eq!(e.actor_id, "notification-service");
        assert_eq!(e.resource_type, "notification");
        assert_eq!(e.resource_id, "rr-1");
        assert_eq!(e.event_timestamp, now());
        assert_eq!(e.retention_days, DEFAULT_RETENTION_DAYS);
        assert_eq!(e.event_id.get_version_num(), 7);
    }

    /// An event as the platform's generated client writes it.
    fn platform() -> Value {
        json!({
            "version": "1.0",
            "event_type": "signalprocessing.signal.processed",
            "event_timestamp": "2026-11-27T11:59:58.123456789Z",
            "event_category": "signalprocessing",
            "event_action": "processed",
            "event_outcome": "success",
            "actor_type": "service",
            "actor_id": "signalprocessing-controller",
            "actor_ip": "2001:db8::7",
            "resource_type": "SignalProcessing",
            "resource_id": "sp-1",
            "correlation_id": "rr-1",
            "parent_event_id": "0190b5a2-1c3d-7e4f-8a9b-000000000001",
            "parent_event_date": "2026-11-27T11:59:00Z",
            "namespace": "payments",
            "cluster_id": "",
            "is_sensitive": false,
            "event_data": {"event_type": "signalprocessing.signal.processed", "phase": "Completed"}
        })
    }

    #[test]
    fn the_platform_clients_fields_are_taken_with_their_meaning() {
        let e = AuditEvent::parse(platform(), now()).unwrap();
        assert_eq!(e.event_version(), "1.0");
        assert_eq!(e.actor_ip(), Some("2001:db8::7"));
        assert_eq!(
            e.parent_event_date().map(|t| crate::timestamp::format(&t)),
            Some("2026-11-27T11:59:00.000000Z".to_string())
        );
        assert_eq!(e.is_sensitive(), Some(false));
        // An empty optional text is how that client writes "unset".
        assert_eq!(e.cluster_id(), None);
        let canonical = String::from_utf8(e.canonical_bytes()).unwrap();
        assert!(canonical.contains(r#""is_sensitive":false"#), "{canonical}");
        assert!(!canonical.contains("cluster_id"), "{canonical}");
        // Both names at once are refused, naming the platform's.
        let mut both = platform();
        both["event_version"] = json!("1.0");
        let errors = AuditEvent::parse(both, now()).unwrap_err();
        assert!(errors.get("version").is_some(), "{errors}");
        // Blank is still refused; only empty means unset.
        let mut blank = platform();
        blank["cluster_id"] = json!("  ");
        assert!(AuditEvent::parse(blank, now())
            .unwrap_err()
            .get("cluster_id")
            .is_some());
    }

    #[test]
    fn an_event_without_id_but_with_its_time_is_named_by_its_content() {
        let first = AuditEvent::parse(platform(), now()).unwrap();
        // A retry, parsed later: the same id.
        let later = now() + chrono::Duration::seconds(30);
        let retry = AuditEvent::parse(platform(), later).unwrap();
        assert_eq!(first.event_id(), retry.event_id());
        assert_eq!(first.event_id().get_version_num(), 8);
        assert_eq!(first, retry);
        // Any change of content is another event.
        let mut other = platform();
        other["event_data"]["phase"] = json!("Failed");
        assert_ne!(
            AuditEvent::parse(other, now()).unwrap().event_id(),
            first.event_id()
        );
        let mut next_micro = platform();
        next_micro["event_timestamp"] = json!("2026-11-27T11:59:58.123457Z");
        assert_ne!(
            AuditEvent::parse(next_micro, now()).unwrap().event_id(),
            first.event_id()
        );
        // Without its time, the event is stamped on receipt and gets a fresh UUIDv7 each time.
        let mut untimed = platform();
        untimed.as_object_mut().unwrap().remove("event_timestamp");
        let (a, b) = (
            AuditEvent::parse(untimed.clone(), now()).unwrap(),
            AuditEvent::parse(untimed, now()).unwrap(),
        );
        assert_eq!(a.event_id().get_version_num(), 7);
        assert_ne!(a.event_id(), b.event_id());
        // An id given is kept.
        let mut named = platform();
        named["event_id"] = json!("0190b5a2-1c3d-7e4f-8a9b-0000000000aa");
        assert_eq!(
            AuditEvent::parse(named, now())
                .unwrap()
                .event_id()
                .to_string(),
            "0190b5a2-1c3d-7e4f-8a9b-0000000000aa"
        );
    }

    #[test]
    fn the_default_actor_fits_its_field_for_the_longest_category() {
        let mut v = minimal();
        v["event_category"] = json!("c".repeat(MAX_SHORT));
        let e = AuditEvent::parse(v, now()).unwrap();
        assert_eq!(e.actor_id().chars().count(), MAX_SHORT);
        assert!(e.actor_id().starts_with("ccc"));
        let mut short = minimal();
        short["event_category"] = json!("gateway");
        assert_eq!(
            AuditEvent::parse(short, now()).unwrap().actor_id(),
            "gateway-service"
        );
    }

    #[test]
    fn the_system_prefix_is_refused() {
        let mut v = minimal();
        v["event_type"] = json!("datastorage.legal_hold.placed");
        let errors = AuditEvent::parse(v, now()).unwrap_err();
        assert!(errors.to_string().contains("reserved"), "{errors}");
    }

    #[test]
    fn the_system_prefix_is_refused_however_it_is_spelled() {
        for (spelling, reason) in [
            ("DataStorage.legal_hold.placed", "reserved"),
            ("DATASTORAGE.x", "reserved"),
            ("ｄａｔａｓｔｏｒａｇｅ.x", "reserved"),
            ("data\u{200b}storage.x", "invisible"),
            ("datastorage\u{2060}.x", "invisible"),
        ] {
            let mut v = minimal();
            v["event_type"] = json!(spelling);
            let errors = AuditEvent::parse(v, now()).unwrap_err();
            let message = &errors.get("event_type").unwrap().message;
            assert!(message.contains(reason), "{spelling:?}: {message}");
        }
    }

    #[test]
    fn a_leap_second_or_year_zero_is_refused_in_every_time_field() {
        for ts in ["2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z"] {
            let mut v = minimal();
            v["event_timestamp"] = json!(ts);
            let errors = AuditEvent::parse(v, now()).unwrap_err();
            assert_eq!(
                errors.get("event_timestamp").unwrap().reason,
                Reason::OutOfRange,
                "{ts}"
            );
        }
    }

    #[test]
    fn a_timestamp_in_the_future_is_kept_as_claimed() {
        // The log orders events by receipt (seq); a client whose clock runs ahead loses nothing.
        let mut v = minimal();
        v["event_timestamp"] = json!("2099-01-01T00:00:00Z");
        let e = AuditEvent::parse(v, now()).unwrap();
        assert_eq!(
            crate::timestamp::format(&e.event_timestamp),
            "2099-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn deep_event_data_is_refused() {
        let nested = |levels: usize| {
            let mut data = json!(1);
            for _ in 0..levels {
                data = json!({ "d": data });
            }
            data
        };
        let mut v = minimal();
        v["event_data"] = nested(MAX_EVENT_DATA_DEPTH);
        assert!(AuditEvent::parse(v.clone(), now()).is_ok());
        v["event_data"] = nested(MAX_EVENT_DATA_DEPTH + 1);
        let errors = AuditEvent::parse(v, now()).unwrap_err();
        assert_eq!(errors.get("event_data").unwrap().reason, Reason::TooDeep);
    }

    #[test]
    fn hash_is_stable_across_a_json_round_trip() {
        let mut v = minimal();
        v["event_data"] =
            json!({"b": 1.0, "a": [1e21, 0.1, -0.0, 12345678901234567890u64], "c": "é"});
        let e = AuditEvent::parse(v, now()).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.leaf_hash(), e.leaf_hash());
    }

    #[test]
    fn canonical_bytes_sort_keys_and_omit_absent_fields() {
        let e = AuditEvent::parse(minimal(), now()).unwrap();
        let text = String::from_utf8(e.canonical_bytes()).unwrap();
        assert!(text.starts_with("{\"actor_id\":\"notification-service\""));
        assert!(!text.contains("resource_name"));
    }

    #[test]
    fn a_leaf_from_fields_is_the_events_leaf_and_needs_every_required_field() {
        let mut body = platform();
        body["event_data"] = json!({"n": 3, "x": [true, null, "é"]});
        let writer = Writer {
            principal: "someone",
            authenticated: true,
        };
        let e = AuditEvent::parse(body, Receipt::new(now(), writer)).unwrap();
        assert!(e.submitted_by().is_some() && e.received_at().is_some());
        assert_eq!(leaf_hash_of(|f| e.get(f)).unwrap(), e.leaf_hash());
        // Without `submitted_by`, `received_at` is outside the leaf, as on the event.
        let unsigned = |f| match f {
            EventField::SubmittedBy => FieldRef::Absent,
            f => e.get(f),
        };
        assert_ne!(leaf_hash_of(unsigned).unwrap(), e.leaf_hash());
        assert_eq!(
            leaf_hash_of(unsigned).unwrap(),
            leaf_hash_of(|f| match f {
                EventField::SubmittedBy | EventField::ReceivedAt => FieldRef::Absent,
                f => e.get(f),
            })
            .unwrap()
        );
        let no_type = leaf_hash_of(|f| match f {
            EventField::EventType => FieldRef::Absent,
            f => e.get(f),
        });
        assert_eq!(
            no_type.unwrap_err().to_string(),
            "event_type: a required field is absent"
        );
    }

    #[test]
    fn event_data_names_sort_by_utf16_code_units() {
        // U+FFFD sorts after U+1F600 in UTF-16 (0xFFFD > 0xD83D) but before it in UTF-8.
        let mut body = minimal();
        body["event_data"] =
            json!({"\u{fffd}": 1, "\u{1f600}": {"z": [1.5, -0.0, 1e21], "a": null}, "b": "/"});
        let e = AuditEvent::parse(body, now()).unwrap();
        let text = String::from_utf8(e.canonical_bytes()).unwrap();
        assert!(
            text.contains("\"event_data\":{\"b\":\"/\",\"😀\":{\"a\":null,\"z\":[1.5,0,1e+21]},\"\u{fffd}\":1}"),
            "{text}"
        );
        assert_eq!(
            e.canonical_bytes(),
            serde_json_canonicalizer::to_vec(&e).unwrap()
        );
    }
}
