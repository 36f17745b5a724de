//! The `NotificationRequest` custom resource (`notification.kubernaut.ai/v1alpha1`).
//!
//! The Rust types are the source of truth: `notification-controller crd` prints the CRD generated
//! from them, and the copy committed under `deploy/crds/` is checked against it by a test. The
//! schema carries the validation the API server enforces (enums, lengths, ranges, patterns, the
//! immutable spec), so the controller only ever sees well-formed specs from a real cluster; it
//! still refuses to deliver to an address that fails its own channel's checks.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a notification is for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationType {
    Escalation,
    Simple,
    StatusUpdate,
}

/// How urgent the notification is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

/// A delivery channel.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Slack,
    Teams,
    Sms,
    Webhook,
    Console,
    File,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 7] = [
        ChannelKind::Email,
        ChannelKind::Slack,
        ChannelKind::Teams,
        ChannelKind::Sms,
        ChannelKind::Webhook,
        ChannelKind::Console,
        ChannelKind::File,
    ];

    /// The lower-case name used in the CRD, metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Sms => "sms",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Console => "console",
            ChannelKind::File => "file",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one person or team is reached; each channel uses the field it knows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: Option<String>,
    /// `#channel` or `@user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 80), regex(pattern = r"^[#@][^\s]+$"))]
    pub slack: Option<String>,
    /// A Teams channel or user name, shown in the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub teams: Option<String>,
    /// E.164 phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    pub phone: Option<String>,
    /// A webhook endpoint for this recipient (the configured default is used when absent).
    #[serde(
        default,
        rename = "webhookURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub webhook_url: Option<String>,
}

/// A link shown with the notification (runbook, dashboard, approval page).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ActionLink {
    #[schemars(length(min = 1, max = 100))]
    pub service: String,
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    #[schemars(length(min = 1, max = 200))]
    pub label: String,
}

/// How failed deliveries are retried, per channel and recipient.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    #[schemars(range(min = 1, max = 300))]
    pub initial_backoff_seconds: u32,
    #[serde(default = "default_multiplier")]
    #[schemars(range(min = 1, max = 10))]
    pub backoff_multiplier: u32,
    /// The longest wait between two attempts (default 480). At least 60, as the platform's CRD
    /// has it: a short `initialBackoffSeconds` still retries quickly at first, but never waits
    /// less than the backoff computed, and the cap cannot be set below a minute.
    #[serde(default = "default_max_backoff")]
    #[schemars(range(min = 60, max = 3600))]
    pub max_backoff_seconds: u32,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> u32 {
    30
}
fn default_multiplier() -> u32 {
    2
}
fn default_max_backoff() -> u32 {
    480
}
fn default_retention_days() -> u32 {
    7
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff_seconds: default_initial_backoff(),
            backoff_multiplier: default_multiplier(),
            max_backoff_seconds: default_max_backoff(),
        }
    }
}

/// A request to notify people about a remediation. Immutable once created.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "notification.kubernaut.ai",
    version = "v1alpha1",
    kind = "NotificationRequest",
    namespaced,
    status = "NotificationRequestStatus",
    derive = "PartialEq",
    shortname = "notif",
    shortname = "notifs",
    doc = "A notification to deliver on one or more channels, with its delivery record",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Priority", type_ = "string", json_path = ".spec.priority"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.totalAttempts"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequestSpec {
    #[serde(rename = "type")]
    pub kind: NotificationType,
    #[serde(default)]
    pub priority: Priority,
    #[schemars(length(min = 1))]
    pub recipients: Vec<Recipient>,
    #[schemars(length(min = 1, max = 500))]
    pub subject: String,
    #[schemars(length(min = 1))]
    pub body: String,
    #[schemars(length(min = 1))]
    pub channels: Vec<ChannelKind>,
    /// Free-form context; `remediationRequestName` links the notification to its remediation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_links: Vec<ActionLink>,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 90))]
    pub retention_days: u32,
}

impl NotificationRequestSpec {
    /// The remediation this notification belongs to, if the creator said so.
    pub fn remediation_request_name(&self) -> Option<&str> {
        self.metadata
            .get("remediationRequestName")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Where a notification is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    Pending,
    Sending,
    Retrying,
    Sent,
    PartiallySent,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Sending,
        Phase::Retrying,
        Phase::Sent,
        Phase::PartiallySent,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Sending => "Sending",
            Phase::Retrying => "Retrying",
            Phase::Sent => "Sent",
            Phase::PartiallySent => "PartiallySent",
            Phase::Failed => "Failed",
        }
    }

    /// Sent, PartiallySent and Failed end a notification's life.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Sent | Phase::PartiallySent | Phase::Failed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one delivery attempt ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    Success,
    Failed,
    Timeout,
    /// The address or request was refused as invalid; never retried.
    Invalid,
}

/// One delivery attempt to one recipient on one channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub channel: ChannelKind,
    /// The address the attempt went to (email, `#channel`, phone, `console`, `file`; for a
    /// webhook the URL's origin, `scheme://host[:port]`, never its path, query or userinfo).
    pub recipient: String,
    /// 1 for the first attempt to this channel and recipient.
    pub attempt: u32,
    pub timestamp: DateTime<Utc>,
    pub status: AttemptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the provider answered, such as `200 OK` or `250 2.0.0 queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_response: Option<String>,
    pub duration_seconds: f64,
}

/// A condition in the Kubernetes convention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the controller has done with a notification.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery_attempts: Vec<DeliveryAttempt>,
    #[serde(default)]
    pub total_attempts: u32,
    #[serde(default)]
    pub successful_deliveries: u32,
    #[serde(default)]
    pub failed_deliveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The CRD as YAML, as `notification-controller crd` prints it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&NotificationRequest::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec: NotificationRequestSpec = serde_json::from_value(json!({
            "type": "simple",
            "recipients": [{"email": "oncall@example.com"}],
            "subject": "Disk full",
            "body": "node-1",
            "channels": ["email"],
        }))
        .unwrap();
        assert_eq!(spec.priority, Priority::Medium);
        assert_eq!(spec.retry_policy, RetryPolicy::default());
        assert_eq!(spec.retention_days, 7);
        assert_eq!(spec.remediation_request_name(), None);
    }

    #[test]
    fn the_schema_carries_the_rules_the_api_server_enforces() {
        let crd = serde_json::to_value(NotificationRequest::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["x-kubernetes-validations"][0]["rule"],
            "self == oldSelf"
        );
        assert_eq!(spec["properties"]["subject"]["maxLength"], 500);
        assert_eq!(spec["properties"]["recipients"]["minItems"], 1);
        let retry = &spec["properties"]["retryPolicy"]["properties"];
        assert_eq!(retry["maxAttempts"]["maximum"].as_f64(), Some(10.0));
        assert_eq!(retry["maxBackoffSeconds"]["minimum"].as_f64(), Some(60.0));
        assert_eq!(
            crd["spec"]["names"]["shortNames"],
            json!(["notif", "notifs"])
        );
        assert_eq!(version["subresources"]["status"], json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Type", "Priority", "Phase", "Attempts", "Age"]);
    }
}
