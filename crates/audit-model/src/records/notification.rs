//! `notification_audit`: one delivery outcome of one notification to one recipient on one channel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, ObjectReader};

pub const CHANNELS: [&str; 8] = [
    "email",
    "slack",
    "teams",
    "sms",
    "webhook",
    "console",
    "pagerduty",
    "file",
];
pub const STATUSES: [&str; 5] = ["sent", "failed", "pending", "acknowledged", "escalated"];

/// A notification delivery record (`POST /api/v1/audit/notifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationAudit {
    pub remediation_id: String,
    pub notification_id: String,
    pub recipient: String,
    /// One of email, slack, teams, sms, webhook, console, pagerduty, file (stored lower-case).
    pub channel: String,
    pub message_summary: String,
    /// One of sent, failed, pending (the platform's: a delivery not yet confirmed),
    /// acknowledged, escalated (stored lower-case).
    pub status: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: DateTime<Utc>,
    /// 0..100, default 0.
    pub escalation_level: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl SeedRecord for NotificationAudit {
    const KIND: RecordKind = RecordKind {
        view: "notification_audit",
        path: "notifications",
        category: "notification",
        noun: "delivery",
        resource_type: "NotificationRequest",
        actor_id: "notification-controller",
        id_field: "notification_id",
        time_field: "sent_at",
        filters: &["remediation_id", "status", "channel"],
    };

    fn parse(value: Value, _rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let notification_id = r.string("notification_id", MAX_NAME);
        let recipient = r.string("recipient", MAX_NAME);
        let channel = r.enumeration("channel", &CHANNELS, MAX_ENUM);
        let message_summary = r.string("message_summary", MAX_TEXT);
        let status = r.enumeration("status", &STATUSES, MAX_ENUM);
        let sent_at = r.timestamp("sent_at");
        let escalation_level = r.opt_int("escalation_level", 0, 100);
        let delivery_status = r.opt_string("delivery_status", MAX_NAME);
        let error_message = r.opt_string("error_message", MAX_TEXT);
        finish(r, || NotificationAudit {
            remediation_id: req(remediation_id),
            notification_id: req(notification_id),
            recipient: req(recipient),
            channel: req(channel),
            message_summary: req(message_summary),
            status: req(status),
            sent_at: req(sent_at),
            escalation_level: escalation_level.unwrap_or(0),
            delivery_status,
            error_message,
        })
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![
            ("notification_id", self.notification_id.clone()),
            ("channel", self.channel.clone()),
            ("recipient", self.recipient.clone()),
            ("status", self.status.clone()),
            ("escalation_level", self.escalation_level.to_string()),
        ]
    }

    fn status(&self) -> &str {
        &self.status
    }

    fn outcome(&self) -> EventOutcome {
        match self.status.as_str() {
            "failed" => EventOutcome::Failure,
            "pending" | "escalated" => EventOutcome::Pending,
            _ => EventOutcome::Success,
        }
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.notification_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.sent_at
    }
}
