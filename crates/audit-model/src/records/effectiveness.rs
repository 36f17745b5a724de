//! `effectiveness_audit`: an assessment of how well a remediation action worked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{finish, req, RecordKind, RecordRules, SeedRecord, MAX_ENUM, MAX_NAME, MAX_TEXT};
use crate::event::EventOutcome;
use crate::fields::{FieldErrors, ObjectReader};

pub const TRENDS: [&str; 4] = ["improving", "declining", "stable", "insufficient_data"];
pub const DATA_QUALITY: [&str; 3] = ["sufficient", "limited", "insufficient"];

/// An effectiveness assessment record (`POST /api/v1/audit/effectiveness`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectivenessAudit {
    pub assessment_id: String,
    pub remediation_id: String,
    pub action_type: String,
    /// 0..1.
    pub traditional_score: f64,
    /// 0..1.
    pub confidence: f64,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub completed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub historical_success_rate: Option<f64>,
    /// -1..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environmental_impact: Option<f64>,
    /// One of improving, declining, stable, insufficient_data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend_direction: Option<String>,
    /// One of sufficient, limited, insufficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_age_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_detected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_effects_detected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_effects_description: Option<String>,
}

impl SeedRecord for EffectivenessAudit {
    const KIND: RecordKind = RecordKind {
        view: "effectiveness_audit",
        path: "effectiveness",
        category: "effectiveness",
        noun: "assessment",
        resource_type: "EffectivenessAssessment",
        actor_id: "effectivenessmonitor-service",
        id_field: "assessment_id",
        time_field: "completed_at",
        filters: &[
            "remediation_id",
            "action_type",
            "trend_direction",
            "data_quality",
        ],
    };

    fn parse(value: Value, _rules: &RecordRules) -> Result<Self, FieldErrors> {
        let mut r = ObjectReader::new(value)?;
        let assessment_id = r.string("assessment_id", MAX_NAME);
        let remediation_id = r.string("remediation_id", MAX_NAME);
        let action_type = r.string("action_type", MAX_NAME);
        let traditional_score = r.number("traditional_score", 0.0, 1.0);
        let confidence = r.number("confidence", 0.0, 1.0);
        let completed = r.timestamp("completed_at");
        let completed_at = completed;
        let recent_success_rate = r.opt_number("recent_success_rate", 0.0, 1.0);
        let historical_success_rate = r.opt_number("historical_success_rate", 0.0, 1.0);
        let environmental_impact = r.opt_number("environmental_impact", -1.0, 1.0);
        let trend_direction = r.opt_enum("trend_direction", &TRENDS, MAX_ENUM);
        let data_quality = r.opt_enum("data_quality", &DATA_QUALITY, MAX_ENUM);
        let sample_size = r.opt_int("sample_size", 0, i64::MAX);
        let data_age_days = r.opt_int("data_age_days", 0, i64::MAX);
        let pattern_detected = r.opt_bool("pattern_detected");
        let pattern_description = r.opt_string("pattern_description", MAX_TEXT);
        let temporal_pattern = r.opt_string("temporal_pattern", MAX_NAME);
        let side_effects_detected = r.opt_bool("side_effects_detected");
        let side_effects_description = r.opt_string("side_effects_description", MAX_TEXT);
        finish(r, || EffectivenessAudit {
            assessment_id: req(assessment_id),
            remediation_id: req(remediation_id),
            action_type: req(action_type),
            traditional_score: req(traditional_score),
            confidence: req(confidence),
            completed_at: req(completed_at),
            recent_success_rate,
            historical_success_rate,
            environmental_impact,
            trend_direction,
            data_quality,
            sample_size,
            data_age_days,
            pattern_detected,
            pattern_description,
            temporal_pattern,
            side_effects_detected,
            side_effects_description,
        })
    }

    fn natural_key(&self) -> Vec<(&'static str, String)> {
        vec![("assessment_id", self.assessment_id.clone())]
    }

    fn status(&self) -> &str {
        "assessed"
    }

    fn outcome(&self) -> EventOutcome {
        EventOutcome::Success
    }

    fn remediation_id(&self) -> &str {
        &self.remediation_id
    }

    fn subject_id(&self) -> &str {
        &self.assessment_id
    }

    fn main_time(&self) -> DateTime<Utc> {
        self.completed_at
    }
}
