//! Legal holds and the retention purge on PostgreSQL (see
//! `migrations/postgres/0004_retention_and_legal_hold.sql` and
//! `0009_partitioned_content.sql`; the triggers there refuse any purge these statements would
//! not make).
//!
//! The purge removes content: whole partitions of `audit_content` where every event expired and
//! none is held (a `DROP`, recorded in `retention_dropped_partitions`), then the expired, unheld
//! rows of the others, each leaf marked `purged_at`. The leaves stay for ever.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::holds::{decode_hold, HOLD_COLUMNS};
use crate::store::{DroppedPartition, HoldRequest, HoldStore, LegalHold, PlaceHold, StoreError};

/// Content expired by `$1`.
const PURGEABLE: &str = "e.event_timestamp + make_interval(days => e.retention_days) <= $1";
const HELD: &str = "EXISTS (SELECT 1 FROM legal_holds h \
    WHERE h.correlation_id = e.correlation_id AND h.released_at IS NULL)";

#[async_trait]
impl HoldStore for PostgresStore {
    async fn place_hold(&self, request: &HoldRequest) -> Result<PlaceHold, StoreError> {
        let mut tx = self.pool.begin().await?;
        let placed = sqlx::query(&format!(
            "INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (correlation_id) WHERE released_at IS NULL DO NOTHING \
             RETURNING {HOLD_COLUMNS}"
        ))
        .bind(&request.correlation_id)
        .bind(&request.reason)
        .bind(&request.by)
        .bind(request.at)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match placed {
            Some(row) => PlaceHold::Placed(decode_hold(&row)?),
            None => {
                let row = sqlx::query(&format!(
                    "SELECT {HOLD_COLUMNS} FROM legal_holds \
                     WHERE correlation_id = $1 AND released_at IS NULL"
                ))
                .bind(&request.correlation_id)
                .fetch_one(&mut *tx)
                .await?;
                PlaceHold::AlreadyHeld(decode_hold(&row)?)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_hold(&self, request: &HoldRequest) -> Result<Option<LegalHold>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE legal_holds SET released_at = $2, release_reason = $3, released_by = $4 \
             WHERE correlation_id = $1 AND released_at IS NULL RETURNING {HOLD_COLUMNS}"
        ))
        .bind(&request.correlation_id)
        .bind(request.at)
        .bind(&request.reason)
        .bind(&request.by)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_hold).transpose()
    }

    async fn holds(
        &self,
        correlation_id: Option<&str>,
        include_released: bool,
    ) -> Result<Vec<LegalHold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds \
             WHERE ($1::text IS NULL OR correlation_id = $1) AND ($2 OR released_at IS NULL) \
             ORDER BY id DESC"
        ))
        .bind(correlation_id)
        .bind(include_released)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_hold)
        .collect()
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError> {
        // The content first, then its leaves (whose trigger wants the content gone), in one
        // transaction; oldest first, in the content's key order (the expired are the oldest).
        let mut tx = self.pool.begin().await?;
        let mut seqs: Vec<i64> = sqlx::query_scalar(&format!(
            "WITH victims AS ( \
               SELECT e.seq, e.event_timestamp FROM audit_content e \
               WHERE {PURGEABLE} AND NOT {HELD} \
               ORDER BY e.event_timestamp, e.seq LIMIT $2 FOR UPDATE) \
             DELETE FROM audit_content c USING victims v \
             WHERE c.seq = v.seq AND c.event_timestamp = v.event_timestamp RETURNING c.seq"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_leaves SET purged_at = $1 WHERE seq = ANY($2)")
            .bind(now)
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT count(*) FROM audit_content e WHERE {PURGEABLE} AND {HELD}"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn drop_expired_partitions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<DroppedPartition>, StoreError> {
        let mut dropped = Vec::new();
        for (partition, month) in self.content_partitions().await? {
            if month.end > now {
                // It holds events of a month not over by `now`: not all expired.
                continue;
            }
            match self.drop_if_expired(&partition, &month, now).await {
                Ok(Some(d)) => dropped.push(d),
                Ok(None) => {}
                Err(StoreError::Database(error)) if lock_not_available(&error) => {
                    // Readers or writers held the table longer than the drop may wait; the
                    // next run tries again (its rows are not purged meanwhile, nothing is lost).
                    tracing::info!(
                        partition,
                        "the partition is busy; its drop waits for the next run"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(dropped)
    }

    async fn prepare_partitions(
        &self,
        now: DateTime<Utc>,
        ahead: u32,
    ) -> Result<Vec<String>, StoreError> {
        let before: Vec<String> = self
            .content_partitions()
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let mut conn = self.pool.acquire().await?;
        let mut created = Vec::new();
        for k in 0..=ahead {
            let Some(at) = now.checked_add_months(chrono::Months::new(k)) else {
                break;
            };
            let name = super::append::create_partition(&mut conn, at).await?;
            if !before.contains(&name) && !created.contains(&name) {
                created.push(name);
            }
        }
        Ok(created)
    }
}

/// The month a content partition holds: `start` ≤ `event_timestamp` < `end`.
struct Month {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// How long a partition's drop waits for the locks it needs: the parent table's exclusive lock
/// stops every insert while it is held or waited for, so the wait is short and a busy partition
/// waits for the next run instead.
const DROP_LOCK_TIMEOUT: &str = "200ms";

impl PostgresStore {
    /// The content partitions, oldest first, with their month.
    async fn content_partitions(&self) -> Result<Vec<(String, Month)>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT c.relname::text, to_date(substr(c.relname, 15), 'YYYY_MM')::timestamp AT TIME ZONE 'UTC' \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_content'::regclass AND c.relname ~ '^audit_content_[0-9]{4}_[0-9]{2}$' \
             ORDER BY c.relname",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, start)| {
                start
                    .checked_add_months(chrono::Months::new(1))
                    .map(|end| (name, Month { start, end }))
            })
            .collect())
    }

    /// Drops `partition` if every event in it expired by `now` and none is held, recording the
    /// drop in the same transaction; `None` when it must stay (or is empty and just dropped).
    async fn drop_if_expired(
        &self,
        partition: &str,
        month: &Month,
        now: DateTime<Utc>,
    ) -> Result<Option<DroppedPartition>, StoreError> {
        let table = format!("\"{}\"", partition.replace('"', ""));
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        // No hold is placed and no late event joins the partition while this decides.
        for lock in [
            "LOCK TABLE legal_holds IN SHARE MODE".to_string(),
            format!("LOCK TABLE {table} IN SHARE MODE"),
        ] {
            sqlx::query(&lock).execute(&mut *tx).await?;
        }
        // Expired by the caller's clock and the database's, whichever is earlier.
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT LEAST($1, now())")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        // Cheap refusals first, each stopping at its first row: a held correlation (through the
        // partition's correlation index), then an unexpired event (most months of a log with
        // years of retention stop at their first row). Only a month that goes is counted.
        let keep: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {table} e WHERE {HELD}) \
                 OR EXISTS (SELECT 1 FROM {table} e WHERE NOT ({PURGEABLE}))"
        ))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if keep {
            return Ok(None);
        }
        let (events, first_seq, last_seq): (i64, Option<i64>, Option<i64>) =
            sqlx::query_as(&format!("SELECT count(*), min(seq), max(seq) FROM {table}"))
                .fetch_one(&mut *tx)
                .await?;
        let dropped = match (first_seq, last_seq) {
            (Some(first_seq), Some(last_seq)) => {
                sqlx::query(
                    "INSERT INTO retention_dropped_partitions \
                       (partition, range_from, range_to, first_seq, last_seq, events, dropped_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(partition)
                .bind(month.start)
                .bind(month.end)
                .bind(first_seq)
                .bind(last_seq)
                .bind(events)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Some(DroppedPartition {
                    partition: partition.to_string(),
                    events,
                    first_seq,
                    last_seq,
                })
            }
            _ => None,
        };
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(dropped)
    }
}

/// The lock wait ran out (SQLSTATE 55P03).
fn lock_not_available(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}
