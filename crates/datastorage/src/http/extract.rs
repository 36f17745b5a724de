//! Request bodies: only JSON, uncompressed, within the size limit, arriving in time, charged to
//! the body budget as they arrive, and parsed strictly.
//!
//! Every body the API takes is JSON, so any other `Content-Type` is refused (415) before the
//! body is read. That is also what keeps web pages from writing to the audit trail: a browser
//! sends a cross-origin `text/plain` or form POST without asking first (no CORS preflight), but
//! not one of `application/json`.

use std::time::Instant;

use audit_model::json::StrictJsonError;
use audit_model::{ProblemKind, DUPLICATE_KEY_MESSAGE};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::Value;

use super::admission::{BodyAccount, BodyRules};
use super::problem::ApiError;

/// A request body parsed as strict JSON (any JSON value; the handler's parser checks the shape).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        audit_model::json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| match e {
                StrictJsonError::Syntax(e) => ApiError::field("body", format!("invalid JSON: {e}")),
                StrictJsonError::DuplicateKey { path } => {
                    ApiError::field(&path, DUPLICATE_KEY_MESSAGE)
                }
            })
    }
}

/// A JSON request body as it came, for a handler that parses the text itself.
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        check_media_type(req.headers())?;
        let account = req.extensions().get::<BodyAccount>().cloned();
        let rules = account.as_ref().map_or(DEFAULT_RULES, BodyAccount::rules);
        read_body(req.into_body(), rules, account.as_ref())
            .await
            .map(BodyBytes)
    }
}

/// The rules of a body read without the admission middleware (unit tests of a router alone).
const DEFAULT_RULES: BodyRules = BodyRules {
    limit: 5 * 1024 * 1024,
    read_timeout: std::time::Duration::from_secs(10),
    min_rate_bytes_per_second: 64 * 1024,
};

/// `application/json` (any parameters, UTF-8 if a charset is named) and no content coding.
fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |detail: String| ApiError::new(ProblemKind::UnsupportedMediaType, detail);
    if let Some(coding) = headers.get(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("?").trim();
        if !coding.eq_ignore_ascii_case("identity") {
            return Err(unsupported(format!(
                "Content-Encoding {coding} is not supported; send the body uncompressed"
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("");
    let charset_ok = parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    if essence.eq_ignore_ascii_case("application/json") && charset_ok {
        Ok(())
    } else if content_type.is_empty() {
        Err(unsupported(
            "the request has a body but no Content-Type; send application/json".into(),
        ))
    } else {
        Err(unsupported(format!(
            "Content-Type {content_type} is not supported; send application/json (UTF-8)"
        )))
    }
}

/// Reads the body frame by frame: each frame within the read timeout, the whole body within
/// the time its length allows at the minimum rate, at most `limit` bytes, each frame charged
/// to the budget before it is kept.
async fn read_body(
    body: Body,
    rules: BodyRules,
    account: Option<&BodyAccount>,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!(
                "the request body is larger than the limit of {} bytes",
                rules.limit
            ),
        )
    };
    let declared = body.size_hint().upper().map(|n| n as usize);
    if declared.is_some_and(|n| n > rules.limit) {
        return Err(too_large());
    }
    let started = Instant::now();
    let deadline = started + rules.deadline(declared.unwrap_or(rules.limit));
    let mut body = body;
    let mut collected = BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024));
    loop {
        let now = Instant::now();
        let wait = rules
            .read_timeout
            .min(deadline.saturating_duration_since(now));
        // A body that is already here (most are, whole, with their head) is taken without
        // arming a timer; only a part that has yet to arrive is waited for with one.
        let mut next = std::pin::pin!(body.frame());
        let arrived = match futures::poll!(next.as_mut()) {
            std::task::Poll::Ready(frame) => Ok(frame),
            std::task::Poll::Pending => tokio::time::timeout(wait, next).await,
        };
        let frame = match arrived {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::field("body", format!("unreadable: {e}"))),
            Err(_) => {
                return Err(ApiError::new(
                    ProblemKind::RequestTimeout,
                    format!(
                        "the request body did not arrive in time ({} of {} bytes after {:.1} s); send it at least at {} bytes/s with no pause over {} s",
                        collected.len(),
                        declared.map_or("?".to_string(), |n| n.to_string()),
                        started.elapsed().as_secs_f64(),
                        rules.min_rate_bytes_per_second,
                        rules.read_timeout.as_secs(),
                    ),
                ))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if collected.len() + data.len() > rules.limit {
            return Err(too_large());
        }
        if let Some(account) = account {
            account.charge(data.len()).await.map_err(|_| {
                ApiError::new(
                    ProblemKind::ServiceUnavailable,
                    "the service holds as many request bodies as it may; retry shortly",
                )
            })?;
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: Option<&str>, encoding: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        if let Some(e) = encoding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(e).unwrap());
        }
        h
    }

    #[test]
    fn only_uncompressed_utf8_json_is_taken() {
        for ok in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(check_media_type(&headers(Some(ok), None)).is_ok(), "{ok}");
        }
        assert!(check_media_type(&headers(Some("application/json"), Some("identity"))).is_ok());
        for refused in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/xml"),
            Some("application/json; charset=latin1"),
            Some("application/jsonx"),
            None,
        ] {
            let e = check_media_type(&headers(refused, None)).unwrap_err();
            assert_eq!(e.0.status, 415, "{refused:?}");
        }
        let e = check_media_type(&headers(Some("application/json"), Some("gzip"))).unwrap_err();
        assert_eq!(e.0.status, 415);
        assert!(e.0.detail.unwrap().contains("gzip"));
    }
}

/// The trace context the caller wrote in (its W3C `traceparent`): audit events that carry none
/// of their own get its trace id and the caller's span id, whether or not this service exports
/// traces itself.
#[derive(Debug, Clone, Default)]
pub struct CallerTrace(Option<(String, String)>);

impl CallerTrace {
    /// `event`, with the caller's trace context when it has none.
    pub fn apply(&self, event: audit_model::AuditEvent) -> audit_model::AuditEvent {
        match &self.0 {
            Some((trace_id, span_id)) => event.traced(trace_id, span_id),
            None => event,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallerTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(CallerTrace(
            audit_tracing::context_of(&parts.headers).map(|c| audit_tracing::ids(&c)),
        ))
    }
}
