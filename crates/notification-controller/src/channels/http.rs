//! The HTTP answer rules shared by the webhook-style channels.

use super::{Delivered, DeliveryError};

/// Sends `request` and classifies the answer: 2xx delivered; 408, 429 and 5xx retryable (the
/// provider may recover); any other status permanent (the request itself is refused); no
/// answer retryable.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Delivered, DeliveryError> {
    let response = request.send().await.map_err(|e| {
        // The error would name the URL, whose query or path may hold a token: the error goes
        // into the status, the audit trail and the logs.
        let e = e.without_url();
        if e.is_timeout() {
            DeliveryError::Retryable(format!("no answer in time: {e}"))
        } else {
            DeliveryError::Retryable(format!("cannot reach the provider: {e}"))
        }
    })?;
    let status = response.status();
    let answer = status.to_string();
    let body = response.text().await.unwrap_or_default();
    let detail = super::truncate(body.trim(), 300);
    if status.is_success() {
        return Ok(Delivered {
            provider_response: answer,
        });
    }
    let message = if detail.is_empty() {
        answer
    } else {
        format!("{answer}: {detail}")
    };
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Err(DeliveryError::Retryable(message))
    } else {
        Err(DeliveryError::Permanent(message))
    }
}
