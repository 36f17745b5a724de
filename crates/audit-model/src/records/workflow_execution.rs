//! `workflow_execution_audit`: a remediation workflow's execution.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, ObjectReader};

pub const OUTCOMES: [&str; 5] = [
    "success",
    "failure",
    "rollback",
    "partial_success",
    "timeout",
];
pub const STATUSES: [&str; 5] = ["running", "completed", "failed", "paused", "timeout"];

/// A workflow execution record (`POST /api/v1/audit/executions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowExecutionAudit {
    pub remediation_id: String,
    pub workflow_execution_id: String,
    pub workflow_name: String,
    pub workflow_version: String,
    pub total_steps: i64,
    pub steps_completed: i64,
    pub steps_failed: i64,
    /// One of success, failure, rollback, partial_success, timeout.
    pub outcome: String,
    /// One of running, completed, failed, paused, timeout.
    pub status: String,
    /// When the record was first received, if it carries no `completed_at` (set by the server).
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: DateTime<Utc>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effectiveness_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollbacks_performed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub step_executions: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub adaptive_adjustments: Option<Vec<Value>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl SeedRecord for WorkflowExecutionAudit {
    const KIND: RecordKind = RecordKind {
        view: "workflow_execution_audit",
        path: "executions",
        category: "workflowexecution",
        noun: "execution",
        resource_type: "WorkflowExecution",
        actor_id: "workflowexecution-controller",
        id_field: "workflow_execution_id",
        time_field: "completed_at",
        filters: &["remediation_id", "status", "outcome", "workflow_name"],
    };

    fn parse(value: Value, rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let workflow_execution_id = r.string("workflow_execution_id", MAX_NAME);
        let workflow_name = r.string("workflow_name", MAX_NAME);
        let workflow_version = r.string("workflow_version", MAX_NAME);
        let total_steps = r.int("total_steps", 0, i64::MAX);
        let steps_completed = r.int("steps_completed", 0, i64::MAX);
        let steps_failed = r.int("steps_failed", 0, i64::MAX);
        let outcome = r.enumeration("outcome", &OUTCOMES, MAX_ENUM);
        let status = r.enumeration("status", &STATUSES, MAX_ENUM);
        let recorded_at = r.opt_timestamp("recorded_at");
        let effectiveness_score = r.opt_number("effectiveness_score", 0.0, 1.0);
        let total_duration_ms = r.opt_int("total_duration_ms", 0, i64::MAX);
        let rollbacks_performed = r.opt_int("rollbacks_performed", 0, i64::MAX);
        let step_executions = r.opt_array("step_executions");
        let adaptive_adjustments = r.opt_array("adaptive_adjustments");
        let completed_at = r.opt_timestamp("completed_at");
        let error_message = r.opt_string("error_message", MAX_TEXT);
        finish(r, || WorkflowExecutionAudit {
            remediation_id: req(remediation_id),
            workflow_execution_id: req(workflow_execution_id),
            workflow_name: req(workflow_name),
            workflow_version: req(workflow_version),
            total_steps: req(total_steps),
            steps_completed: req(steps_completed),
            steps_failed: req(steps_failed),
            outcome: req(outcome),
            status: req(status),
            recorded_at: recorded_at
                .or(completed_at)
                .unwrap_or_else(|| crate::timestamp::truncate(rules.now)),
            effectiveness_score,
            total_duration_ms,
            rollbacks_performed,
            step_executions,
            adaptive_adjustments,
            completed_at,
            error_message,
        })
    }

    /// `recorded_at` is filled by the server when absent, so it is not part of the content.
    fn same_record(&self, stored: &serde_json::Map<String, Value>) -> bool {
        let Ok(Value::Object(mut mine)) = serde_json::to_value(self) else {
            return false;
        };
        let mut stored = stored.clone();
        mine.remove("recorded_at");
        stored.remove("recorded_at");
        mine == stored
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![
            ("workflow_execution_id", self.workflow_execution_id.clone()),
            ("status", self.status.clone()),
        ]
    }

    fn status(&self) -> &str {
        &self.status
    }

    fn outcome(&self) -> EventOutcome {
        match self.status.as_str() {
            "completed" => EventOutcome::Success,
            "failed" | "timeout" => EventOutcome::Failure,
            _ => EventOutcome::Pending,
        }
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.workflow_execution_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.completed_at.unwrap_or(self.recorded_at)
    }
}
