//! SMS through a Twilio-compatible REST API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`
//! with the form fields `To`, `From` and `Body`, authenticated with the account SID and token.

use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;

use super::{priority_name, truncate, Channel, Delivered, DeliveryError, Message};

/// Where and as whom SMS are sent.
#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// `https://api.twilio.com` for Twilio; any compatible provider's base URL.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The sender number (E.164).
    pub from: String,
}

static E164: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").expect("E.164 pattern compiles"));

pub(crate) struct Sms {
    http: reqwest::Client,
    settings: SmsSettings,
}

impl Sms {
    pub(crate) fn new(http: reqwest::Client, settings: SmsSettings) -> Self {
        Sms { http, settings }
    }
}

/// The SMS text: priority, subject and as much of the body as fits in 1600 characters.
pub fn text(message: &Message) -> String {
    truncate(
        &format!(
            "[{}] {}\n{}",
            priority_name(message.priority).to_uppercase(),
            message.subject,
            message.body
        ),
        1600,
    )
}

#[async_trait]
impl Channel for Sms {
    async fn deliver(
        &self,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        if !E164.is_match(recipient) {
            return Err(DeliveryError::Permanent(format!(
                "invalid phone number {recipient:?}: expected E.164 such as +15551234567"
            )));
        }
        let s = &self.settings;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            s.base_url.trim_end_matches('/'),
            s.account_sid
        );
        let body = text(message);
        let form = [
            ("To", recipient),
            ("From", s.from.as_str()),
            ("Body", body.as_str()),
        ];
        let request = self
            .http
            .post(url)
            .basic_auth(&s.account_sid, Some(&s.auth_token))
            .form(&form);
        super::http::send(request).await
    }
}
