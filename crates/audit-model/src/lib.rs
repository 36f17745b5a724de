//! The audit trail's wire types, shared by the Data Storage service and the client library.
//!
//! This crate does no I/O. It owns three things that must be identical on both sides of the wire:
//!
//! * **Parsing** ([`AuditEvent::parse`] of a JSON value, [`AuditEvent::parse_json`] of JSON text):
//!   untrusted JSON becomes an [`AuditEvent`] or a complete list of [`FieldErrors`]. A value of type `AuditEvent` is valid by construction, so code past
//!   the edge never re-checks it.
//! * **Canonical encoding and leaf hash** ([`AuditEvent::leaf_hash`]): RFC 8785 (JCS) bytes of the
//!   event's immutable fields, hashed as an RFC 9162 leaf (`SHA-256(0x00 || bytes)`). Timestamps are
//!   fixed to microsecond precision in UTC before hashing, so the hash survives a database round
//!   trip.
//! * **Problems** ([`Problem`]): RFC 7807 error bodies with stable `type` slugs.

mod batch;
pub mod checkpoint;
pub mod cosignature;
mod event;
pub mod event_field;
pub mod export;
mod fields;
mod identifier;
pub mod json;
pub mod limits;
pub mod merkle;
mod problem;
pub mod records;
pub mod schema;
pub mod subtrees;
pub mod timestamp;
mod wire;

pub use batch::{BatchItemResult, BatchResponse, BatchSummary, ItemStatus};
pub use event::{
    canonical_bytes_of, leaf_hash_of, AuditEvent, EventField, EventOutcome, LeafHash, ParseError,
    Receipt, StoredEvent, Writer, DEFAULT_RETENTION_DAYS, MAX_EVENT_DATA_BYTES,
    MAX_EVENT_DATA_DEPTH, MAX_SHORT, SYSTEM_EVENT_PREFIX,
};
pub use event_field::{FieldKind, FieldRef, FieldValue, FromFieldsError};
pub use fields::{
    describe, DescribedField, FieldError, FieldErrors, FieldRule, ObjectReader, Reason,
    DUPLICATE_KEY_MESSAGE, NUL_MESSAGE,
};
pub use problem::{Problem, ProblemKind};
pub use records::{
    AiAnalysisAudit, EffectivenessAudit, NotificationAudit, OrchestrationAudit, RecordKind,
    RecordRules, SeedRecord, SignalProcessingAudit, WorkflowExecutionAudit,
};
