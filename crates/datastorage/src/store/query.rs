//! The event query: filters, time range, keyset pagination; rendered to SQL for either store.

use audit_model::EventField;
use chrono::{DateTime, Utc};

/// Columns that can be filtered by equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    CorrelationId,
    EventType,
    EventCategory,
    EventOutcome,
    ResourceType,
    ResourceId,
    ActorId,
    Namespace,
    Severity,
    ClusterId,
    SubmittedBy,
}

impl EventFilter {
    pub const ALL: [EventFilter; 11] = [
        EventFilter::CorrelationId,
        EventFilter::EventType,
        EventFilter::EventCategory,
        EventFilter::EventOutcome,
        EventFilter::ResourceType,
        EventFilter::ResourceId,
        EventFilter::ActorId,
        EventFilter::Namespace,
        EventFilter::Severity,
        EventFilter::ClusterId,
        EventFilter::SubmittedBy,
    ];

    /// The event field filtered on.
    pub fn field(self) -> EventField {
        match self {
            EventFilter::CorrelationId => EventField::CorrelationId,
            EventFilter::EventType => EventField::EventType,
            EventFilter::EventCategory => EventField::EventCategory,
            EventFilter::EventOutcome => EventField::EventOutcome,
            EventFilter::ResourceType => EventField::ResourceType,
            EventFilter::ResourceId => EventField::ResourceId,
            EventFilter::ActorId => EventField::ActorId,
            EventFilter::Namespace => EventField::Namespace,
            EventFilter::Severity => EventField::Severity,
            EventFilter::ClusterId => EventField::ClusterId,
            EventFilter::SubmittedBy => EventField::SubmittedBy,
        }
    }

    /// The column name, which is also the query parameter name.
    pub fn column(self) -> &'static str {
        self.field().name()
    }
}

/// Sort order: by `event_timestamp`, then `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub event_timestamp: DateTime<Utc>,
    pub seq: i64,
}

/// A query over the log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub filters: Vec<(EventFilter, String)>,
    /// A top-level member `event_data` must have (a plain identifier, `[A-Za-z0-9_]+`, checked
    /// by the caller; bound, never spliced) and the text it must hold; either alone: the member,
    /// with any value, or the text, in any top-level member.
    pub detail_key: Option<String>,
    pub detail_value: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only the events the platform's decoder can read (see [`platform_readable`]); every
    /// event otherwise.
    pub platform_readable_only: bool,
    pub order: Order,
    pub limit: u32,
    /// Matching events skipped before the page (after the cursor, when there is one).
    pub offset: u64,
    pub after: Option<Cursor>,
    /// In log order instead (by `seq` alone, `order` kept), after this seq (ascending) or
    /// before it (descending); the time cursor and offset are not used then.
    pub by_seq_from: Option<i64>,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// Placeholders as they are bound: `mark` is the prefix (`$` for PostgreSQL, `?` for SQLite).
struct Binder {
    mark: char,
    binds: Vec<Bind>,
}

impl Binder {
    fn next(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("{}{}", self.mark, self.binds.len())
    }
}

/// The events the platform's decoder can read (`http::platform_contract`): not the service's
/// own (`datastorage.*`), not a typed record (marked by `record_kind`, or, stored before the
/// marker, by its kind's prefix and its UUIDv5 id), a category of the platform's, and an
/// `event_data` whose `event_type` the platform's document maps to a payload.
fn platform_readable(mark: char) -> &'static str {
    fn build(id_text: &str, data_type: &str) -> String {
        let legacy: Vec<String> = audit_model::records::KINDS
            .iter()
            .map(|k| format!("event_type LIKE '{}%'", k.event_type_prefix()))
            .collect();
        let list = |values: &[String]| -> String {
            let quoted: Vec<String> = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect();
            quoted.join(", ")
        };
        let decodable = &crate::http::platform_contract::DECODABLE;
        format!(
            "event_type NOT LIKE '{}%' AND record_kind IS NULL \
             AND NOT (substr({id_text}, 15, 1) = '5' AND ({})) \
             AND event_category IN ({}) AND {data_type} IN ({})",
            audit_model::SYSTEM_EVENT_PREFIX,
            legacy.join(" OR "),
            list(&decodable.categories),
            list(&decodable.payload_types),
        )
    }
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build("event_id::text", "event_data->>'event_type'"));
    static SQLITE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build("event_id", "json_extract(event_data, '$.event_type')"));
    if mark == '$' {
        &POSTGRES
    } else {
        &SQLITE
    }
}

/// Where the events a query matches are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// SQLite's one table, where a purged event keeps its row (blanked).
    Table,
    /// PostgreSQL's events whose content is held, read from the content alone (the view
    /// `audit_events_present`).
    Present,
    /// The same events found from their leaves (the view `audit_events_present_by_leaf`), for a
    /// filter on a column only the leaves index.
    PresentByLeaf,
    /// PostgreSQL's content alone, for a count (the content holds its leaf's copy).
    Content,
}

impl Source {
    fn relation(self) -> &'static str {
        match self {
            Source::Table => "audit_events",
            Source::Present => "audit_events_present",
            Source::PresentByLeaf => "audit_events_present_by_leaf",
            Source::Content => "audit_content",
        }
    }
}

impl EventQuery {
    /// Where this query reads from (`counting`: only to count what matches).
    fn source(&self, mark: char, counting: bool) -> Source {
        // The content holds a copy of its leaf; a filter on the attested writer finds its
        // events by the leaves' index of it.
        let by_leaf = self
            .filters
            .iter()
            .any(|(f, _)| f.field() == EventField::SubmittedBy);
        match mark {
            '$' if by_leaf => Source::PresentByLeaf,
            '$' if counting => Source::Content,
            '$' => Source::Present,
            _ => Source::Table,
        }
    }

    /// The `WHERE` clause of the events that match in `source` (the cursor aside).
    fn matching(&self, b: &mut Binder, source: Source) -> Vec<String> {
        // Purged events have no content left to match or show (PostgreSQL's sources hold none).
        let mut clauses = Vec::new();
        if source == Source::Table {
            clauses.push("purged_at IS NULL".to_string());
        }
        for (filter, value) in &self.filters {
            let p = b.next(Bind::Text(value.clone()));
            clauses.push(format!("{} = {p}", filter.column()));
        }
        let postgres = b.mark == '$';
        match (&self.detail_key, &self.detail_value) {
            (Some(key), Some(value)) => {
                let k = b.next(Bind::Text(key.clone()));
                let v = b.next(Bind::Text(value.clone()));
                clauses.push(if postgres {
                    format!("event_data->>{k} = {v}")
                } else {
                    format!("CAST(json_extract(event_data, '$.' || {k}) AS TEXT) = {v}")
                });
            }
            (Some(key), None) => {
                let k = b.next(Bind::Text(key.clone()));
                clauses.push(if postgres {
                    format!("jsonb_exists(event_data, {k})")
                } else {
                    format!("json_type(event_data, '$.' || {k}) IS NOT NULL")
                });
            }
            (None, Some(value)) => {
                let v = b.next(Bind::Text(value.clone()));
                clauses.push(if postgres {
                    format!("EXISTS (SELECT 1 FROM jsonb_each_text(event_data) d WHERE d.value = {v})")
                } else {
                    format!("EXISTS (SELECT 1 FROM json_each(event_data) d WHERE CAST(d.value AS TEXT) = {v})")
                });
            }
            (None, None) => {}
        }
        if let Some(since) = self.since {
            let p = b.next(Bind::Time(since));
            clauses.push(format!("event_timestamp >= {p}"));
        }
        if let Some(until) = self.until {
            let p = b.next(Bind::Time(until));
            clauses.push(format!("event_timestamp <= {p}"));
        }
        if self.platform_readable_only {
            clauses.push(platform_readable(b.mark).to_string());
        }
        clauses
    }

    /// Renders the query; `mark` is the placeholder prefix (`$` for PostgreSQL, `?` for SQLite).
    pub(crate) fn to_sql(&self, mark: char) -> (String, Vec<Bind>) {
        let mut b = Binder {
            mark,
            binds: Vec::new(),
        };
        let source = self.source(mark, false);
        let mut clauses = self.matching(&mut b, source);
        let (cmp, dir) = match self.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        if let Some(from) = self.by_seq_from {
            let s = b.next(Bind::Int(from));
            clauses.push(format!("seq {cmp} {s}"));
            let filter = where_clause(&clauses);
            let limit = b.next(Bind::Int(i64::from(self.limit)));
            let sql = format!(
                "SELECT {} FROM {}{filter} ORDER BY seq {dir} LIMIT {limit}",
                super::columns::log_columns(),
                source.relation()
            );
            return (sql, b.binds);
        }
        if let Some(c) = self.after {
            let t = b.next(Bind::Time(c.event_timestamp));
            let s = b.next(Bind::Int(c.seq));
            clauses.push(format!("(event_timestamp, seq) {cmp} ({t}, {s})"));
        }
        let filter = where_clause(&clauses);
        let limit = b.next(Bind::Int(i64::from(self.limit)));
        let offset = if self.offset > 0 {
            format!(" OFFSET {}", b.next(Bind::Int(self.offset as i64)))
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {} FROM {}{filter} \
             ORDER BY event_timestamp {dir}, seq {dir} LIMIT {limit}{offset}",
            super::columns::log_columns(),
            source.relation()
        );
        (sql, b.binds)
    }

    /// Renders the count of every matching event (cursor, offset and limit aside).
    pub(crate) fn to_count_sql(&self, mark: char) -> (String, Vec<Bind>) {
        let mut b = Binder {
            mark,
            binds: Vec::new(),
        };
        let source = self.source(mark, true);
        let clauses = self.matching(&mut b, source);
        let sql = format!(
            "SELECT count(*) FROM {}{}",
            source.relation(),
            where_clause(&clauses)
        );
        (sql, b.binds)
    }
}

/// ` WHERE` and the clauses, or nothing when there is none.
fn where_clause(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_filters_range_and_cursor_in_order() {
        let t = crate::store::query::tests::ts();
        let q = EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-1".into())],
            since: Some(t),
            order: Order::Desc,
            limit: 10,
            after: Some(Cursor {
                event_timestamp: t,
                seq: 7,
            }),
            platform_readable_only: true,
            ..EventQuery::default()
        };
        let (sql, binds) = q.to_sql('$');
        assert!(
            sql.ends_with(
                "AND (event_timestamp, seq) < ($3, $4) \
                 ORDER BY event_timestamp DESC, seq DESC LIMIT $5"
            ),
            "{sql}"
        );
        // The platform's answers leave out what its decoder cannot read.
        assert!(
            sql.contains(
                "FROM audit_events_present WHERE correlation_id = $1 AND event_timestamp >= $2 \
                 AND event_type NOT LIKE 'datastorage.%' AND record_kind IS NULL \
                 AND NOT (substr(event_id::text, 15, 1) = '5' \
                 AND (event_type LIKE 'notification.delivery.%' OR "
            ),
            "{sql}"
        );
        assert_eq!(binds.len(), 5);
        let (count, binds) = EventQuery {
            detail_key: Some("task_id".into()),
            detail_value: Some("t-1".into()),
            platform_readable_only: false,
            offset: 20,
            ..q.clone()
        }
        .to_count_sql('?');
        assert_eq!(
            count,
            "SELECT count(*) FROM audit_events WHERE purged_at IS NULL AND correlation_id = ?1 \
             AND CAST(json_extract(event_data, '$.' || ?2) AS TEXT) = ?3 AND event_timestamp >= ?4"
        );
        assert_eq!(binds.len(), 4);
        // On PostgreSQL a count counts the content alone (the platform's answers too: the
        // content holds its event ids); a writer's filter finds its events by the leaves.
        let count = |q: &EventQuery| q.to_count_sql('$').0;
        let by_correlation = EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-1".into())],
            ..EventQuery::default()
        };
        assert_eq!(
            count(&by_correlation),
            "SELECT count(*) FROM audit_content WHERE correlation_id = $1"
        );
        assert!(
            count(&q).starts_with("SELECT count(*) FROM audit_content WHERE correlation_id = $1")
        );
        let by_writer = EventQuery {
            filters: vec![(EventFilter::SubmittedBy, "svc".into())],
            ..EventQuery::default()
        };
        assert_eq!(
            count(&by_writer),
            "SELECT count(*) FROM audit_events_present_by_leaf WHERE submitted_by = $1"
        );
        let (page, _) = by_writer.to_sql('$');
        assert!(
            page.contains("FROM audit_events_present_by_leaf WHERE submitted_by = $1"),
            "{page}"
        );
        assert_eq!(
            count(&EventQuery::default()),
            "SELECT count(*) FROM audit_content"
        );
    }

    pub(crate) fn ts() -> DateTime<Utc> {
        audit_model::timestamp::parse("2026-01-01T00:00:00Z").unwrap()
    }
}

/// A query over one kind of typed record, through its SQL view.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    /// The view (the seed table name).
    pub view: &'static str,
    /// Equality filters on view columns.
    pub filters: Vec<(&'static str, String)>,
    /// The view column `since`/`until` apply to.
    pub time_column: &'static str,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only rows whose column is not null.
    pub present: Option<&'static str>,
    /// Rows after this `id` (the log seq), in `id` order.
    pub after: Option<i64>,
    pub limit: u32,
}

impl RecordQuery {
    /// Renders the query; `mark` is the placeholder prefix.
    pub(crate) fn to_sql(&self, mark: char) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut clauses = Vec::new();
        let next = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("{mark}{}", binds.len())
        };
        for (column, value) in &self.filters {
            let p = next(Bind::Text(value.clone()), &mut binds);
            clauses.push(format!("v.{column} = {p}"));
        }
        if let Some(since) = self.since {
            let p = next(Bind::Time(since), &mut binds);
            clauses.push(format!("v.{} >= {p}", self.time_column));
        }
        if let Some(until) = self.until {
            let p = next(Bind::Time(until), &mut binds);
            clauses.push(format!("v.{} <= {p}", self.time_column));
        }
        if let Some(column) = self.present {
            clauses.push(format!("v.{column} IS NOT NULL"));
        }
        if let Some(after) = self.after {
            let p = next(Bind::Int(after), &mut binds);
            clauses.push(format!("v.id > {p}"));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let limit = next(Bind::Int(i64::from(self.limit)), &mut binds);
        let sql = format!(
            "SELECT e.seq, e.event_id, e.event_data, e.received_at FROM {} v \
             JOIN audit_events e ON e.seq = v.id{filter} ORDER BY v.id LIMIT {limit}",
            self.view
        );
        (sql, binds)
    }
}
