//! `orchestration_audit`: a remediation's overall phase.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, ObjectReader};

pub const PHASES: [&str; 7] = [
    "pending",
    "processing",
    "analyzing",
    "executing",
    "completed",
    "failed",
    "timeout",
];

/// A remediation orchestration record (`POST /api/v1/audit/orchestration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrchestrationAudit {
    pub remediation_id: String,
    pub remediation_name: String,
    /// One of pending, processing, analyzing, executing, completed, failed, timeout.
    pub overall_phase: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub start_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_fingerprint: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completion_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_processing_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_analysis_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_execution_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub service_crd_statuses: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl SeedRecord for OrchestrationAudit {
    const KIND: RecordKind = RecordKind {
        view: "orchestration_audit",
        path: "orchestration",
        category: "orchestration",
        noun: "remediation",
        resource_type: "RemediationRequest",
        actor_id: "remediationorchestrator-controller",
        id_field: "remediation_id",
        time_field: "start_time",
        filters: &["overall_phase", "remediation_name", "alert_fingerprint"],
    };

    fn parse(value: Value, _rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let remediation_name = r.string("remediation_name", MAX_NAME);
        let overall_phase = r.enumeration("overall_phase", &PHASES, MAX_ENUM);
        let start = r.timestamp("start_time");
        let start_time = start;
        let alert_fingerprint = r.opt_string("alert_fingerprint", MAX_NAME);
        let completion_time = r.opt_timestamp("completion_time");
        let remediation_processing_name = r.opt_string("remediation_processing_name", MAX_NAME);
        let ai_analysis_name = r.opt_string("ai_analysis_name", MAX_NAME);
        let workflow_execution_name = r.opt_string("workflow_execution_name", MAX_NAME);
        let service_crd_statuses = r.opt_object("service_crd_statuses");
        let timeout_phase = r.opt_string("timeout_phase", MAX_ENUM);
        let failure_phase = r.opt_string("failure_phase", MAX_ENUM);
        let failure_reason = r.opt_string("failure_reason", MAX_TEXT);
        finish(r, || OrchestrationAudit {
            remediation_id: req(remediation_id),
            remediation_name: req(remediation_name),
            overall_phase: req(overall_phase),
            start_time: req(start_time),
            alert_fingerprint,
            completion_time,
            remediation_processing_name,
            ai_analysis_name,
            workflow_execution_name,
            service_crd_statuses,
            timeout_phase,
            failure_phase,
            failure_reason,
        })
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![
            ("remediation_id", self.remediation_id.clone()),
            ("overall_phase", self.overall_phase.clone()),
        ]
    }

    fn status(&self) -> &str {
        &self.overall_phase
    }

    fn outcome(&self) -> EventOutcome {
        match self.overall_phase.as_str() {
            "completed" => EventOutcome::Success,
            "failed" | "timeout" => EventOutcome::Failure,
            _ => EventOutcome::Pending,
        }
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.remediation_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.start_time
    }
}
