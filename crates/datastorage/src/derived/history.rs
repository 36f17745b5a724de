//! A target resource's remediation history, for the platform's AI agent (DD-KA-016).
//!
//! The Remediation Orchestrator writes `remediation.workflow_created` for each remediation with
//! its target (`target_resource`, `namespace/Kind/name`) and the target's spec hash before it
//! (`pre_remediation_spec_hash`); the Effectiveness Monitor writes the assessment of the same
//! remediation (same correlation) with the hash after it. Given the target's current spec hash,
//! each remediation of the target whose hash before or after is the current one becomes an entry
//! in one of two tiers: the recent window (detailed: health checks, metric deltas) or the long
//! one before it (a summary). An entry whose hash before is the current one means the target
//! is back where a remediation started: a regression. As the document and the public
//! implementation define it.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::derived::effectiveness;

/// A `remediation.workflow_created` event.
#[derive(Debug, Clone, Copy)]
pub struct Remediation<'a> {
    pub correlation_id: &'a str,
    pub at: DateTime<Utc>,
    pub data: &'a Map<String, Value>,
}

/// The effectiveness events of one remediation (`event_type`, `event_data`), in log order.
pub type Assessment<'a> = [(&'a str, &'a Map<String, Value>)];

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

/// The hash after a remediation, from its assessment.
pub fn post_hash(correlation_id: &str, assessment: &Assessment<'_>) -> Option<String> {
    effectiveness::score(correlation_id, assessment.iter().copied(), Utc::now())
        .hash_comparison
        .and_then(|h| h.post_remediation_spec_hash)
}

/// Whether the remediation belongs in the history of a target whose spec hash is `current`.
pub fn relevant(r: &Remediation<'_>, assessment: &Assessment<'_>, current: &str) -> bool {
    text(r.data, "pre_remediation_spec_hash") == Some(current)
        || post_hash(r.correlation_id, assessment).as_deref() == Some(current)
}

/// The three-way comparison: the current hash is the one before (a regression), the one after,
/// or neither. As the public implementation does, a remediation with no hash after yet, whose
/// hash before is not the current one, counts as `postRemediation`.
fn hash_match(current: &str, pre: Option<&str>, post: Option<&str>) -> &'static str {
    if pre == Some(current) {
        "preRemediation"
    } else if post == Some(current) || post.is_none() {
        "postRemediation"
    } else {
        "none"
    }
}

/// What both tiers' entries hold.
fn common(
    r: &Remediation<'_>,
    assessment: &Assessment<'_>,
    current: &str,
    detailed: bool,
) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("remediationUID".into(), json!(r.correlation_id));
    e.insert(
        "completedAt".into(),
        json!(audit_model::timestamp::format(&r.at)),
    );
    let mut keys = vec![
        ("signal_type", "signalType"),
        ("action_type", "actionType"),
        ("outcome", "outcome"),
    ];
    if detailed {
        keys.push(("signal_fingerprint", "signalFingerprint"));
        keys.push(("pre_remediation_spec_hash", "preRemediationSpecHash"));
    }
    for (from, to) in keys {
        if let Some(v) = text(r.data, from) {
            e.insert(to.into(), json!(v));
        }
    }
    let pre = text(r.data, "pre_remediation_spec_hash");
    let mut post = None;
    if !assessment.is_empty() {
        let score = effectiveness::score(r.correlation_id, assessment.iter().copied(), Utc::now());
        if let Some(s) = score.score {
            e.insert("effectivenessScore".into(), json!(s));
        }
        let resolved = assessment
            .iter()
            .find(|(t, _)| *t == "effectiveness.alert.assessed")
            .and_then(|(_, d)| d.get("alert_resolution")?.get("alert_resolved")?.as_bool());
        if let Some(resolved) = resolved {
            e.insert("signalResolved".into(), json!(resolved));
        }
        if !["no_data", "in_progress"].contains(&score.assessment_status.as_str()) {
            e.insert("assessmentReason".into(), json!(score.assessment_status));
        }
        post = score
            .hash_comparison
            .and_then(|h| h.post_remediation_spec_hash);
        if detailed {
            if let Some(p) = &post {
                e.insert("postRemediationSpecHash".into(), json!(p));
            }
        }
    }
    e.insert(
        "hashMatch".into(),
        json!(hash_match(current, pre, post.as_deref())),
    );
    e
}

/// A recent remediation in detail (the platform's `RemediationHistoryEntry`).
pub fn entry(r: &Remediation<'_>, assessment: &Assessment<'_>, current: &str) -> Value {
    let mut e = common(r, assessment, current, true);
    for (event_type, data) in assessment {
        match *event_type {
            "effectiveness.health.assessed" => {
                if let Some(Value::Object(hc)) = data.get("health_checks") {
                    e.insert(
                        "healthChecks".into(),
                        Value::Object(camel_members(hc, HEALTH_CHECKS)),
                    );
                }
            }
            "effectiveness.metrics.assessed" => {
                if let Some(Value::Object(md)) = data.get("metric_deltas") {
                    e.insert(
                        "metricDeltas".into(),
                        Value::Object(camel_members(md, METRIC_DELTAS)),
                    );
                }
            }
            _ => {}
        }
    }
    e.insert("sideEffects".into(), json!([]));
    Value::Object(e)
}

/// An older remediation in summary (the platform's `RemediationHistorySummary`).
pub fn summary(r: &Remediation<'_>, assessment: &Assessment<'_>, current: &str) -> Value {
    Value::Object(common(r, assessment, current, false))
}

/// The health checks the platform names, and whether each is a count (else a flag).
const HEALTH_CHECKS: &[(&str, bool)] = &[
    ("pod_running", false),
    ("readiness_pass", false),
    ("restart_delta", true),
    ("crash_loops", false),
    ("oom_killed", false),
    ("pending_count", true),
];

/// The metric deltas the platform names (all numbers).
const METRIC_DELTAS: &[(&str, bool)] = &[
    ("cpu_before", true),
    ("cpu_after", true),
    ("memory_before", true),
    ("memory_after", true),
    ("latency_p95_before_ms", true),
    ("latency_p95_after_ms", true),
    ("error_rate_before", true),
    ("error_rate_after", true),
    ("throughput_before_rps", true),
    ("throughput_after_rps", true),
    ("node_not_ready_before", true),
    ("node_not_ready_after", true),
    ("node_memory_pressure_before", true),
    ("node_memory_pressure_after", true),
    ("node_disk_pressure_before", true),
    ("node_disk_pressure_after", true),
    ("pv_phase_failed_before", true),
    ("pv_phase_failed_after", true),
    ("pv_phase_pending_before", true),
    ("pv_phase_pending_after", true),
    ("pv_usage_ratio_before", true),
    ("pv_usage_ratio_after", true),
];

/// The named members of `source` (numbers or flags as named) under their camelCase names.
fn camel_members(source: &Map<String, Value>, names: &[(&str, bool)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, number) in names {
        let value = source.get(*name).filter(|v| {
            if *number {
                v.is_number()
            } else {
                v.is_boolean()
            }
        });
        if let Some(v) = value {
            let v = match (
                name.ends_with("_delta") || name.ends_with("_count"),
                v.as_f64(),
            ) {
                // The counts are integers in the platform's schema.
                (true, Some(f)) => json!(f as i64),
                _ => v.clone(),
            };
            out.insert(camel(name), v);
        }
    }
    out
}

/// `latency_p95_before_ms` → `latencyP95BeforeMs`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    for (i, part) in snake.split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
            _ => out.push_str(part),
        }
    }
    out
}

/// The answer (the platform's `RemediationHistoryContext`).
pub fn context(
    target: &str,
    current: &str,
    windows: (String, String),
    tier1: Vec<Value>,
    tier2: Vec<Value>,
) -> Value {
    let regression = tier1
        .iter()
        .chain(&tier2)
        .any(|e| e["hashMatch"] == "preRemediation");
    json!({
        "targetResource": target,
        "currentSpecHash": current,
        "regressionDetected": regression,
        "tier1": {"window": windows.0, "chain": tier1},
        "tier2": {"window": windows.1, "chain": tier2},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_become_the_platforms() {
        assert_eq!(camel("latency_p95_before_ms"), "latencyP95BeforeMs");
        assert_eq!(camel("pod_running"), "podRunning");
        assert_eq!(camel("cpu"), "cpu");
    }

    #[test]
    fn an_entry_holds_the_assessment_and_the_hash_comparison() {
        let at = audit_model::timestamp::parse("2026-12-01T10:00:00Z").unwrap();
        let ro = obj(
            json!({"signal_type": "alert", "signal_fingerprint": "fp", "action_type": "RestartPod",
            "outcome": "Remediated", "pre_remediation_spec_hash": "sha256:old"}),
        );
        let health = obj(
            json!({"assessed": true, "score": 1.0, "health_checks": {"pod_running": true, "restart_delta": 2.0, "unknown": 1}}),
        );
        let alert = obj(
            json!({"assessed": true, "score": 0.5, "alert_resolution": {"alert_resolved": true}}),
        );
        let hash = obj(
            json!({"pre_remediation_spec_hash": "sha256:old", "post_remediation_spec_hash": "sha256:new"}),
        );
        let done = obj(json!({"reason": "Full"}));
        let assessment = [
            ("effectiveness.health.assessed", &health),
            ("effectiveness.alert.assessed", &alert),
            ("effectiveness.hash.computed", &hash),
            ("effectiveness.assessment.completed", &done),
        ];
        let r = Remediation {
            correlation_id: "rr-1",
            at,
            data: &ro,
        };
        let e = entry(&r, &assessment, "sha256:new");
        assert_eq!(e["hashMatch"], "postRemediation");
        assert_eq!(e["postRemediationSpecHash"], "sha256:new");
        assert_eq!(
            e["healthChecks"],
            json!({"podRunning": true, "restartDelta": 2})
        );
        assert_eq!(e["signalResolved"], true);
        assert_eq!(e["assessmentReason"], "Full");
        let want = (1.0 * 0.40 + 0.5 * 0.35) / 0.75;
        assert!((e["effectivenessScore"].as_f64().unwrap() - want).abs() < 1e-12);
        // Back at the hash before: a regression, in either tier.
        let back = summary(&r, &assessment, "sha256:old");
        assert_eq!(back["hashMatch"], "preRemediation");
        assert!(back.get("healthChecks").is_none() && back.get("preRemediationSpecHash").is_none());
        let ctx = context(
            "ns/Deployment/app",
            "sha256:old",
            ("24h0m0s".into(), "2160h0m0s".into()),
            vec![],
            vec![back],
        );
        assert_eq!(ctx["regressionDetected"], true);
        assert!(relevant(&r, &assessment, "sha256:new") && relevant(&r, &assessment, "sha256:old"));
        assert!(!relevant(&r, &assessment, "sha256:other"));
    }
}
