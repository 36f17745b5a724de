//! The event log on SQLite.

use async_trait::async_trait;
use audit_model::{timestamp, EventField, FieldRef, StoredEvent};
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use super::{bound, SqliteStore};
use crate::store::columns::{
    decode_entry, decode_event, decode_leaf, decode_record, decode_rendered, decode_timeline_row,
    event_columns, log_columns, TIMELINE_COLUMNS,
};
use crate::store::events::{classify, existing_events, existing_outcome};
use crate::store::{
    AppendOutcome, EventLog, EventQuery, LogEntry, PreparedEvent, RecordQuery, Render, RenderedRow,
    ScannedLeaf, StoreError, StoredRecord,
};

/// Rows per INSERT statement: as many as SQLite's variable limit (32 766) allows with a
/// placeholder per field and three more (seq, leaf hash, receipt time) per row.
const ROWS_PER_INSERT: usize = 32_766 / (EventField::ALL.len() + 3);

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut existing = Vec::new();
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {} FROM audit_events WHERE event_id IN (",
                log_columns()
            ));
            let mut ids = q.separated(", ");
            for e in chunk {
                ids.push_bind(e.event.event_id().to_string());
            }
            q.push(")");
            for row in q.build().persistent(false).fetch_all(&mut *tx).await? {
                existing.push(decode_entry(&row)?);
            }
        }
        let existing = existing_events(events, existing);
        let (head, last_received): (i64, Option<String>) =
            sqlx::query_as("SELECT last_seq, last_received_at FROM log_head WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        // The commit time is taken here, under the write lock that decides the order: never
        // before the last one, so it does not step backwards along `seq` (several processes on
        // one file, a clock stepped back).
        let now = timestamp::truncate(Utc::now());
        let committed_at = match last_received.as_deref().map(timestamp::parse) {
            Some(Ok(last)) => now.max(last),
            Some(Err(e)) => {
                return Err(StoreError::Corrupt(format!(
                    "log_head.last_received_at is not a time: {e}"
                )))
            }
            None => now,
        };
        let mut next_seq = head;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        for (event, found) in classify(events, &existing) {
            match found {
                Some(stored) => outcomes.push(existing_outcome(event, stored)),
                None => {
                    next_seq += 1;
                    fresh.push((next_seq, event));
                    outcomes.push(AppendOutcome::Created {
                        seq: next_seq,
                        committed_at,
                    });
                }
            }
        }
        for chunk in fresh.chunks(ROWS_PER_INSERT) {
            insert(&mut tx, chunk, committed_at).await?;
        }
        if !fresh.is_empty() {
            sqlx::query("UPDATE log_head SET last_seq = ?1, last_received_at = ?2 WHERE id = 1")
                .bind(next_seq)
                .bind(timestamp::format(&committed_at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM audit_events WHERE event_id = ?1",
            log_columns()
        ))
        .bind(event_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_entry).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, binds) = query.to_sql('?');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_event)
            .collect()
    }

    async fn timeline_rows(
        &self,
        correlation_id: &str,
        limit: i64,
    ) -> Result<Vec<crate::derived::timeline::TimelineRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TIMELINE_COLUMNS}, \
             CAST(COALESCE(json_extract(event_data, '$.to_phase'), \
                           json_extract(event_data, '$.new_phase')) AS TEXT) AS to_phase, \
             CAST(json_extract(event_data, '$.notification_uid') AS TEXT) AS notification_uid \
             FROM audit_events WHERE purged_at IS NULL AND correlation_id = ?1 \
             ORDER BY event_timestamp, seq LIMIT ?2"
        ))
        .bind(correlation_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_timeline_row)
        .collect()
    }

    async fn count_matching(&self, query: &EventQuery) -> Result<i64, StoreError> {
        let (sql, binds) = query.to_count_sql('?');
        let row = bound(&sql, binds).fetch_one(&self.pool).await?;
        Ok(sqlx::Row::try_get(&row, 0)?)
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let (sql, binds) = query.to_sql('?');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_record)
            .collect()
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError> {
        self.scan_rows(after_seq, limit, decode_entry).await
    }

    async fn scan_leaves(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ScannedLeaf>, StoreError> {
        self.scan_rows(after_seq, limit, decode_leaf).await
    }

    async fn scan_rendered(
        &self,
        after_seq: i64,
        limit: i64,
        render: Render,
    ) -> Result<Vec<RenderedRow>, StoreError> {
        self.scan_rows(after_seq, limit, |row| decode_rendered(row, &render))
            .await
    }

    async fn received_in_order_from(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT received_in_order_from FROM log_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// Inserts numbered events, one row each: the seq, the event's fields (UUIDs and times as
/// text), the leaf hash and the commit time (also the receipt time of an unattested event).
async fn insert(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[(i64, &PreparedEvent)],
    committed_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let committed_at = timestamp::format(&committed_at);
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "INSERT INTO audit_events (seq, {}, leaf_hash, committed_at) ",
        event_columns()
    ));
    q.push_values(rows, |mut b, (seq, p)| {
        b.push_bind(*seq);
        for &field in EventField::ALL {
            match p.event.get(field) {
                FieldRef::Absent if field == EventField::ReceivedAt => {
                    b.push_bind(committed_at.clone())
                }
                FieldRef::Absent => b.push_bind(None::<String>),
                FieldRef::Uuid(u) => b.push_bind(u.to_string()),
                FieldRef::Text(t) => b.push_bind(t),
                FieldRef::Time(t) => b.push_bind(timestamp::format(&t)),
                FieldRef::Int(i) => b.push_bind(i),
                FieldRef::Bool(v) => b.push_bind(v),
                // The event's one object, serialised outside the writer.
                FieldRef::Object(_) => b.push_bind(p.event_data_json.as_str()),
            };
        }
        b.push_bind(p.leaf_hash.as_bytes().to_vec())
            .push_bind(committed_at.clone());
    });
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

impl SqliteStore {
    /// Up to `limit` rows after `after_seq` in seq order, each decoded by `decode`.
    async fn scan_rows<T>(
        &self,
        after_seq: i64,
        limit: i64,
        decode: impl Fn(&sqlx::sqlite::SqliteRow) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        sqlx::query(&format!(
            "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            log_columns()
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode)
        .collect()
    }
}
