//! A remediation's effectiveness score, from the Effectiveness Monitor's assessment events.
//!
//! The monitor writes one event per assessed component (`effectiveness.health.assessed`,
//! `.alert.assessed`, `.metrics.assessed`, each with `assessed`, `score` in 0..1 and
//! `details`), the spec hashes (`effectiveness.hash.computed`) and the end of the assessment
//! (`effectiveness.assessment.completed` with its `reason`). The score is the platform's
//! formula (DD-017 v2.1): the weighted mean of the assessed components' scores, weights health
//! 0.40, alert 0.35, metrics 0.25, over the weights of the components assessed. Events are read
//! in log order; a later event of a component replaces an earlier one. A `SpecDrift` completion
//! (the target's spec changed during the assessment) forces the score to 0 and stays. As the
//! public implementation does, which the document follows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The weights of the components (DD-017 v2.1).
const HEALTH: f64 = 0.40;
const ALERT: f64 = 0.35;
const METRICS: f64 = 0.25;

/// The completion reason that makes the score unreliable.
const SPEC_DRIFT: &str = "SpecDrift";

/// The answer of `GET /api/v1/effectiveness/{correlation_id}` (the platform's
/// `EffectivenessScoreResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EffectivenessScore {
    pub correlation_id: String,
    /// The weighted score in 0..1; null while no component has a score.
    pub score: Option<f64>,
    pub components: Components,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_comparison: Option<HashComparison>,
    /// `no_data`, `in_progress` (components assessed, no completion yet), or the completion's
    /// reason (`Full`, `Partial`, `SpecDrift`, `Expired`, `NoExecution`, `MetricsTimedOut`).
    pub assessment_status: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub computed_at: DateTime<Utc>,
}

/// One component's assessment.
#[derive(Debug, Clone, Default, PartialEq)]
struct Component {
    assessed: bool,
    score: Option<f64>,
    details: Option<String>,
}

/// The components' assessments, as the platform names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Components {
    pub health_assessed: bool,
    pub health_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_details: Option<String>,
    pub alert_assessed: bool,
    pub alert_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_details: Option<String>,
    pub metrics_assessed: bool,
    pub metrics_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_details: Option<String>,
}

/// The spec hashes before and after the remediation (a signal beside the score, not in it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct HashComparison {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_remediation_spec_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_remediation_spec_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_match: Option<bool>,
}

/// The score from the remediation's effectiveness events (`event_type` and `event_data`, in
/// log order).
pub fn score<'a>(
    correlation_id: &str,
    events: impl IntoIterator<Item = (&'a str, &'a Map<String, Value>)>,
    now: DateTime<Utc>,
) -> EffectivenessScore {
    let (mut health, mut alert, mut metrics) = Default::default();
    let mut hashes: Option<HashComparison> = None;
    let mut status = "no_data".to_string();
    for (event_type, data) in events {
        match event_type {
            "effectiveness.health.assessed" => apply(&mut health, data),
            "effectiveness.alert.assessed" => apply(&mut alert, data),
            "effectiveness.metrics.assessed" => apply(&mut metrics, data),
            "effectiveness.hash.computed" => {
                let h = HashComparison {
                    pre_remediation_spec_hash: text(data, "pre_remediation_spec_hash"),
                    post_remediation_spec_hash: text(data, "post_remediation_spec_hash"),
                    hash_match: data.get("hash_match").and_then(Value::as_bool),
                };
                if h.pre_remediation_spec_hash.is_some() || h.post_remediation_spec_hash.is_some() {
                    hashes = Some(h);
                }
            }
            "effectiveness.assessment.completed" => {
                if let Some(reason) = text(data, "reason") {
                    if status != SPEC_DRIFT {
                        status = reason;
                    }
                }
            }
            _ => {}
        }
    }
    let score = if status == SPEC_DRIFT {
        Some(0.0)
    } else {
        weighted(&[(&health, HEALTH), (&alert, ALERT), (&metrics, METRICS)])
    };
    if status == "no_data" && (health.assessed || alert.assessed || metrics.assessed) {
        status = "in_progress".to_string();
    }
    EffectivenessScore {
        correlation_id: correlation_id.to_string(),
        score,
        components: Components {
            health_assessed: health.assessed,
            health_score: health.score,
            health_details: health.details,
            alert_assessed: alert.assessed,
            alert_score: alert.score,
            alert_details: alert.details,
            metrics_assessed: metrics.assessed,
            metrics_score: metrics.score,
            metrics_details: metrics.details,
        },
        hash_comparison: hashes,
        assessment_status: status,
        computed_at: audit_model::timestamp::truncate(now),
    }
}

/// A component's event over what was known of it: each member it carries replaces the earlier.
fn apply(component: &mut Component, data: &Map<String, Value>) {
    if data.get("assessed").and_then(Value::as_bool) == Some(true) {
        component.assessed = true;
    }
    if let Some(score) = data.get("score").and_then(Value::as_f64) {
        component.score = Some(score);
    }
    if let Some(details) = text(data, "details") {
        component.details = Some(details);
    }
}

fn text(data: &Map<String, Value>, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The weighted mean of the assessed components that have a score; `None` when none has.
fn weighted(components: &[(&Component, f64)]) -> Option<f64> {
    let (sum, weight) = components
        .iter()
        .filter(|(c, _)| c.assessed)
        .filter_map(|(c, w)| c.score.map(|s| (s * w, *w)))
        .fold((0.0, 0.0), |(sum, weight), (s, w)| (sum + s, weight + w));
    (weight > 0.0).then(|| sum / weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(list: &[(&'static str, Value)]) -> Vec<(&'static str, Map<String, Value>)> {
        list.iter()
            .map(|(t, v)| (*t, v.as_object().unwrap().clone()))
            .collect()
    }

    fn run(list: &[(&'static str, Value)]) -> EffectivenessScore {
        let e = events(list);
        score("rr-1", e.iter().map(|(t, d)| (*t, d)), Utc::now())
    }

    #[test]
    fn the_score_is_the_weighted_mean_of_the_assessed_components() {
        let s = run(&[
            (
                "effectiveness.health.assessed",
                json!({"assessed": true, "score": 1.0, "details": "3/3 pods ready"}),
            ),
            (
                "effectiveness.alert.assessed",
                json!({"assessed": true, "score": 0.8}),
            ),
            (
                "effectiveness.metrics.assessed",
                json!({"assessed": true, "score": 0.5}),
            ),
            (
                "effectiveness.assessment.completed",
                json!({"reason": "Full"}),
            ),
        ]);
        let want = (1.0 * 0.40 + 0.8 * 0.35 + 0.5 * 0.25) / 1.0;
        assert!((s.score.unwrap() - want).abs() < 1e-12, "{s:?}");
        assert_eq!(s.assessment_status, "Full");
        assert_eq!(
            s.components.health_details.as_deref(),
            Some("3/3 pods ready")
        );
    }

    #[test]
    fn only_the_assessed_components_weigh() {
        // Health and metrics only: (0.9 * 0.40 + 0.3 * 0.25) / 0.65.
        let s = run(&[
            (
                "effectiveness.health.assessed",
                json!({"assessed": true, "score": 0.9}),
            ),
            (
                "effectiveness.alert.assessed",
                json!({"assessed": false, "score": 0.0}),
            ),
            (
                "effectiveness.metrics.assessed",
                json!({"assessed": true, "score": 0.3}),
            ),
        ]);
        let want = (0.9 * 0.40 + 0.3 * 0.25) / 0.65;
        assert!((s.score.unwrap() - want).abs() < 1e-12, "{s:?}");
        assert_eq!(s.assessment_status, "in_progress");
        assert!(!s.components.alert_assessed);
    }

    #[test]
    fn spec_drift_forces_zero_and_stays() {
        let s = run(&[
            (
                "effectiveness.health.assessed",
                json!({"assessed": true, "score": 1.0}),
            ),
            (
                "effectiveness.assessment.completed",
                json!({"reason": "SpecDrift"}),
            ),
            (
                "effectiveness.assessment.completed",
                json!({"reason": "Full"}),
            ),
            (
                "effectiveness.hash.computed",
                json!({"pre_remediation_spec_hash": "sha256:a", "post_remediation_spec_hash": "sha256:b", "hash_match": false}),
            ),
        ]);
        assert_eq!(
            (s.score, s.assessment_status.as_str()),
            (Some(0.0), "SpecDrift")
        );
        assert_eq!(s.hash_comparison.unwrap().hash_match, Some(false));
    }

    #[test]
    fn nothing_assessed_is_no_data_without_a_score() {
        let s = run(&[(
            "effectiveness.assessment.scheduled",
            json!({"component": "scheduled"}),
        )]);
        assert_eq!((s.score, s.assessment_status.as_str()), (None, "no_data"));
        let text = serde_json::to_value(&s).unwrap();
        assert_eq!(text["score"], Value::Null, "the score is there, null");
        assert!(text.get("hash_comparison").is_none());
    }
}
