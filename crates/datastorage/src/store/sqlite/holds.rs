//! Legal holds and the retention purge on SQLite (see
//! `migrations/sqlite/0004_retention_and_legal_hold.sql`).

use async_trait::async_trait;
use audit_model::timestamp;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::columns::blank_content;
use crate::store::holds::{decode_hold, HOLD_COLUMNS};
use crate::store::{HoldRequest, HoldStore, LegalHold, PlaceHold, StoreError};

/// Expired by `?1`, and no active hold on the correlation.
const PURGEABLE: &str = "e.purged_at IS NULL \
    AND julianday(e.event_timestamp) + e.retention_days <= julianday(?1)";
const HELD: &str = "EXISTS (SELECT 1 FROM legal_holds h \
    WHERE h.correlation_id = e.correlation_id AND h.released_at IS NULL)";

#[async_trait]
impl HoldStore for SqliteStore {
    async fn place_hold(&self, request: &HoldRequest) -> Result<PlaceHold, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let placed = sqlx::query(&format!(
            "INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (correlation_id) WHERE released_at IS NULL DO NOTHING \
             RETURNING {HOLD_COLUMNS}"
        ))
        .bind(&request.correlation_id)
        .bind(&request.reason)
        .bind(&request.by)
        .bind(timestamp::format(&request.at))
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match placed {
            Some(row) => PlaceHold::Placed(decode_hold(&row)?),
            None => {
                let row = sqlx::query(&format!(
                    "SELECT {HOLD_COLUMNS} FROM legal_holds \
                     WHERE correlation_id = ?1 AND released_at IS NULL"
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
            "UPDATE legal_holds SET released_at = ?2, release_reason = ?3, released_by = ?4 \
             WHERE correlation_id = ?1 AND released_at IS NULL RETURNING {HOLD_COLUMNS}"
        ))
        .bind(&request.correlation_id)
        .bind(timestamp::format(&request.at))
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
             WHERE (?1 IS NULL OR correlation_id = ?1) AND (?2 OR released_at IS NULL) \
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
        let mut seqs: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE audit_events SET purged_at = ?1, {} WHERE seq IN ( \
               SELECT e.seq FROM audit_events e WHERE {PURGEABLE} AND NOT {HELD} \
               ORDER BY e.seq LIMIT ?2) RETURNING seq",
            blank_content()
        ))
        .bind(timestamp::format(&now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn count_held_expired(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT count(*) FROM audit_events e WHERE {PURGEABLE} AND {HELD}"
        ))
        .bind(timestamp::format(&now))
        .fetch_one(&self.pool)
        .await?)
    }
}
