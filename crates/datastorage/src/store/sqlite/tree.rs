//! The Merkle tree's tables on SQLite (see `migrations/sqlite/0003_merkle_tree.sql`).

use std::collections::HashMap;

use async_trait::async_trait;
use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::timestamp;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::store::columns::to_hash;
use crate::store::tree::{decode_checkpoint, CHECKPOINT_COLUMNS};
use crate::store::{CheckpointQuery, StoreError, StoredCheckpoint, StoredCosignature, TreeStore};

/// SQLite's default limit of bound parameters is 32766; three per node.
const NODES_PER_INSERT: usize = 5000;

#[async_trait]
impl TreeStore for SqliteStore {
    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT seq, leaf_hash FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
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
        let mut out = HashMap::with_capacity(ids.len());
        let leaves: Vec<i64> = ids
            .iter()
            .filter(|n| n.level == 0)
            .map(|n| n.index as i64 + 1)
            .collect();
        for chunk in leaves.chunks(1000) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT seq, leaf_hash FROM audit_events WHERE seq IN (");
            let mut list = q.separated(", ");
            for seq in chunk {
                list.push_bind(*seq);
            }
            q.push(")");
            for (seq, h) in q
                .build_query_as::<(i64, Vec<u8>)>()
                .persistent(false)
                .fetch_all(&self.pool)
                .await?
            {
                out.insert(NodeId::new(0, (seq - 1) as u64), to_hash(h)?);
            }
        }
        let inner: Vec<&NodeId> = ids.iter().filter(|n| n.level > 0).collect();
        for chunk in inner.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) IN (VALUES ",
            );
            let mut list = q.separated(", ");
            for n in chunk {
                list.push("(")
                    .push_bind_unseparated(i64::from(n.level))
                    .push_unseparated(", ")
                    .push_bind_unseparated(n.index as i64)
                    .push_unseparated(")");
            }
            q.push(")");
            for (level, idx, h) in q
                .build_query_as::<(i64, i64, Vec<u8>)>()
                .persistent(false)
                .fetch_all(&self.pool)
                .await?
            {
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
        for chunk in nodes.chunks(NODES_PER_INSERT) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT OR IGNORE INTO merkle_nodes (level, idx, hash) ");
            q.push_values(chunk, |mut b, (n, h)| {
                b.push_bind(i64::from(n.level))
                    .push_bind(n.index as i64)
                    .push_bind(h.to_vec());
            });
            q.build().persistent(false).execute(&mut *tx).await?;
        }
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO checkpoints (tree_size, root_hash, signed_at, origin, key_id, note) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(c.tree_size)
        .bind(c.root_hash.to_vec())
        .bind(timestamp::format(&c.signed_at))
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
                sqlx::query(&format!("{base} WHERE tree_size = ?"))
                    .bind(size)
                    .fetch_all(&self.pool)
                    .await?
            }
            CheckpointQuery::Covering(size) => {
                sqlx::query(&format!(
                    "{base} WHERE tree_size >= ? ORDER BY tree_size LIMIT 1"
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
                    "{base} WHERE tree_size > ? AND (? IS NULL OR signed_at >= ?) \
                     ORDER BY tree_size LIMIT ?"
                ))
                .bind(after_size)
                .bind(since.map(|t| timestamp::format(&t)))
                .bind(since.map(|t| timestamp::format(&t)))
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
             VALUES (?, ?, ?, ?) ON CONFLICT (tree_size, witness) DO NOTHING",
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
             WHERE tree_size = ? ORDER BY witness",
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
        let mut q: QueryBuilder<Sqlite> =
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
