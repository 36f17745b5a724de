//! HTTP to Data Storage: one batch of events, or one typed record, and what each answer means.

use std::time::Duration;

use audit_model::{AuditEvent, BatchResponse, ItemStatus};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::token::Token;

/// The server's answer for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemResult {
    /// Stored (201/`created`) or durably queued by the server (202/`queued`).
    Sent,
    /// Already stored (200/`duplicate`).
    Duplicate,
    /// Refused; never retried unchanged.
    Rejected(String),
}

/// Why a request did not produce per-item answers.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// Try again later: network error, 5xx, 408, 401/403 (tokens rotate).
    Retryable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// 429: the service's rate limit; send again after `retry_after`, without giving up.
    Throttled { retry_after: Duration },
    /// Another 4xx: the request itself is refused.
    Permanent(String),
}

pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    token: Option<Token>,
}

impl Transport {
    /// A transport to `base`; an `https` service's certificate is verified against the public
    /// web roots and the certificates of `ca_file`.
    pub(crate) fn new(
        base: String,
        timeout: Duration,
        token: Option<Token>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().use_rustls_tls().timeout(timeout);
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("the CA file {}: {e}", path.display()))?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
            if bundle.is_empty() {
                return Err(format!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                ));
            }
            for certificate in bundle {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { http, base, token })
    }

    async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        span: &tracing::Span,
    ) -> Result<reqwest::Response, Failure> {
        // This client reads the native answers (per-item batch results, 200 for a duplicate),
        // whatever the service answers by default (RFC 7240 preference).
        let mut trace = HeaderMap::new();
        audit_tracing::inject(span, &mut trace);
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("prefer", "answers=native")
            .headers(trace)
            .json(body);
        if let Some(token) = self.token.as_ref().and_then(Token::current) {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Failure::Retryable {
            retry_after: None,
            reason: format!("request failed: {e}"),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            if let Some(token) = &self.token {
                token.invalidate();
            }
        }
        let retry_after = retry_after(response.headers());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Throttled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            });
        }
        let detail = problem_detail(response).await;
        let reason = format!("{status}: {detail}");
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            )
        {
            Err(Failure::Retryable {
                retry_after,
                reason,
            })
        } else {
            Err(Failure::Permanent(reason))
        }
    }

    /// `POST /api/v1/audit/events/batch`; answers per event, in order.
    pub(crate) async fn send_events(
        &self,
        events: &[&AuditEvent],
        span: &tracing::Span,
    ) -> Result<Vec<ItemResult>, Failure> {
        let response = self
            .post("/api/v1/audit/events/batch", &events, span)
            .instrument(span.clone())
            .await?;
        let answer: BatchResponse = response.json().await.map_err(|e| Failure::Retryable {
            retry_after: None,
            reason: format!("unreadable batch answer: {e}"),
        })?;
        if answer.results.len() != events.len() {
            return Err(Failure::Permanent(format!(
                "the server answered {} results for {} events",
                answer.results.len(),
                events.len()
            )));
        }
        let mut results = answer.results;
        results.sort_by_key(|r| r.index);
        Ok(results
            .into_iter()
            .map(|r| match r.status {
                ItemStatus::Created | ItemStatus::Queued => ItemResult::Sent,
                ItemStatus::Duplicate => ItemResult::Duplicate,
                ItemStatus::Rejected => ItemResult::Rejected(r.error.unwrap_or_default()),
            })
            .collect())
    }

    /// `POST /api/v1/audit/<path>` with one typed record.
    pub(crate) async fn send_record(
        &self,
        path: &str,
        body: &Value,
        span: &tracing::Span,
    ) -> Result<ItemResult, Failure> {
        let sent = self
            .post(&format!("/api/v1/audit/{path}"), body, span)
            .instrument(span.clone())
            .await;
        match sent {
            Ok(r) if r.status() == StatusCode::OK => Ok(ItemResult::Duplicate),
            Ok(_) => Ok(ItemResult::Sent),
            Err(Failure::Permanent(reason)) => Ok(ItemResult::Rejected(reason)),
            Err(e) => Err(e),
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn problem_detail(response: reqwest::Response) -> String {
    match response.json::<Value>().await {
        Ok(v) => v["detail"].as_str().unwrap_or_default().to_string(),
        Err(_) => String::new(),
    }
}
