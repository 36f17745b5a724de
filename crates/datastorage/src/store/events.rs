//! What the event log holds and answers: prepared events, stored rows, append outcomes.

use audit_model::{AuditEvent, EventField, FieldRef, FieldValue, LeafHash, StoredEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An event ready to append: parsed, with its leaf hash and its `event_data` as JSON text
/// computed outside the writer (request handlers run in parallel; the writer orders the log
/// alone, so every microsecond it spends per event bounds the write rate).
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event: AuditEvent,
    pub leaf_hash: LeafHash,
    /// `event.event_data` as JSON text, as the stores take it.
    pub event_data_json: String,
}

impl PreparedEvent {
    pub fn new(event: AuditEvent) -> Self {
        let leaf_hash = event.leaf_hash();
        // A map with string keys always serializes; the fallback is never taken.
        let event_data_json = serde_json::to_string(event.event_data()).unwrap_or_default();
        Self {
            event,
            leaf_hash,
            event_data_json,
        }
    }

    /// The stored form this event takes at `seq` (moved, not copied: the writer answers every
    /// event of a batch this way, on the one path that orders the log).
    pub fn into_stored(self, seq: i64, committed_at: DateTime<Utc>) -> StoredEvent {
        let mut event = self.event;
        if event.received_at().is_none() {
            // An event no writer was attested for is stored with its commit time as receipt time.
            event = event.with_attestation(None, Some(committed_at));
        }
        StoredEvent {
            event,
            seq,
            leaf_hash: self.leaf_hash,
            committed_at,
        }
    }
}

/// A position of the log whose content the retention purge removed. What stays is what the
/// tree and the verifier need, and what shows that the purge came after expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub leaf_hash: LeafHash,
    pub event_timestamp: DateTime<Utc>,
    pub retention_days: i32,
    /// The attestation (`submitted_by`, `received_at`), which the purge keeps.
    pub submitted_by: Option<String>,
    pub received_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    pub purged_at: DateTime<Utc>,
}

impl PurgedEvent {
    /// When the event's retention ended.
    pub fn expired_at(&self) -> DateTime<Utc> {
        self.event_timestamp + chrono::Duration::days(i64::from(self.retention_days))
    }
}

/// One row of the log: an event, or what the retention purge left of one.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    Event(Box<StoredEvent>),
    Purged(PurgedEvent),
}

impl LogEntry {
    pub fn seq(&self) -> i64 {
        match self {
            LogEntry::Event(e) => e.seq,
            LogEntry::Purged(p) => p.seq,
        }
    }

    /// The leaf hash the log recorded (a purged event keeps it).
    pub fn leaf_hash(&self) -> audit_model::LeafHash {
        match self {
            LogEntry::Event(e) => e.leaf_hash,
            LogEntry::Purged(p) => p.leaf_hash,
        }
    }
}

/// A row of the log as the verifier reads it ([`super::EventLog::scan_leaves`]): the leaf its
/// content hashes to, recomputed as the row was read instead of the event rebuilt, or what the
/// retention purge left of it.
#[derive(Debug, Clone, PartialEq)]
pub enum ScannedLeaf {
    Content {
        seq: i64,
        /// The leaf hash stored with the row.
        leaf_hash: LeafHash,
        /// The leaf hash of the row's content.
        content_leaf: LeafHash,
        committed_at: DateTime<Utc>,
    },
    Purged(PurgedEvent),
}

impl ScannedLeaf {
    pub fn seq(&self) -> i64 {
        match self {
            ScannedLeaf::Content { seq, .. } => *seq,
            ScannedLeaf::Purged(p) => p.seq,
        }
    }
}

impl From<LogEntry> for ScannedLeaf {
    fn from(entry: LogEntry) -> Self {
        match entry {
            LogEntry::Event(e) => ScannedLeaf::Content {
                seq: e.seq,
                leaf_hash: e.leaf_hash,
                content_leaf: e.event.leaf_hash(),
                committed_at: e.committed_at,
            },
            LogEntry::Purged(p) => ScannedLeaf::Purged(p),
        }
    }
}

/// An event's fields as a row of the log holds them (text borrowed from the row), read without
/// the event rebuilt; every required field is present.
#[derive(Debug, Clone, Copy)]
pub struct RowFields<'r>(pub(crate) [FieldRef<'r>; EventField::ALL.len()]);

impl<'r> RowFields<'r> {
    /// A field's value.
    pub fn get(&self, field: EventField) -> FieldRef<'r> {
        self.0[field as usize]
    }

    /// The fields of an event already built.
    pub fn of(event: &'r AuditEvent) -> RowFields<'r> {
        let mut fields = [FieldRef::Absent; EventField::ALL.len()];
        for &field in EventField::ALL {
            fields[field as usize] = event.get(field);
        }
        RowFields(fields)
    }
}

/// What the export's scan ([`super::EventLog::scan_rendered`]) makes of a live row's fields:
/// bytes, or `None` to leave the row out.
pub type Render = std::sync::Arc<dyn Fn(&RowFields<'_>) -> Option<Vec<u8>> + Send + Sync>;

/// A row of the log as the export reads it: its leaf hash (which the proofs of the rows about
/// it are computed from) and what the render made of its fields (`None` for a purged row).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRow {
    pub seq: i64,
    pub leaf_hash: LeafHash,
    pub rendered: Option<Vec<u8>>,
}

impl RenderedRow {
    /// The row of `entry` rendered by `render`.
    pub fn of(entry: &LogEntry, render: &Render) -> RenderedRow {
        RenderedRow {
            seq: entry.seq(),
            leaf_hash: entry.leaf_hash(),
            rendered: match entry {
                LogEntry::Event(e) => render(&RowFields::of(&e.event)),
                LogEntry::Purged(_) => None,
            },
        }
    }
}

/// What appending one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Stored now, at this seq (the event as given, see [`PreparedEvent::into_stored`]).
    Created {
        seq: i64,
        committed_at: DateTime<Utc>,
    },
    /// The identical event was already stored.
    Duplicate(StoredEvent),
    /// The `event_id` is stored with different content (the stored event is given).
    Conflict(StoredEvent),
}

/// A typed record as stored: the record (`event_data`) and what the log assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub seq: i64,
    pub event_id: Uuid,
    pub record: serde_json::Map<String, serde_json::Value>,
    pub received_at: DateTime<Utc>,
}

/// The existing events with ids being appended, as stored events. A purged event matches an
/// incoming one exactly when the incoming event, with the purged one's attestation, has its
/// leaf hash (then its content was the incoming one); otherwise it is a conflict whose stored
/// content is gone.
pub(super) fn existing_events(
    events: &[PreparedEvent],
    entries: Vec<LogEntry>,
) -> Vec<StoredEvent> {
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            LogEntry::Event(e) => Some(*e),
            LogEntry::Purged(p) => {
                let incoming = events.iter().find(|e| e.event.event_id() == p.event_id)?;
                let mut event = incoming
                    .event
                    .clone()
                    .with_attestation(p.submitted_by, Some(p.received_at));
                if event.leaf_hash() != p.leaf_hash {
                    event = without_data(&event);
                }
                Some(StoredEvent {
                    event,
                    seq: p.seq,
                    leaf_hash: p.leaf_hash,
                    committed_at: p.committed_at,
                })
            }
        })
        .collect()
}

/// Splits a batch into the events that are new and those whose ids are already stored.
/// Returns, per input, either the existing stored event or `None` (new).
pub(super) fn classify<'a>(
    events: &'a [PreparedEvent],
    existing: &[StoredEvent],
) -> Vec<(&'a PreparedEvent, Option<StoredEvent>)> {
    events
        .iter()
        .map(|e| {
            let found = existing
                .iter()
                .find(|s| s.event.event_id() == e.event.event_id())
                .cloned();
            (e, found)
        })
        .collect()
}

/// Outcome of an input whose id was already stored: a duplicate when it is the stored content,
/// however it was attested (a retry is received again, later, perhaps by another replica).
pub(super) fn existing_outcome(event: &PreparedEvent, stored: StoredEvent) -> AppendOutcome {
    if same_as_stored(event, &stored) {
        AppendOutcome::Duplicate(stored)
    } else {
        AppendOutcome::Conflict(stored)
    }
}

/// Whether `entry` (stored under the incoming event's id) holds the incoming event's content,
/// whoever wrote it and whenever it was received: the incoming event with the stored
/// attestation hashes to the stored leaf.
pub fn holds_same_content(incoming: &PreparedEvent, entry: &LogEntry) -> bool {
    match entry {
        LogEntry::Event(stored) => same_as_stored(incoming, stored),
        LogEntry::Purged(p) => {
            incoming.leaf_hash == p.leaf_hash
                || incoming
                    .event
                    .clone()
                    .with_attestation(p.submitted_by.clone(), Some(p.received_at))
                    .leaf_hash()
                    == p.leaf_hash
        }
    }
}

fn same_as_stored(incoming: &PreparedEvent, stored: &StoredEvent) -> bool {
    incoming.leaf_hash == stored.leaf_hash
        || incoming.event.attested_as(&stored.event).leaf_hash() == stored.leaf_hash
}

/// The event with an empty `event_data`: what is shown of a purged event whose content differed.
fn without_data(event: &AuditEvent) -> AuditEvent {
    AuditEvent::from_fields(|field| {
        Ok::<_, std::convert::Infallible>(match field {
            EventField::EventData => FieldValue::Object(serde_json::Map::new()),
            field => event.get(field).to_owned(),
        })
    })
    .expect("an event's own fields rebuild it")
}
