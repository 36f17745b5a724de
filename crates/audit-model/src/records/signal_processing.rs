//! `signal_processing_audit`: a signal's progress through enrichment and classification.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, ObjectReader};

pub const STATUSES: [&str; 5] = ["received", "enriched", "classified", "completed", "failed"];
pub const CRD_TYPES: [&str; 2] = ["AIAnalysis", "WorkflowExecution"];

/// A signal processing record (`POST /api/v1/audit/signal-processing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignalProcessingAudit {
    pub remediation_id: String,
    pub signal_id: String,
    pub alert_fingerprint: String,
    pub environment: String,
    pub severity: String,
    /// One of received, enriched, classified, completed, failed.
    pub status: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub processing_start_time: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub processing_end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_duration_ms: Option<i64>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment_quality: Option<f64>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context_data: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_crd_name: Option<String>,
    /// AIAnalysis or WorkflowExecution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_crd_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
}

impl SeedRecord for SignalProcessingAudit {
    const KIND: RecordKind = RecordKind {
        view: "signal_processing_audit",
        path: "signal-processing",
        category: "signalprocessing",
        noun: "signal",
        resource_type: "SignalProcessing",
        actor_id: "signalprocessing-controller",
        id_field: "signal_id",
        time_field: "processing_start_time",
        filters: &[
            "remediation_id",
            "status",
            "environment",
            "severity",
            "alert_fingerprint",
        ],
    };

    fn parse(value: Value, _rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let signal_id = r.string("signal_id", MAX_NAME);
        let alert_fingerprint = r.string("alert_fingerprint", MAX_NAME);
        let environment = r.string("environment", MAX_NAME);
        let severity = r.string("severity", MAX_ENUM);
        let status = r.enumeration("status", &STATUSES, MAX_ENUM);
        let start = r.timestamp("processing_start_time");
        let processing_start_time = start;
        let processing_end_time = r.opt_timestamp("processing_end_time");
        let processing_duration_ms = r.opt_int("processing_duration_ms", 0, i64::MAX);
        let enrichment_quality = r.opt_number("enrichment_quality", 0.0, 1.0);
        let classification_score = r.opt_number("classification_score", 0.0, 1.0);
        let context_data = r.opt_object("context_data");
        let created_crd_name = r.opt_string("created_crd_name", MAX_NAME);
        let created_crd_type = r.opt_enum("created_crd_type", &CRD_TYPES, MAX_ENUM);
        let error_message = r.opt_string("error_message", MAX_TEXT);
        let completed_at = r.opt_timestamp("completed_at");
        finish(r, || SignalProcessingAudit {
            remediation_id: req(remediation_id),
            signal_id: req(signal_id),
            alert_fingerprint: req(alert_fingerprint),
            environment: req(environment),
            severity: req(severity),
            status: req(status),
            processing_start_time: req(processing_start_time),
            processing_end_time,
            processing_duration_ms,
            enrichment_quality,
            classification_score,
            context_data,
            created_crd_name,
            created_crd_type,
            error_message,
            completed_at,
        })
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![
            ("signal_id", self.signal_id.clone()),
            ("status", self.status.clone()),
        ]
    }

    fn status(&self) -> &str {
        &self.status
    }

    fn outcome(&self) -> EventOutcome {
        match self.status.as_str() {
            "completed" => EventOutcome::Success,
            "failed" => EventOutcome::Failure,
            _ => EventOutcome::Pending,
        }
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.signal_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.processing_start_time
    }
}
