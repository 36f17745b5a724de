//! Generic webhook: the notification as a JSON POST, signed with HMAC-SHA256 when a key is set.
//!
//! The signature header is `X-Notification-Signature: sha256=<hex>` over the exact body bytes,
//! the convention receivers of GitHub-style webhooks already verify.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Channel, Delivered, DeliveryError, Message};
use crate::decide::DEFAULT_DESTINATION;

/// The header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "X-Notification-Signature";

pub(crate) struct Webhook {
    http: reqwest::Client,
    default_url: Option<String>,
    secret: Option<String>,
}

impl Webhook {
    pub(crate) fn new(
        http: reqwest::Client,
        default_url: Option<String>,
        secret: Option<String>,
    ) -> Self {
        Webhook {
            http,
            default_url,
            secret,
        }
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Channel for Webhook {
    async fn deliver(
        &self,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        let url = if recipient == DEFAULT_DESTINATION {
            self.default_url.clone().ok_or_else(|| {
                DeliveryError::Permanent(
                    "no webhookURL on any recipient and no default webhook URL configured"
                        .to_string(),
                )
            })?
        } else {
            recipient.to_string()
        };
        let url = reqwest::Url::parse(&url)
            .map_err(|e| DeliveryError::Permanent(format!("invalid webhook URL: {e}")))?;
        let mut payload = serde_json::to_value(message)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the message: {e}")))?;
        payload["recipient"] = json!(recipient);
        let body = serde_json::to_vec(&payload)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the message: {e}")))?;
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        super::http::send(request.body(body)).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
