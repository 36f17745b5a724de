//! Email over SMTP (lettre): plain text, to the recipient's `email`, with STARTTLS and
//! credentials when configured. Permanent SMTP answers (5xx) are not retried; transient ones
//! (4xx) and connection failures are.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{priority_name, type_name, Channel, Delivered, DeliveryError, Message};

/// The SMTP relay and sender.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// Upgrade the connection with STARTTLS (required when set).
    pub starttls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `From` address, such as `Kubernaut <noreply@example.com>`.
    pub from: String,
}

pub(crate) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Email {
    pub(crate) fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Self, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("invalid SMTP from address {:?}: {e}", settings.from))?;
        let mut builder = if settings.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                .map_err(|e| format!("invalid SMTP host {:?}: {e}", settings.host))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        };
        builder = builder.port(settings.port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Email {
            transport: builder.build(),
            from,
        })
    }
}

/// The plain-text body: the message, its links, and where it came from.
pub fn text(message: &Message) -> String {
    let mut out = format!("{}\n", message.body);
    if !message.action_links.is_empty() {
        out.push('\n');
        for l in &message.action_links {
            out.push_str(&format!("{} ({}): {}\n", l.label, l.service, l.url));
        }
    }
    out.push_str(&format!(
        "\n--\nPriority: {}\nType: {}\nNotification: {}/{}\n",
        priority_name(message.priority),
        type_name(message.kind),
        message.namespace,
        message.name
    ));
    out
}

#[async_trait]
impl Channel for Email {
    async fn deliver(
        &self,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        let to: Mailbox = recipient.parse().map_err(|e| {
            DeliveryError::Permanent(format!("invalid email address {recipient:?}: {e}"))
        })?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "[{}] {}",
                priority_name(message.priority).to_uppercase(),
                message.subject
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(text(message))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))?;
        match self.transport.send(email).await {
            Ok(response) => Ok(Delivered {
                provider_response: format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )
                .trim()
                .to_string(),
            }),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
            Err(e) if e.is_timeout() => {
                Err(DeliveryError::Retryable(format!("SMTP timed out: {e}")))
            }
            Err(e) => Err(DeliveryError::Retryable(format!("SMTP: {e}"))),
        }
    }
}
