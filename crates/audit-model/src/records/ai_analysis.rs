//! `ai_analysis_audit`: an AI investigation's decision, optionally with an embedding for
//! similarity search.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, FieldRule, ObjectReader, Reason};

pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];
pub const COMPLETION: [&str; 4] = ["completed", "failed", "timeout", "pending_human_review"];

/// An AI analysis record (`POST /api/v1/audit/ai-decisions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AiAnalysisAudit {
    pub remediation_id: String,
    pub ai_analysis_id: String,
    pub alert_fingerprint: String,
    pub environment: String,
    /// One of critical, warning, info.
    pub severity: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub investigation_start_time: DateTime<Utc>,
    /// 0..1.
    pub confidence_score: f64,
    /// One of completed, failed, timeout, pending_human_review.
    pub completion_status: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub investigation_end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub investigation_duration_ms: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub analysis_start_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub analysis_end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_duration_ms: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub recommendation_start_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub recommendation_end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation_duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub investigation_report: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hallucination_detected: Option<bool>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effectiveness_probability: Option<f64>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub historical_success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub recommendations: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_recommendation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_crd_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_crd_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Finite numbers, exactly the configured dimension (default 1536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f64>>,
}

impl SeedRecord for AiAnalysisAudit {
    const KIND: RecordKind = RecordKind {
        view: "ai_analysis_audit",
        path: "ai-decisions",
        category: "analysis",
        noun: "decision",
        resource_type: "AIAnalysis",
        actor_id: "aianalysis-controller",
        id_field: "ai_analysis_id",
        time_field: "investigation_start_time",
        filters: &[
            "remediation_id",
            "completion_status",
            "environment",
            "severity",
            "alert_fingerprint",
        ],
    };

    fn parse(value: Value, rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let ai_analysis_id = r.string("ai_analysis_id", MAX_NAME);
        let alert_fingerprint = r.string("alert_fingerprint", MAX_NAME);
        let environment = r.string("environment", MAX_NAME);
        let severity = r.enumeration("severity", &SEVERITIES, MAX_ENUM);
        let start = r.timestamp("investigation_start_time");
        let investigation_start_time = start;
        let confidence_score = r.number("confidence_score", 0.0, 1.0);
        let completion_status = r.enumeration("completion_status", &COMPLETION, MAX_ENUM);
        let investigation_end_time = r.opt_timestamp("investigation_end_time");
        let investigation_duration_ms = r.opt_int("investigation_duration_ms", 0, i64::MAX);
        let analysis_start_time = r.opt_timestamp("analysis_start_time");
        let analysis_end_time = r.opt_timestamp("analysis_end_time");
        let analysis_duration_ms = r.opt_int("analysis_duration_ms", 0, i64::MAX);
        let recommendation_start_time = r.opt_timestamp("recommendation_start_time");
        let recommendation_end_time = r.opt_timestamp("recommendation_end_time");
        let recommendation_duration_ms = r.opt_int("recommendation_duration_ms", 0, i64::MAX);
        let root_cause_count = r.opt_int("root_cause_count", 0, i64::MAX);
        let investigation_report = r.opt_string("investigation_report", MAX_TEXT);
        let hallucination_detected = r.opt_bool("hallucination_detected");
        let effectiveness_probability = r.opt_number("effectiveness_probability", 0.0, 1.0);
        let historical_success_rate = r.opt_number("historical_success_rate", 0.0, 1.0);
        let recommendations = r.opt_array("recommendations");
        let top_recommendation = r.opt_string("top_recommendation", MAX_TEXT);
        let workflow_crd_name = r.opt_string("workflow_crd_name", MAX_NAME);
        let workflow_crd_namespace = r.opt_string("workflow_crd_namespace", MAX_NAME);
        let failure_reason = r.opt_string("failure_reason", MAX_TEXT);
        r.describe_field(
            "embedding",
            FieldRule::Numbers {
                len: Some(rules.embedding_dimension),
            },
        );
        let embedding = r
            .opt_array("embedding")
            .and_then(|values| embedding(values, rules.embedding_dimension, &mut r));
        finish(r, || AiAnalysisAudit {
            remediation_id: req(remediation_id),
            ai_analysis_id: req(ai_analysis_id),
            alert_fingerprint: req(alert_fingerprint),
            environment: req(environment),
            severity: req(severity),
            investigation_start_time: req(investigation_start_time),
            confidence_score: req(confidence_score),
            completion_status: req(completion_status),
            investigation_end_time,
            investigation_duration_ms,
            analysis_start_time,
            analysis_end_time,
            analysis_duration_ms,
            recommendation_start_time,
            recommendation_end_time,
            recommendation_duration_ms,
            root_cause_count,
            investigation_report,
            hallucination_detected,
            effectiveness_probability,
            historical_success_rate,
            recommendations,
            top_recommendation,
            workflow_crd_name,
            workflow_crd_namespace,
            failure_reason,
            embedding,
        })
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ai_analysis_id", self.ai_analysis_id.clone()),
            ("completion_status", self.completion_status.clone()),
        ]
    }

    fn status(&self) -> &str {
        &self.completion_status
    }

    fn outcome(&self) -> EventOutcome {
        match self.completion_status.as_str() {
            "completed" => EventOutcome::Success,
            "failed" | "timeout" => EventOutcome::Failure,
            _ => EventOutcome::Pending,
        }
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.ai_analysis_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.investigation_start_time
    }
}

/// Checks an embedding: finite numbers, exactly `dimension` of them.
pub fn embedding(values: Vec<Value>, dimension: usize, r: &mut ObjectReader) -> Option<Vec<f64>> {
    let numbers: Option<Vec<f64>> = values
        .iter()
        .map(|v| v.as_f64().filter(|f| f.is_finite()))
        .collect();
    let Some(numbers) = numbers else {
        r.errors_mut().add(
            "embedding",
            Reason::InvalidType,
            "must hold finite numbers only",
        );
        return None;
    };
    if numbers.len() != dimension {
        r.errors_mut().add(
            "embedding",
            Reason::InvalidValue,
            format!(
                "must have exactly {dimension} values, has {}",
                numbers.len()
            ),
        );
        return None;
    }
    Some(numbers)
}
