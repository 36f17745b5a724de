//! `POST /api/v1/audit/ai-decisions/similar`.

use audit_model::{ObjectReader, Problem, ProblemKind, Reason};
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

/// The `k` stored AI decisions whose embeddings are most similar to the given one.
#[utoipa::path(post, path = "/api/v1/audit/ai-decisions/similar", tag = "records",
    request_body(content = Object, description = "`{\"embedding\": [..], \"limit\": k (1..100, default 10), \"min_similarity\": -1..1}`"),
    responses(
        (status = 200, description = "Nearest decisions by cosine similarity, best first", body = SimilarDecisions),
        (status = 400, description = "Bad embedding, limit or threshold", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn similar(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<SimilarDecisions>, ApiError> {
    let mut r = ObjectReader::new(body).map_err(|e| ApiError::validation(&e))?;
    let embedding = match r.opt_array("embedding") {
        Some(values) => audit_model::records::embedding(values, state.embedding_dimension, &mut r),
        None => {
            r.errors_mut()
                .add("embedding", Reason::Required, "is required");
            None
        }
    };
    let limit = r.opt_int("limit", 1, 100).unwrap_or(10) as usize;
    let min_similarity = r.opt_number("min_similarity", -1.0, 1.0);
    if let Some(e) = &embedding {
        if crate::similarity::norm(e) == 0.0 {
            r.errors_mut()
                .add("embedding", Reason::InvalidValue, "must not be all zeros");
        }
    }
    let errors = r.finish();
    if !errors.is_empty() {
        return Err(ApiError::validation(&errors));
    }
    let Some(embedding) = embedding else {
        return Err(ApiError::new(
            ProblemKind::Internal,
            "embedding missing after validation",
        ));
    };
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
