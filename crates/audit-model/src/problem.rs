//! RFC 7807 problem details, with the `type` slugs the platform relies on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Prefix of every problem `type` URI; the slug follows.
pub const PROBLEM_TYPE_BASE: &str = "https://kubernaut.ai/problems/";

/// The kinds of problem the service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    ValidationError,
    Conflict,
    NotFound,
    Gone,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    MethodNotAllowed,
    /// The request carries no identity the service can trust.
    Unauthorized,
    Forbidden,
    TooManyRequests,
    /// A request that HTTP/1.1 cannot parse (malformed request line or header field).
    BadRequest,
    /// The body did not arrive in time.
    RequestTimeout,
    UriTooLong,
    HeaderFieldsTooLarge,
    Internal,
}

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::ValidationError => "validation-error",
            ProblemKind::Conflict => "conflict",
            ProblemKind::NotFound => "not-found",
            ProblemKind::Gone => "gone",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::ServiceUnavailable => "service-unavailable",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::TooManyRequests => "too-many-requests",
            ProblemKind::BadRequest => "bad-request",
            ProblemKind::RequestTimeout => "request-timeout",
            ProblemKind::UriTooLong => "uri-too-long",
            ProblemKind::HeaderFieldsTooLarge => "header-fields-too-large",
            ProblemKind::Internal => "internal-error",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::ValidationError => "Validation error",
            ProblemKind::Conflict => "Conflict",
            ProblemKind::NotFound => "Not found",
            ProblemKind::Gone => "Gone",
            ProblemKind::PayloadTooLarge => "Payload too large",
            ProblemKind::ServiceUnavailable => "Service unavailable",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::Unauthorized => "Unauthorized",
            ProblemKind::Forbidden => "Forbidden",
            ProblemKind::TooManyRequests => "Too many requests",
            ProblemKind::BadRequest => "Bad request",
            ProblemKind::RequestTimeout => "Request timeout",
            ProblemKind::UriTooLong => "URI too long",
            ProblemKind::HeaderFieldsTooLarge => "Request header fields too large",
            ProblemKind::Internal => "Internal error",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ProblemKind::ValidationError => 400,
            ProblemKind::Conflict => 409,
            ProblemKind::NotFound => 404,
            ProblemKind::Gone => 410,
            ProblemKind::PayloadTooLarge => 413,
            ProblemKind::ServiceUnavailable => 503,
            ProblemKind::UnsupportedMediaType => 415,
            ProblemKind::MethodNotAllowed => 405,
            ProblemKind::Unauthorized => 401,
            ProblemKind::Forbidden => 403,
            ProblemKind::TooManyRequests => 429,
            ProblemKind::BadRequest => 400,
            ProblemKind::RequestTimeout => 408,
            ProblemKind::UriTooLong => 414,
            ProblemKind::HeaderFieldsTooLarge => 431,
            ProblemKind::Internal => 500,
        }
    }
}

/// An RFC 7807 `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Field name to message, on validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_errors: Option<BTreeMap<String, String>>,
    /// Extension members (for example `resource`, `field`, `value` on a conflict).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("{PROBLEM_TYPE_BASE}{}", kind.slug()),
            title: kind.title().to_string(),
            status: kind.status(),
            detail: Some(detail.into()),
            instance: None,
            field_errors: None,
            extensions: Map::new(),
        }
    }

    /// The slug at the end of `type`.
    pub fn slug(&self) -> &str {
        self.type_uri.rsplit('/').next().unwrap_or_default()
    }

    pub fn with_field_errors(mut self, errors: BTreeMap<String, String>) -> Self {
        self.field_errors = Some(errors);
        self
    }

    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }
}
