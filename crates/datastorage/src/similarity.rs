//! Nearest AI decisions by cosine similarity of their embeddings.
//!
//! There is no vector index here (pgvector is not available), so [`nearest`] scans the stored
//! decisions that carry an embedding, page by page, and keeps the best `k`: exact, and linear in
//! the number of decisions. It is the one function an indexed implementation would replace.

use audit_model::{AiAnalysisAudit, SeedRecord};
use serde_json::Value;

use crate::store::{EventLog, RecordQuery, StoreError, StoredRecord};

const PAGE: u32 = 1000;

/// A stored decision and its similarity to the query.
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub record: StoredRecord,
    pub similarity: f64,
}

/// The `k` stored AI decisions most similar to `query` (at least `min_similarity`), best first.
pub async fn nearest(
    store: &dyn EventLog,
    query: &[f64],
    k: usize,
    min_similarity: Option<f64>,
) -> Result<Vec<Neighbour>, StoreError> {
    // A zero query has no direction: nothing is similar to it.
    let Some(query) = unit(query) else {
        return Ok(Vec::new());
    };
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
            let Some(similarity) = similarity_of(&record, &query) else {
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

/// The cosine similarity of a stored decision's embedding to the unit `query`.
fn similarity_of(record: &StoredRecord, query: &[f64]) -> Option<f64> {
    let Some(Value::Array(values)) = record.record.get("embedding") else {
        return None;
    };
    if values.len() != query.len() {
        return None;
    }
    let stored: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
    let stored = unit(&stored?)?;
    let cosine: f64 = stored.iter().zip(query).map(|(a, b)| a * b).sum();
    cosine.is_finite().then(|| cosine.clamp(-1.0, 1.0))
}

/// `v` scaled to length 1, or `None` for a zero vector. It is first divided by its largest
/// magnitude, so that squaring neither overflows (values near 1e300) nor underflows (near
/// 1e-200) on the way.
pub fn unit(v: &[f64]) -> Option<Vec<f64>> {
    let largest = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return None;
    }
    let scaled: Vec<f64> = v.iter().map(|x| x / largest).collect();
    let length = scaled.iter().map(|x| x * x).sum::<f64>().sqrt();
    Some(scaled.into_iter().map(|x| x / length).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_tiny_vectors_have_a_direction() {
        let huge = unit(&[3e300, 4e300]).unwrap();
        assert!((huge[0] - 0.6).abs() < 1e-12 && (huge[1] - 0.8).abs() < 1e-12);
        let tiny = unit(&[3e-200, -4e-200]).unwrap();
        assert!((tiny[0] - 0.6).abs() < 1e-12 && (tiny[1] + 0.8).abs() < 1e-12);
        assert!(unit(&[0.0, 0.0]).is_none());
    }
}
