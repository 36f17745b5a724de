//! The JSON body extractor: size limit as a 413 problem, malformed JSON as a 400 problem.

use audit_model::ProblemKind;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use super::problem::ApiError;

/// A request body parsed as JSON (any JSON value; the handler's parser checks the shape).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::field("body", format!("invalid JSON: {e}")))
    }
}

/// A request body as it came, for a handler that parses the JSON text itself (within the body
/// limit, which answers a 413 problem).
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ProblemKind::PayloadTooLarge,
                        "the request body is larger than the configured limit",
                    )
                } else {
                    ApiError::field("body", rejection.body_text())
                }
            })
    }
}
