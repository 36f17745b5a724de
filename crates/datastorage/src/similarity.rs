//! Nearest AI decisions by cosine similarity of their embeddings.
//!
//! There is no vector index here (pgvector is not available), so [`nearest`] scans the stored
//! decisions that carry an embedding, page by page, and keeps the best `k`: exact, and linear in
//! the number of decisions. It is the one function an indexed implementation would replace.

use audit_model::{AiAnalysisAudit, SeedRecord};
use serde_json::Value;

use crate::store::{LogStore, RecordQuery, StoreError, StoredRecord};

const PAGE: u32 = 1000;

/// A stored decision and its similarity to the query.
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub record: StoredRecord,
    pub similarity: f64,
}

/// The `k` stored AI decisions most similar to `query` (at least `min_similarity`), best first.
pub async fn nearest(
    store: &dyn LogStore,
    query: &[f64],
    k: usize,
    min_similarity: Option<f64>,
) -> Result<Vec<Neighbour>, StoreError> {
    let query_norm = norm(query);
    let mut best: Vec<Neighbour> = Vec::with_capacity(k + 1);
    let mut after = None;
    loop {
        let page = store
            .records(&RecordQuery {
                view: AiAnalysisAudit::KIND.view,
                time_column: AiAnalysisAudit::KIND.time_field,
                present: Some("embedding"),
                after,
                limit: PAGE,
                ..RecordQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        let full = page.len() as u32 == PAGE;
        for record in page {
            let Some(similarity) = similarity_of(&record, query, query_norm) else {
                continue;
            };
            if min_similarity.is_some_and(|m| similarity < m) {
                continue;
            }
            best.push(Neighbour { record, similarity });
            best.sort_by(|a, b| {
                b.similarity
                    .total_cmp(&a.similarity)
                    .then(a.record.seq.cmp(&b.record.seq))
            });
            best.truncate(k);
        }
        if !full {
            break;
        }
    }
    Ok(best)
}

fn similarity_of(record: &StoredRecord, query: &[f64], query_norm: f64) -> Option<f64> {
    let Some(Value::Array(values)) = record.record.get("embedding") else {
        return None;
    };
    if values.len() != query.len() {
        return None;
    }
    let mut dot = 0.0;
    let mut sq = 0.0;
    for (v, q) in values.iter().zip(query) {
        let v = v.as_f64()?;
        dot += v * q;
        sq += v * v;
    }
    let n = sq.sqrt();
    (n > 0.0 && query_norm > 0.0).then(|| (dot / (n * query_norm)).clamp(-1.0, 1.0))
}

/// Euclidean norm.
pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}
