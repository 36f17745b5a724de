//! `POST /api/v1/audit/ai-decisions/similar`.

use audit_model::{ObjectReader, Problem};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::http::extract::JsonBody;
use crate::http::problem::ApiError;
use crate::http::routes::records::row_json;
use crate::http::AppState;

/// One similar decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarDecision {
    /// Cosine similarity to the query, -1..1.
    pub similarity: f64,
    /// The stored `ai_analysis_audit` record.
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
}

/// The answer: best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarDecisions {
    pub data: Vec<SimilarDecision>,
}

/// A similarity search as asked.
pub(crate) struct SimilarRequest {
    pub embedding: Vec<f64>,
    pub limit: usize,
    pub min_similarity: Option<f64>,
}

/// Reads a similarity search; every bad field is reported at once.
pub(crate) fn read_request(
    body: serde_json::Value,
    dimension: usize,
) -> Result<SimilarRequest, audit_model::FieldErrors> {
    let mut r = ObjectReader::new(body)?;
    r.describe_field(
        "embedding",
        audit_model::FieldRule::Numbers {
            len: Some(dimension),
        },
    );
    let embedding = r
        .array("embedding")
        .and_then(|values| audit_model::records::embedding(values, dimension, &mut r));
    let limit = r.opt_int("limit", 1, 100).unwrap_or(10) as usize;
    let min_similarity = r.opt_number("min_similarity", -1.0, 1.0);
    let errors = r.finish();
    match embedding {
        Some(embedding) if errors.is_empty() => Ok(SimilarRequest {
            embedding,
            limit,
            min_similarity,
        }),
        _ => Err(errors),
    }
}

/// The `k` stored AI decisions whose embeddings are most similar to the given one.
#[utoipa::path(post, path = "/api/v1/audit/ai-decisions/similar", tag = "records",
    request_body(content = Object, description = "An embedding and how many neighbours (its schema is made from `read_request`)"),
    responses(
        (status = 200, description = "Nearest decisions by cosine similarity, best first", body = SimilarDecisions),
        (status = 400, description = "Bad embedding, limit or threshold", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn similar(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<SimilarDecisions>, ApiError> {
    let request =
        read_request(body, state.embedding_dimension).map_err(|e| ApiError::validation(&e))?;
    let (embedding, limit, min_similarity) =
        (request.embedding, request.limit, request.min_similarity);
    let found = crate::similarity::nearest(state.store.as_ref(), &embedding, limit, min_similarity)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SimilarDecisions {
        data: found
            .into_iter()
            .map(|n| SimilarDecision {
                similarity: n.similarity,
                record: row_json(&n.record),
            })
            .collect(),
    }))
}
