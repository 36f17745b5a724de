//! The event log on PostgreSQL.

use async_trait::async_trait;
use audit_model::StoredEvent;
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use super::{bound, PostgresStore};
use crate::store::columns::{
    decode_entry, decode_event, decode_leaf, decode_record, decode_rendered, decode_timeline_row,
    log_columns, TIMELINE_COLUMNS,
};
use crate::store::events::{classify, existing_events, existing_outcome};
use crate::store::{
    AppendOutcome, EventLog, EventQuery, LogEntry, PreparedEvent, RecordQuery, Render, RenderedRow,
    ScannedLeaf, StoreError, StoredRecord,
};

#[async_trait]
impl EventLog for PostgresStore {
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        // One statement, committed on its own: a single round trip to the database. It assigns
        // the seqs and the receipt time, both under the log head.
        let assigned = self.appenders.insert(events).await?;
        let seqs = assigned.seqs(events.len());
        let missing: Vec<Uuid> = events
            .iter()
            .zip(&seqs)
            .filter(|(_, seq)| seq.is_none())
            .map(|(e, _)| e.event.event_id())
            .collect();
        // A stored row never goes away (retention blanks its content, keeping its id and hash),
        // so the ids found stored by the insert are read back after its commit.
        let existing = if missing.is_empty() {
            Vec::new()
        } else {
            sqlx::query(&format!(
                "SELECT e.* FROM unnest($1::uuid[]) AS ids(id) CROSS JOIN LATERAL \
                 (SELECT {} FROM audit_events WHERE event_id = ids.id LIMIT 1) e",
                log_columns()
            ))
            .bind(&missing)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()?
        };
        let existing = existing_events(events, existing);
        Ok(classify(events, &existing)
            .into_iter()
            .zip(seqs)
            .map(|((event, found), seq)| match (found, seq) {
                (_, Some(seq)) => AppendOutcome::Created {
                    seq,
                    committed_at: assigned
                        .committed_at
                        .expect("an insert that assigned seqs assigned a commit time"),
                },
                (Some(stored), None) => existing_outcome(event, stored),
                // Not inserted means its id was stored when the insert ran.
                (None, None) => unreachable!("event neither inserted nor stored"),
            })
            .collect())
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<LogEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM audit_events WHERE event_id = $1",
            log_columns()
        ))
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_entry).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, binds) = query.to_sql('$');
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
             COALESCE(event_data->>'to_phase', event_data->>'new_phase') AS to_phase, \
             event_data->>'notification_uid' AS notification_uid \
             FROM audit_events_present WHERE correlation_id = $1 \
             ORDER BY event_timestamp, seq LIMIT $2"
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
        let (sql, binds) = query.to_count_sql('$');
        let row = bound(&sql, binds).fetch_one(&self.pool).await?;
        Ok(sqlx::Row::try_get(&row, 0)?)
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let (sql, binds) = query.to_sql('$');
        let q = bound(&sql, binds);
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_record)
            .collect()
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM audit_leaves")
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

impl PostgresStore {
    /// Up to `limit` rows after `after_seq` in seq order, each decoded by `decode`.
    async fn scan_rows<T: Send>(
        &self,
        after_seq: i64,
        limit: i64,
        decode: impl Fn(&sqlx::postgres::PgRow) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        // Without parallel workers: a parallel plan merges the wide rows through the workers'
        // queues, and took half as much CPU again per page as one process walking the leaves'
        // key and probing each content row (measured on a 1 M-event log, docs/benchmarks.md).
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await?;
        // Decoded as they arrive, so the database produces the page's later rows meanwhile.
        let sql = format!(
            "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            log_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(after_seq)
            .bind(limit)
            .fetch(&mut *tx)
            .map(|row| decode(&row?))
            .try_collect()
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
}
