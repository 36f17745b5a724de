//! Delivery channels: one real protocol client per channel.
//!
//! A channel delivers one [`Message`] to one recipient and says how it went: delivered (with the
//! provider's answer, such as `200 OK`), failed in a way worth retrying (network, 5xx, 429),
//! timed out, or refused for good (invalid address, 4xx). The reconciler decides about retries;
//! a channel never retries by itself. Secrets (webhook URLs, SMTP and SMS credentials, the HMAC
//! key) come from the controller's configuration, never from the CR.

mod console;
mod email;
mod file;
mod http;
mod slack;
mod sms;
mod teams;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::crd::{ActionLink, ChannelKind, NotificationRequest, NotificationType, Priority};
use crate::redact::redact;

pub use email::SmtpSettings;
pub use sms::SmsSettings;
pub use webhook::{signature as webhook_signature, SIGNATURE_HEADER};

/// What channels deliver: the notification with secrets masked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub name: String,
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: NotificationType,
    pub priority: Priority,
    pub subject: String,
    pub body: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub action_links: Vec<ActionLink>,
}

impl Message {
    /// The message for `nr`, with subject and body passed through the redactor.
    pub fn from_request(nr: &NotificationRequest) -> Message {
        let spec = &nr.spec;
        Message {
            name: nr.metadata.name.clone().unwrap_or_default(),
            namespace: nr.metadata.namespace.clone().unwrap_or_default(),
            kind: spec.kind,
            priority: spec.priority,
            subject: redact(&spec.subject).into_owned(),
            body: redact(&spec.body).into_owned(),
            metadata: spec.metadata.clone(),
            action_links: spec.action_links.clone(),
        }
    }
}

/// A successful delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The provider's answer, such as `200 OK` or `250 2.0.0 Ok: queued`.
    pub provider_response: String,
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: network trouble, 5xx, 429, a transient SMTP answer.
    #[error("{0}")]
    Retryable(String),
    /// No answer within the delivery timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Retrying cannot help: an invalid address, a 4xx refusal, a channel that is not configured.
    #[error("{0}")]
    Permanent(String),
}

/// One delivery channel.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Delivers `message` to `recipient` (the target's address, or a fallback name such as
    /// `default`; see [`crate::decide::targets`]).
    async fn deliver(&self, message: &Message, recipient: &str)
        -> Result<Delivered, DeliveryError>;
}

/// What the operator configured for the channels.
#[derive(Debug, Clone, Default)]
pub struct ChannelSettings {
    pub slack_webhook_url: Option<String>,
    pub teams_webhook_url: Option<String>,
    /// Where webhook deliveries go when the recipient gives no `webhookURL`.
    pub webhook_default_url: Option<String>,
    /// Key of the `X-Notification-Signature` HMAC-SHA256 header.
    pub webhook_hmac_secret: Option<String>,
    pub smtp: Option<SmtpSettings>,
    pub sms: Option<SmsSettings>,
    pub file_dir: Option<PathBuf>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

/// The configured channels, by kind.
#[derive(Clone)]
pub struct Channels {
    by_kind: HashMap<ChannelKind, Arc<dyn Channel>>,
    timeout: Duration,
}

impl Channels {
    /// Builds every channel the settings configure; console is always there.
    pub fn from_settings(settings: &ChannelSettings) -> Result<Channels, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!(
                "notification-controller/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut by_kind: HashMap<ChannelKind, Arc<dyn Channel>> = HashMap::new();
        by_kind.insert(ChannelKind::Console, Arc::new(console::Console));
        if let Some(url) = &settings.slack_webhook_url {
            by_kind.insert(
                ChannelKind::Slack,
                Arc::new(slack::Slack::new(http.clone(), url.clone())),
            );
        }
        if let Some(url) = &settings.teams_webhook_url {
            by_kind.insert(
                ChannelKind::Teams,
                Arc::new(teams::Teams::new(http.clone(), url.clone())),
            );
        }
        by_kind.insert(
            ChannelKind::Webhook,
            Arc::new(webhook::Webhook::new(
                http.clone(),
                settings.webhook_default_url.clone(),
                settings.webhook_hmac_secret.clone(),
            )),
        );
        if let Some(smtp) = &settings.smtp {
            by_kind.insert(
                ChannelKind::Email,
                Arc::new(email::Email::new(smtp, settings.timeout)?),
            );
        }
        if let Some(sms) = &settings.sms {
            by_kind.insert(
                ChannelKind::Sms,
                Arc::new(sms::Sms::new(http.clone(), sms.clone())),
            );
        }
        if let Some(dir) = &settings.file_dir {
            by_kind.insert(ChannelKind::File, Arc::new(file::FileChannel::new(dir)?));
        }
        Ok(Channels {
            by_kind,
            timeout: settings.timeout,
        })
    }

    /// Replaces (or adds) one channel; tests use it to put a scripted channel in place.
    pub fn with(mut self, kind: ChannelKind, channel: Arc<dyn Channel>) -> Channels {
        self.by_kind.insert(kind, channel);
        self
    }

    /// Delivers on `kind`, bounded by the delivery timeout. An unconfigured channel is a
    /// permanent failure: retrying will not configure it.
    pub async fn deliver(
        &self,
        kind: ChannelKind,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        let Some(channel) = self.by_kind.get(&kind) else {
            return Err(DeliveryError::Permanent(format!(
                "the {kind} channel is not configured on this controller"
            )));
        };
        match tokio::time::timeout(self.timeout, channel.deliver(message, recipient)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Timeout(self.timeout)),
        }
    }
}

/// A priority's marker in chat messages.
pub(crate) fn priority_emoji(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "🚨",
        Priority::High => "⚠️",
        Priority::Medium => "ℹ️",
        Priority::Low => "💬",
    }
}

pub(crate) fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Medium => "medium",
        Priority::Low => "low",
    }
}

pub(crate) fn type_name(t: NotificationType) -> &'static str {
    match t {
        NotificationType::Escalation => "escalation",
        NotificationType::Simple => "simple",
        NotificationType::StatusUpdate => "status-update",
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
