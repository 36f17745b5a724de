//! Console: a structured log line and one JSON line on standard output.

use async_trait::async_trait;

use super::{Channel, Delivered, DeliveryError, Message};

pub(crate) struct Console;

#[async_trait]
impl Channel for Console {
    async fn deliver(
        &self,
        message: &Message,
        _recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        tracing::info!(
            notification = %message.name,
            namespace = %message.namespace,
            priority = super::priority_name(message.priority),
            kind = super::type_name(message.kind),
            subject = %message.subject,
            body = %message.body,
            "notification"
        );
        let line = serde_json::to_string(message)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the message: {e}")))?;
        println!("{line}");
        Ok(Delivered {
            provider_response: "written to stdout".to_string(),
        })
    }
}
