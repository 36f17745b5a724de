//! Microsoft Teams incoming webhook with an Adaptive Card.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{priority_emoji, priority_name, type_name, Channel, Delivered, DeliveryError, Message};
use crate::decide::DEFAULT_DESTINATION;

pub(crate) struct Teams {
    http: reqwest::Client,
    url: String,
}

impl Teams {
    pub(crate) fn new(http: reqwest::Client, url: String) -> Self {
        Teams { http, url }
    }
}

/// The webhook payload: a message with one Adaptive Card attachment.
pub fn payload(message: &Message, recipient: &str) -> Value {
    let mut facts = vec![
        json!({"title": "Priority", "value": priority_name(message.priority)}),
        json!({"title": "Type", "value": type_name(message.kind)}),
        json!({"title": "Notification", "value": format!("{}/{}", message.namespace, message.name)}),
    ];
    if recipient != DEFAULT_DESTINATION {
        facts.push(json!({"title": "To", "value": recipient}));
    }
    let actions: Vec<Value> = message
        .action_links
        .iter()
        .map(|l| json!({"type": "Action.OpenUrl", "title": l.label, "url": l.url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                     "text": format!("{} {}", priority_emoji(message.priority), message.subject)},
                    {"type": "TextBlock", "wrap": true, "text": message.body},
                    {"type": "FactSet", "facts": facts}
                ],
                "actions": actions
            }
        }]
    })
}

#[async_trait]
impl Channel for Teams {
    async fn deliver(
        &self,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        super::http::send(self.http.post(&self.url).json(&payload(message, recipient))).await
    }
}
