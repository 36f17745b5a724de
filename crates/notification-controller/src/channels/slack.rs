//! Slack incoming webhook with a Block Kit message: a header with the priority's emoji, the body
//! as a section, action links as buttons, and priority and type as context.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    priority_emoji, priority_name, truncate, type_name, Channel, Delivered, DeliveryError, Message,
};
use crate::decide::DEFAULT_DESTINATION;

pub(crate) struct Slack {
    http: reqwest::Client,
    url: String,
}

impl Slack {
    pub(crate) fn new(http: reqwest::Client, url: String) -> Self {
        Slack { http, url }
    }
}

/// The Block Kit payload for `message` to `recipient` (`#channel`, `@user` or the webhook's own
/// channel).
pub fn payload(message: &Message, recipient: &str) -> Value {
    let title = format!("{} {}", priority_emoji(message.priority), message.subject);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&message.body, 3000)}}),
    ];
    if !message.action_links.is_empty() {
        let buttons: Vec<Value> = message
            .action_links
            .iter()
            .take(25)
            .map(|l| json!({"type": "button", "text": {"type": "plain_text", "text": truncate(&l.label, 75)}, "url": l.url}))
            .collect();
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "*Priority:* {} | *Type:* {} | *Notification:* {}/{}",
            priority_name(message.priority),
            type_name(message.kind),
            message.namespace,
            message.name
        )}]}),
    );
    let mut body = json!({"text": title, "blocks": blocks});
    if recipient != DEFAULT_DESTINATION {
        body["channel"] = json!(recipient);
    }
    body
}

#[async_trait]
impl Channel for Slack {
    async fn deliver(
        &self,
        message: &Message,
        recipient: &str,
    ) -> Result<Delivered, DeliveryError> {
        if recipient != DEFAULT_DESTINATION
            && !(recipient.starts_with('#') || recipient.starts_with('@'))
        {
            return Err(DeliveryError::Permanent(format!(
                "invalid Slack recipient {recipient:?}: expected #channel or @user"
            )));
        }
        super::http::send(self.http.post(&self.url).json(&payload(message, recipient))).await
    }
}
