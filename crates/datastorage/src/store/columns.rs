//! The log's columns and the one row decoder of each kind of row.
//!
//! The event's columns are its fields ([`EventField::ALL`], declared once with the event); the
//! decoders here are written once for both backends over [`ReadColumn`], which each backend
//! implements for its row type with what really differs (SQLite stores UUIDs, times and JSON
//! as text).

use std::sync::LazyLock;

use audit_model::merkle::Hash;
use audit_model::{
    leaf_hash_of, AuditEvent, EventField, FieldKind, FieldRef, FieldValue, FromFieldsError,
    LeafHash, StoredEvent,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    LogEntry, PurgedEvent, Render, RenderedRow, RowFields, ScannedLeaf, StoreError, StoredRecord,
};

/// A column of a row: its name, and where rows of [`log_columns`] hold it. A row is read at
/// that place when its column there has that name (no lookup by name, which was a tenth of
/// decoding a row), else by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column<'a> {
    pub name: &'a str,
    at: Option<usize>,
}

impl<'a> From<&'a str> for Column<'a> {
    fn from(name: &'a str) -> Self {
        Column { name, at: None }
    }
}

impl std::fmt::Display for Column<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl<R: sqlx::Row> sqlx::ColumnIndex<R> for Column<'_>
where
    for<'n> &'n str: sqlx::ColumnIndex<R>,
{
    fn index(&self, row: &R) -> Result<usize, sqlx::Error> {
        use sqlx::Column as _;
        match self.at {
            Some(at) if row.columns().get(at).is_some_and(|c| c.name() == self.name) => Ok(at),
            _ => self.name.index(row),
        }
    }
}

/// The columns [`log_columns`] selects besides the event's fields, and where they are.
const SEQ: Column<'static> = Column {
    name: "seq",
    at: Some(0),
};
const LEAF_HASH: Column<'static> = Column {
    name: "leaf_hash",
    at: Some(EventField::ALL.len() + 1),
};
const COMMITTED_AT: Column<'static> = Column {
    name: "committed_at",
    at: Some(EventField::ALL.len() + 2),
};
const PURGED_AT: Column<'static> = Column {
    name: "purged_at",
    at: Some(EventField::ALL.len() + 3),
};

/// A field's column, where [`log_columns`] puts it.
fn field_column(field: EventField) -> Column<'static> {
    Column {
        name: field.name(),
        at: Some(field as usize + 1),
    }
}

/// Reads one column of a row as the kind of value it holds (`None` for SQL NULL).
pub(crate) trait ReadColumn {
    fn uuid(&self, column: Column<'_>) -> Result<Option<Uuid>, StoreError>;
    fn time(&self, column: Column<'_>) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Text, borrowed from the row.
    fn str(&self, column: Column<'_>) -> Result<Option<&str>, StoreError>;
    fn int64(&self, column: Column<'_>) -> Result<Option<i64>, StoreError>;
    fn int32(&self, column: Column<'_>) -> Result<Option<i32>, StoreError>;
    fn bool(&self, column: Column<'_>) -> Result<Option<bool>, StoreError>;
    /// A JSON object (anything else is corruption).
    fn object(&self, column: Column<'_>) -> Result<Option<Map<String, Value>>, StoreError>;
    fn bytes(&self, column: Column<'_>) -> Result<Option<Vec<u8>>, StoreError>;

    /// Text, owned.
    fn text(&self, column: Column<'_>) -> Result<Option<String>, StoreError> {
        Ok(self.str(column)?.map(str::to_owned))
    }

    /// A SHA-256 hash (anything but 32 bytes is corruption).
    fn hash(&self, column: Column<'_>) -> Result<Option<Hash>, StoreError> {
        self.bytes(column)?.map(to_hash).transpose()
    }

    /// A column that must not be NULL.
    fn required<'c, T>(
        &self,
        read: impl Fn(&Self, Column<'c>) -> Result<Option<T>, StoreError>,
        column: impl Into<Column<'c>>,
    ) -> Result<T, StoreError> {
        let column = column.into();
        read(self, column)?.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }
}

/// A hash column's bytes as a hash (anything but 32 bytes is corruption).
pub(crate) fn to_hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

/// A JSON object read from a column, or why it is not one.
pub(crate) fn json_object(column: &str, value: Value) -> Result<Map<String, Value>, StoreError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StoreError::Corrupt(format!(
            "{column} is not a JSON object"
        ))),
    }
}

/// The event's fields as a column list, in declaration order.
pub(crate) fn event_columns() -> &'static str {
    static COLUMNS: LazyLock<String> = LazyLock::new(|| {
        let names: Vec<&str> = EventField::ALL.iter().map(|f| f.name()).collect();
        names.join(", ")
    });
    &COLUMNS
}

/// What every read of the log selects, in this order: the seq, the event's fields, then what
/// the log assigned.
pub(crate) fn log_columns() -> &'static str {
    static COLUMNS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "seq, {}, leaf_hash, COALESCE(committed_at, received_at) AS committed_at, purged_at",
            event_columns()
        )
    });
    &COLUMNS
}

/// The fields the retention purge keeps: what the tree, the verifier and the proof that the
/// purge came after expiry need.
const KEPT_BY_PURGE: [EventField; 5] = [
    EventField::EventId,
    EventField::EventTimestamp,
    EventField::RetentionDays,
    EventField::SubmittedBy,
    EventField::ReceivedAt,
];

/// Whether a field is part of an event's content, which retention removes (on PostgreSQL the
/// columns of `audit_content`, besides `seq`).
pub(crate) fn is_content(field: EventField) -> bool {
    !KEPT_BY_PURGE.contains(&field)
}

/// Whether a field is kept with the event's leaf for ever (on PostgreSQL the columns of
/// `audit_leaves`, besides `seq`, `leaf_hash`, `committed_at` and `purged_at`).
pub(crate) fn is_leaf(field: EventField) -> bool {
    !is_content(field)
}

/// `col = NULL, …` for every field the purge blanks.
pub(crate) fn blank_content() -> &'static str {
    static SET: LazyLock<String> = LazyLock::new(|| {
        let blanks: Vec<String> = EventField::ALL
            .iter()
            .filter(|f| is_content(**f))
            .map(|f| format!("{} = NULL", f.name()))
            .collect();
        blanks.join(", ")
    });
    &SET
}

/// A row of the log: an event, or what the purge left of one.
pub(crate) fn decode_entry(row: &impl ReadColumn) -> Result<LogEntry, StoreError> {
    match row.time(PURGED_AT)? {
        Some(purged_at) => decode_purged(row, purged_at).map(LogEntry::Purged),
        None => decode_event(row).map(|e| LogEntry::Event(Box::new(e))),
    }
}

/// A row of the log with the leaf its content hashes to, computed from the columns as they are
/// read (text borrowed from the row; no event rebuilt); or what the purge left of one.
pub(crate) fn decode_leaf(row: &impl ReadColumn) -> Result<ScannedLeaf, StoreError> {
    if let Some(purged_at) = row.time(PURGED_AT)? {
        return decode_purged(row, purged_at).map(ScannedLeaf::Purged);
    }
    let data = row.object(field_column(EventField::EventData))?;
    let fields = read_fields(row, data.as_ref())?;
    let content_leaf =
        leaf_hash_of(|field| fields.get(field)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ScannedLeaf::Content {
        seq: row.required(ReadColumn::int64, SEQ)?,
        leaf_hash: leaf_hash(row)?,
        content_leaf,
        committed_at: row.required(ReadColumn::time, COMMITTED_AT)?,
    })
}

/// A row of the log with what `render` made of its fields, read as in [`decode_leaf`].
pub(crate) fn decode_rendered(
    row: &impl ReadColumn,
    render: &Render,
) -> Result<RenderedRow, StoreError> {
    let rendered = match row.time(PURGED_AT)? {
        Some(_) => None,
        None => {
            let data = row.object(field_column(EventField::EventData))?;
            render(&read_fields(row, data.as_ref())?)
        }
    };
    Ok(RenderedRow {
        seq: row.required(ReadColumn::int64, SEQ)?,
        leaf_hash: leaf_hash(row)?,
        rendered,
    })
}

/// A live row's fields, text borrowed from it and `event_data` from `data` (its parse);
/// corruption when a required field is NULL (as [`decode_event`] finds it).
fn read_fields<'r>(
    row: &'r impl ReadColumn,
    data: Option<&'r Map<String, Value>>,
) -> Result<RowFields<'r>, StoreError> {
    let mut fields = [FieldRef::Absent; EventField::ALL.len()];
    for &field in EventField::ALL {
        match field_ref(row, field, data)? {
            Some(value) => fields[field as usize] = value,
            None if field.required() => {
                return Err(StoreError::Corrupt(format!("{} is NULL", field.name())));
            }
            None => {}
        }
    }
    Ok(RowFields(fields))
}

/// What the purge left of a row.
fn decode_purged(
    row: &impl ReadColumn,
    purged_at: DateTime<Utc>,
) -> Result<PurgedEvent, StoreError> {
    Ok(PurgedEvent {
        seq: row.required(ReadColumn::int64, SEQ)?,
        event_id: row.required(ReadColumn::uuid, field_column(EventField::EventId))?,
        leaf_hash: leaf_hash(row)?,
        event_timestamp: row
            .required(ReadColumn::time, field_column(EventField::EventTimestamp))?,
        retention_days: row.required(ReadColumn::int32, field_column(EventField::RetentionDays))?,
        submitted_by: row.text(field_column(EventField::SubmittedBy))?,
        received_at: row.required(ReadColumn::time, field_column(EventField::ReceivedAt))?,
        committed_at: row.required(ReadColumn::time, COMMITTED_AT)?,
        purged_at,
    })
}

/// The columns a timeline reads; each backend's query names them so (`to_phase` and
/// `notification_uid` taken from `event_data` as text).
pub(crate) const TIMELINE_COLUMNS: &str = "seq, event_id, event_type, event_category, \
    event_action, event_outcome, event_timestamp, resource_id, record_kind IS NOT NULL AS record";

/// A timeline's row.
pub(crate) fn decode_timeline_row(
    row: &impl ReadColumn,
) -> Result<crate::derived::timeline::TimelineRow, StoreError> {
    let outcome = row.required(ReadColumn::text, "event_outcome")?;
    Ok(crate::derived::timeline::TimelineRow {
        seq: row.required(ReadColumn::int64, "seq")?,
        event_id: row.required(ReadColumn::uuid, "event_id")?,
        event_type: row.required(ReadColumn::text, "event_type")?,
        event_category: row.required(ReadColumn::text, "event_category")?,
        event_action: row.required(ReadColumn::text, "event_action")?,
        event_outcome: audit_model::EventOutcome::from_str_exact(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("event_outcome {outcome:?}")))?,
        event_timestamp: row.required(ReadColumn::time, "event_timestamp")?,
        resource_id: row.required(ReadColumn::text, "resource_id")?,
        record: row.required(ReadColumn::bool, "record")?,
        to_phase: row.text("to_phase".into())?,
        notification_uid: row.text("notification_uid".into())?,
    })
}

/// A row of the log holding an event.
pub(crate) fn decode_event(row: &impl ReadColumn) -> Result<StoredEvent, StoreError> {
    let event = AuditEvent::from_fields(|field| field_value(row, field)).map_err(|e| match e {
        FromFieldsError::Read(e) => e,
        e @ FromFieldsError::Value { .. } => StoreError::Corrupt(e.to_string()),
    })?;
    Ok(StoredEvent {
        event,
        seq: row.required(ReadColumn::int64, SEQ)?,
        leaf_hash: leaf_hash(row)?,
        committed_at: row.required(ReadColumn::time, COMMITTED_AT)?,
    })
}

/// A typed record from its view's row joined to the log.
pub(crate) fn decode_record(row: &impl ReadColumn) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        seq: row.required(ReadColumn::int64, "seq")?,
        event_id: row.required(ReadColumn::uuid, "event_id")?,
        record: row.required(ReadColumn::object, "event_data")?,
        received_at: row.required(ReadColumn::time, "received_at")?,
    })
}

fn leaf_hash(row: &impl ReadColumn) -> Result<LeafHash, StoreError> {
    row.required(ReadColumn::hash, LEAF_HASH).map(LeafHash::new)
}

/// One field's column, read as its kind (`event_data` given as `data`; text borrowed).
fn field_ref<'r>(
    row: &'r impl ReadColumn,
    field: EventField,
    data: Option<&'r Map<String, Value>>,
) -> Result<Option<FieldRef<'r>>, StoreError> {
    let column = field_column(field);
    Ok(match field.kind() {
        FieldKind::Uuid => row.uuid(column)?.map(FieldRef::Uuid),
        FieldKind::Text => row.str(column)?.map(FieldRef::Text),
        FieldKind::Time => row.time(column)?.map(FieldRef::Time),
        FieldKind::Int64 => row.int64(column)?.map(FieldRef::Int),
        FieldKind::Int32 => row.int32(column)?.map(|i| FieldRef::Int(i.into())),
        FieldKind::Object => data.map(FieldRef::Object),
        FieldKind::Bool => row.bool(column)?.map(FieldRef::Bool),
    })
}

/// One field's column, owned (`event_data` parsed into the value, not copied).
fn field_value(row: &impl ReadColumn, field: EventField) -> Result<FieldValue, StoreError> {
    let value = match field.kind() {
        FieldKind::Object => row.object(field_column(field))?.map(FieldValue::Object),
        _ => field_ref(row, field, None)?.map(FieldRef::to_owned),
    };
    Ok(value.unwrap_or(FieldValue::Absent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_blanks_every_field_but_those_the_tree_needs() {
        let set = blank_content();
        assert_eq!(set.matches(" = NULL").count(), EventField::ALL.len() - 5);
        assert!(
            set.starts_with("event_version = NULL, event_type = NULL"),
            "{set}"
        );
        let blanked: Vec<&str> = set
            .split(", ")
            .map(|c| c.trim_end_matches(" = NULL"))
            .collect();
        for kept in [
            "event_id",
            "event_timestamp",
            "retention_days",
            "submitted_by",
            "received_at",
        ] {
            assert!(!blanked.contains(&kept), "{kept} is kept");
        }
        assert!(blanked.contains(&"parent_event_id") && blanked.contains(&"event_data"));
    }

    #[test]
    fn every_column_a_log_row_is_read_at_is_where_the_reads_select_it() {
        let list = log_columns().replace("COALESCE(committed_at, received_at) AS ", "");
        let names: Vec<&str> = list.split(", ").collect();
        let at = |c: Column<'_>| names[c.at.expect("a place")];
        assert_eq!(at(SEQ), "seq");
        for field in EventField::ALL {
            assert_eq!(at(field_column(*field)), field.name());
        }
        for column in [LEAF_HASH, COMMITTED_AT, PURGED_AT] {
            assert_eq!(at(column), column.name);
        }
        assert_eq!(names.len(), EventField::ALL.len() + 4);
    }

    #[test]
    fn reads_select_the_seq_the_fields_and_what_the_log_assigned() {
        let columns = log_columns();
        assert!(columns.starts_with("seq, event_id, event_version, event_timestamp,"));
        assert!(columns.ends_with(
            "event_data, retention_days, is_sensitive, record_kind, submitted_by, received_at, leaf_hash, COALESCE(committed_at, received_at) AS committed_at, purged_at"
        ));
    }
}
