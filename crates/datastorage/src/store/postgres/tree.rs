//! The Merkle tree's tables on PostgreSQL (see `migrations/postgres/0003_merkle_tree.sql`).

use std::collections::HashMap;

use async_trait::async_trait;
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;

use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use crate::store::columns::to_hash;
use crate::store::tree::{decode_checkpoint, CHECKPOINT_COLUMNS};
use crate::store::{CheckpointQuery, StoreError, StoredCheckpoint, StoredCosignature, TreeStore};

#[async_trait]
impl TreeStore for PostgresStore {
    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT seq, leaf_hash FROM audit_leaves WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(seq, h)| Ok((seq, to_hash(h)?)))
        .collect()
    }

    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        let seqs: Vec<i64> = ids
            .iter()
            .filter(|n| n.level == 0)
            .map(|n| n.index as i64 + 1)
            .collect();
        let (levels, indexes): (Vec<i16>, Vec<i64>) = ids
            .iter()
            .filter(|n| n.level > 0)
            .map(|n| (i16::from(n.level), n.index as i64))
            .unzip();
        let mut out = HashMap::with_capacity(ids.len());
        if !seqs.is_empty() {
            let rows: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT seq, leaf_hash FROM audit_leaves WHERE seq = ANY($1)")
                    .bind(&seqs)
                    .fetch_all(&self.pool)
                    .await?;
            for (seq, h) in rows {
                out.insert(NodeId::new(0, (seq - 1) as u64), to_hash(h)?);
            }
        }
        if !levels.is_empty() {
            let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT n.level, n.idx, n.hash FROM unnest($1::int2[], $2::int8[]) AS q(level, idx) \
                 JOIN merkle_nodes n ON n.level = q.level AND n.idx = q.idx",
            )
            .bind(&levels)
            .bind(&indexes)
            .fetch_all(&self.pool)
            .await?;
            for (level, idx, h) in rows {
                out.insert(NodeId::new(level as u8, idx as u64), to_hash(h)?);
            }
        }
        Ok(out)
    }

    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        let c = checkpoint;
        let mut tx = self.pool.begin().await?;
        if !nodes.is_empty() {
            let levels: Vec<i16> = nodes.iter().map(|(n, _)| i16::from(n.level)).collect();
            let indexes: Vec<i64> = nodes.iter().map(|(n, _)| n.index as i64).collect();
            let hashes: Vec<Vec<u8>> = nodes.iter().map(|(_, h)| h.to_vec()).collect();
            sqlx::query(
                "INSERT INTO merkle_nodes (level, idx, hash) \
                 SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[]) \
                 ON CONFLICT (level, idx) DO NOTHING",
            )
            .bind(&levels)
            .bind(&indexes)
            .bind(&hashes)
            .execute(&mut *tx)
            .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO checkpoints (tree_size, root_hash, signed_at, origin, key_id, note) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(c.tree_size)
        .bind(c.root_hash.to_vec())
        .bind(c.signed_at)
        .bind(&c.origin)
        .bind(&c.key_id)
        .bind(&c.note)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let base = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints");
        let rows = match query {
            CheckpointQuery::Latest => {
                sqlx::query(&format!("{base} ORDER BY tree_size DESC LIMIT 1"))
                    .fetch_all(&self.pool)
                    .await?
            }
            CheckpointQuery::Size(size) => {
                sqlx::query(&format!("{base} WHERE tree_size = $1"))
                    .bind(size)
                    .fetch_all(&self.pool)
                    .await?
            }
            CheckpointQuery::Covering(size) => {
                sqlx::query(&format!(
                    "{base} WHERE tree_size >= $1 ORDER BY tree_size LIMIT 1"
                ))
                .bind(size)
                .fetch_all(&self.pool)
                .await?
            }
            CheckpointQuery::Page {
                since,
                after_size,
                limit,
            } => {
                sqlx::query(&format!(
                    "{base} WHERE tree_size > $1 AND ($2::timestamptz IS NULL OR signed_at >= $2) \
                     ORDER BY tree_size LIMIT $3"
                ))
                .bind(after_size)
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(decode_checkpoint).collect()
    }

    async fn add_cosignature(&self, c: &StoredCosignature) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO checkpoint_cosignatures (tree_size, witness, cosigned_at, line) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size, witness) DO NOTHING",
        )
        .bind(c.tree_size)
        .bind(&c.witness)
        .bind(c.cosigned_at)
        .bind(&c.line)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn cosignatures(&self, tree_size: i64) -> Result<Vec<StoredCosignature>, StoreError> {
        let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT tree_size, witness, cosigned_at, line FROM checkpoint_cosignatures \
             WHERE tree_size = $1 ORDER BY witness",
        )
        .bind(tree_size)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(tree_size, witness, cosigned_at, line)| StoredCosignature {
                    tree_size,
                    witness,
                    cosigned_at,
                    line,
                },
            )
            .collect())
    }

    async fn cosigned_sizes(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT witness, max(tree_size) FROM checkpoint_cosignatures GROUP BY witness",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn witnessed(
        &self,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<Option<i64>, StoreError> {
        if witnesses.is_empty() {
            return Ok(None);
        }
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT tree_size FROM checkpoint_cosignatures WHERE witness IN (");
        let mut names = q.separated(", ");
        for w in witnesses {
            names.push_bind(w);
        }
        q.push(") GROUP BY tree_size HAVING count(*) >= ")
            .push_bind(quorum as i64)
            .push(" ORDER BY tree_size DESC LIMIT 1");
        let found: Option<(i64,)> = q.build_query_as().fetch_optional(&self.pool).await?;
        Ok(found.map(|(size,)| size))
    }
}
