//! A RemediationRequest rebuilt from its audit trail, with how complete the rebuild is.
//!
//! As the platform's document (reconstructRemediationRequest) and its public implementation
//! define it: the remediation's events of eight types, in log order, each contributing what it
//! knows: the signal (`gateway.signal.received`, or `apifrontend.rr.created` for a request made
//! by hand; one of them is required), the timeouts (`orchestrator.lifecycle.created`), the AI
//! analysis's summary (`aianalysis.analysis.completed`), the selected workflow
//! (`workflowexecution.selection.completed`), the execution (`workflowexecution.execution.started`)
//! and the outcome (`orchestrator.lifecycle.completed` / `.failed`). A later event's value
//! replaces an earlier one; an event that cannot be read (a genesis event without its signal
//! name) is skipped. Completeness counts the two required fields (signal name and type) and
//! seven optional ones (labels, annotations, original payload, timeouts, provider data, selected
//! workflow, execution); below 50 % the rebuild is refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The event types a rebuild reads.
pub const EVENT_TYPES: [&str; 8] = [
    "gateway.signal.received",
    "apifrontend.rr.created",
    "aianalysis.analysis.completed",
    "workflowexecution.selection.completed",
    "workflowexecution.execution.started",
    "orchestrator.lifecycle.created",
    "orchestrator.lifecycle.completed",
    "orchestrator.lifecycle.failed",
];

/// Where a rebuilt request is placed, and how it is marked.
const NAMESPACE: &str = "kubernaut-system";
const NAME_PREFIX: &str = "rr-reconstructed-";

/// One event as the rebuild reads it.
#[derive(Debug, Clone, Copy)]
pub struct TrailEvent<'a> {
    pub event_type: &'a str,
    pub data: &'a Map<String, Value>,
    pub namespace: Option<&'a str>,
    pub cluster_id: Option<&'a str>,
}

/// Why there is no rebuild.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("no audit event of this correlation can be read for a rebuild")]
    NothingReadable,
    #[error("gateway.signal.received or apifrontend.rr.created is required for a rebuild")]
    NoGenesis,
    #[error("{0}")]
    BadValue(String),
    #[error("the rebuilt RemediationRequest is only {0}% complete")]
    Incomplete(u32),
}

/// The platform's `ValidationResult`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Validation {
    pub is_valid: bool,
    /// Percent of the fields present (0-100).
    pub completeness: u32,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The platform's `ReconstructionResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Reconstruction {
    /// The RemediationRequest as YAML, ready for `kubectl apply`.
    pub remediation_request_yaml: String,
    pub validation: Validation,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub reconstructed_at: DateTime<Utc>,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// What the events say, merged in order.
#[derive(Debug, Default)]
struct Fields {
    spec: Map<String, Value>,
    timeouts: Option<Map<String, Value>>,
    selected_workflow: Option<Value>,
    execution: Option<Value>,
    completion: Map<String, Value>,
    genesis: bool,
}

/// Rebuilds the request of `correlation_id` from its events (of [`EVENT_TYPES`], in log order).
pub fn rebuild(
    correlation_id: &str,
    events: &[TrailEvent<'_>],
    now: DateTime<Utc>,
) -> Result<Reconstruction, RebuildError> {
    let mut fields = Fields::default();
    let mut readable = 0;
    for event in events {
        if apply(&mut fields, event)? {
            readable += 1;
        }
    }
    if readable == 0 {
        return Err(RebuildError::NothingReadable);
    }
    if !fields.genesis {
        return Err(RebuildError::NoGenesis);
    }
    let validation = validate(&fields);
    if validation.completeness < 50 {
        return Err(RebuildError::Incomplete(validation.completeness));
    }
    let cluster_id = fields
        .spec
        .get("clusterID")
        .and_then(Value::as_str)
        .map(str::to_string);
    let request = document(correlation_id, fields, now);
    let remediation_request_yaml = serde_yaml_ng::to_string(&request).map_err(|e| {
        RebuildError::BadValue(format!("the request cannot be written as YAML: {e}"))
    })?;
    Ok(Reconstruction {
        remediation_request_yaml,
        validation,
        reconstructed_at: audit_model::timestamp::truncate(now),
        correlation_id: correlation_id.to_string(),
        cluster_id,
    })
}

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Applies one event; `Ok(false)` when it cannot be read (and is skipped).
fn apply(f: &mut Fields, e: &TrailEvent<'_>) -> Result<bool, RebuildError> {
    let d = e.data;
    match e.event_type {
        "gateway.signal.received" | "apifrontend.rr.created" => {
            let Some(name) = text(d, "signal_name") else {
                return Ok(false);
            };
            f.genesis = true;
            f.spec.insert("signalName".into(), json!(name));
            let signal_type = if e.event_type == "apifrontend.rr.created" {
                "alert"
            } else {
                match text(d, "signal_type") {
                    // The adapters' older names are all alerts now.
                    Some("prometheus-alert" | "kubernetes-event") | None => "alert",
                    Some(other) => other,
                }
            };
            f.spec.insert("signalType".into(), json!(signal_type));
            if let Some(fp) = text(d, "fingerprint") {
                f.spec.insert("signalFingerprint".into(), json!(fp));
            }
            for (from, to) in [
                ("signal_labels", "signalLabels"),
                ("signal_annotations", "signalAnnotations"),
            ] {
                if let Some(Value::Object(m)) = d.get(from) {
                    let merged = f.spec.entry(to).or_insert_with(|| json!({}));
                    if let Value::Object(into) = merged {
                        into.extend(m.clone());
                    }
                }
            }
            if let Some(payload) = d.get("original_payload").filter(|v| !v.is_null()) {
                f.spec
                    .insert("originalPayload".into(), json!(payload.to_string()));
            }
            if let Some(cluster) = e.cluster_id.filter(|c| !c.is_empty()) {
                f.spec.insert("clusterID".into(), json!(cluster));
            }
        }
        "orchestrator.lifecycle.created" => {
            if let Some(Value::Object(tc)) = d.get("timeout_config") {
                let mut timeouts = Map::new();
                for key in ["global", "processing", "analyzing", "executing"] {
                    if let Some(value) = text(tc, key) {
                        let parsed = go_duration::parse(value).ok_or_else(|| {
                            RebuildError::BadValue(format!(
                                "timeout_config.{key} {value:?} is not a duration"
                            ))
                        })?;
                        timeouts.insert(key.into(), json!(go_duration::format(parsed)));
                    }
                }
                f.timeouts = Some(timeouts);
            }
        }
        "aianalysis.analysis.completed" => {
            if let Some(summary) = d.get("provider_response_summary").filter(|v| !v.is_null()) {
                f.spec
                    .insert("providerData".into(), json!(summary.to_string()));
            }
        }
        "workflowexecution.selection.completed" => {
            let mut reference = Map::new();
            reference.insert(
                "workflowId".into(),
                json!(text(d, "workflow_id").unwrap_or("")),
            );
            reference.insert(
                "version".into(),
                json!(text(d, "workflow_version").unwrap_or("")),
            );
            reference.insert(
                "executionBundle".into(),
                json!(text(d, "container_image").unwrap_or("")),
            );
            f.selected_workflow = Some(Value::Object(reference));
        }
        "workflowexecution.execution.started" => {
            f.execution = Some(json!({
                "apiVersion": "workflowexecution.kubernaut.ai/v1alpha1",
                "kind": "WorkflowExecution",
                "name": text(d, "execution_name").unwrap_or(""),
                "namespace": e.namespace.unwrap_or(""),
            }));
        }
        "orchestrator.lifecycle.completed" | "orchestrator.lifecycle.failed" => {
            if let Some(outcome) = text(d, "outcome") {
                f.completion.insert("outcome".into(), json!(outcome));
            }
            if let Some(phase) = text(d, "failure_phase") {
                f.completion.insert("failurePhase".into(), json!(phase));
            }
            let message = d
                .get("error_details")
                .and_then(Value::as_object)
                .and_then(|ed| text(ed, "message"));
            if let Some(message) = message {
                f.completion.insert("failureReason".into(), json!(message));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Completeness and the gaps, as the platform counts them.
fn validate(f: &Fields) -> Validation {
    let present = |key: &str| match f.spec.get(key) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        _ => false,
    };
    let mut errors = Vec::new();
    let required = [
        ("signalName", "SignalName is required in Spec"),
        ("signalType", "SignalType is required in Spec"),
    ];
    let mut have = 0;
    for (key, error) in required {
        if present(key) {
            have += 1;
        } else {
            errors.push(error.to_string());
        }
    }
    let optional = [
        (
            present("signalLabels"),
            "SignalLabels are missing (Gap #2) - labels provide context for signal",
        ),
        (
            present("signalAnnotations"),
            "SignalAnnotations are missing (Gap #3) - annotations provide additional metadata",
        ),
        (
            present("originalPayload"),
            "OriginalPayload is missing (Gap #1) - full audit trail requires original data",
        ),
        (
            f.timeouts.is_some(),
            "TimeoutConfig is missing (Gap #8) - operational timeouts may use defaults",
        ),
        (
            present("providerData"),
            "providerData is missing (Gap #4) - AI analysis summary unavailable",
        ),
        (
            f.selected_workflow.is_some(),
            "selectedWorkflowRef is missing (Gap #5) - workflow selection data unavailable",
        ),
        (
            f.execution.is_some(),
            "executionRef is missing (Gap #6) - workflow execution reference unavailable",
        ),
    ];
    let mut warnings = Vec::new();
    for (is_there, warning) in optional {
        if is_there {
            have += 1;
        } else {
            warnings.push(warning.to_string());
        }
    }
    let total = (required.len() + optional.len()) as u32;
    Validation {
        is_valid: errors.is_empty(),
        completeness: have * 100 / total,
        errors,
        warnings,
    }
}

/// The RemediationRequest object.
fn document(correlation_id: &str, mut f: Fields, now: DateTime<Utc>) -> Value {
    // The fingerprint is a required field of the spec, empty when no event gave it.
    f.spec
        .entry("signalFingerprint")
        .or_insert_with(|| json!(""));
    let mut status = Map::new();
    if let Some(t) = f.timeouts {
        status.insert("timeoutConfig".into(), Value::Object(t));
    }
    let mut selection = Map::new();
    if let Some(w) = f.selected_workflow {
        selection.insert("selectedWorkflowRef".into(), w);
    }
    if let Some(x) = f.execution {
        selection.insert("executionRef".into(), x);
    }
    if !selection.is_empty() {
        status.insert("workflowSelection".into(), Value::Object(selection));
    }
    if !f.completion.is_empty() {
        status.insert("completionStatus".into(), Value::Object(f.completion));
    }
    json!({
        "apiVersion": "remediation.kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "metadata": {
            "name": format!("{NAME_PREFIX}{correlation_id}-{}", now.timestamp()),
            "namespace": NAMESPACE,
            "labels": {
                "app.kubernetes.io/managed-by": "kubernaut-datastorage",
                "kubernaut.ai/reconstructed": "true",
                "kubernaut.ai/correlation-id": correlation_id,
            },
            "annotations": {
                "kubernaut.ai/reconstructed-at": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "kubernaut.ai/reconstruction-source": "audit-trail",
                "kubernaut.ai/correlation-id": correlation_id,
            },
            "finalizers": ["kubernaut.ai/audit-retention"],
        },
        "spec": Value::Object(f.spec),
        "status": Value::Object(status),
    })
}

/// Durations as Go writes and reads them (`1h30m`, `1.5s`, `250ms`): the platform's timeouts
/// and windows are Go durations, and what is written back is written as Go would.
pub(crate) mod go_duration {
    /// Nanoseconds of each unit Go accepts.
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];

    /// A duration in nanoseconds, or `None` when the text is not one.
    pub fn parse(text: &str) -> Option<i64> {
        let (negative, mut rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        if rest == "0" {
            return Some(0);
        }
        if rest.is_empty() {
            return None;
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let number_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..number_end].parse().ok()?;
            rest = &rest[number_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit)?;
            total += number * scale;
            rest = &rest[unit_end..];
        }
        // Beyond what 64 bits of nanoseconds hold (some 292 years): as long as can be.
        let nanos = if total >= i64::MAX as f64 {
            i64::MAX
        } else {
            total.round() as i64
        };
        Some(if negative { -nanos } else { nanos })
    }

    /// The text Go's `Duration.String` writes.
    pub fn format(nanos: i64) -> String {
        if nanos == 0 {
            return "0s".into();
        }
        let sign = if nanos < 0 { "-" } else { "" };
        let n = nanos.unsigned_abs();
        if n < 1_000_000_000 {
            // Below a second: the largest of ns, µs, ms that keeps an integer part.
            let (scale, unit) = match n {
                0..1_000 => (1, "ns"),
                1_000..1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return format!("{sign}{}{unit}", fraction(n, scale));
        }
        let hours = n / 3_600_000_000_000;
        let minutes = n / 60_000_000_000 % 60;
        let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
        match (hours, minutes) {
            (0, 0) => format!("{sign}{seconds}s"),
            (0, m) => format!("{sign}{m}m{seconds}s"),
            (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
        }
    }

    /// `n / scale` with its fraction, trailing zeros dropped.
    fn fraction(n: u64, scale: u64) -> String {
        let whole = n / scale;
        let rest = n % scale;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = scale.ilog10() as usize;
        let frac = format!("{rest:0digits$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn go_durations_read_and_write_as_go_does() {
            for (text, go) in [
                ("1h", "1h0m0s"),
                ("10m", "10m0s"),
                ("15m0s", "15m0s"),
                ("1h30m", "1h30m0s"),
                ("1.5s", "1.5s"),
                ("250ms", "250ms"),
                ("1.5ms", "1.5ms"),
                ("90s", "1m30s"),
                ("0", "0s"),
                ("2h45m30.5s", "2h45m30.5s"),
                ("-5m", "-5m0s"),
                ("300us", "300µs"),
            ] {
                assert_eq!(format(parse(text).unwrap()), go, "{text}");
            }
            assert_eq!(parse("35m8958574h"), Some(i64::MAX), "saturates");
            for bad in ["", "h", "5", "5x", "1..5s", "1h-3m"] {
                assert_eq!(parse(bad), None, "{bad:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(event_type: &'a str, data: &'a Map<String, Value>) -> TrailEvent<'a> {
        TrailEvent {
            event_type,
            data,
            namespace: Some("payments"),
            cluster_id: Some("prod-east-1"),
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_full_trail_rebuilds_every_field() {
        let now = audit_model::timestamp::parse("2026-12-01T10:00:00Z").unwrap();
        let gateway = obj(
            json!({"signal_name": "HighCPU", "signal_type": "prometheus-alert",
            "fingerprint": "abc", "signal_labels": {"severity": "critical"},
            "signal_annotations": {"summary": "CPU high"}, "original_payload": {"alert": "data"}}),
        );
        let created = obj(json!({"timeout_config": {"global": "1h", "processing": "10m"}}));
        let analysis = obj(json!({"provider_response_summary": {"root_cause": "leak"}}));
        let selection = obj(
            json!({"workflow_id": "restart", "workflow_version": "1.2", "container_image": "registry/restart:1.2"}),
        );
        let started = obj(json!({"execution_name": "we-1"}));
        let failed = obj(
            json!({"outcome": "Failed", "failure_phase": "Executing", "error_details": {"message": "pod crashloop"}}),
        );
        let events = [
            ev("gateway.signal.received", &gateway),
            ev("orchestrator.lifecycle.created", &created),
            ev("aianalysis.analysis.completed", &analysis),
            ev("workflowexecution.selection.completed", &selection),
            ev("workflowexecution.execution.started", &started),
            ev("orchestrator.lifecycle.failed", &failed),
        ];
        let r = rebuild("rr-1", &events, now).unwrap();
        assert_eq!(
            r.validation,
            Validation {
                is_valid: true,
                completeness: 100,
                errors: vec![],
                warnings: vec![]
            }
        );
        assert_eq!(r.cluster_id.as_deref(), Some("prod-east-1"));
        let rr: Value = serde_yaml_ng::from_str(&r.remediation_request_yaml).unwrap();
        assert_eq!(
            rr["metadata"]["name"],
            json!(format!("rr-reconstructed-rr-1-{}", now.timestamp()))
        );
        assert_eq!(
            rr["metadata"]["annotations"]["kubernaut.ai/reconstructed-at"],
            "2026-12-01T10:00:00Z"
        );
        assert_eq!(rr["spec"]["signalType"], "alert");
        assert_eq!(rr["spec"]["originalPayload"], r#"{"alert":"data"}"#);
        assert_eq!(rr["spec"]["providerData"], r#"{"root_cause":"leak"}"#);
        assert_eq!(
            rr["status"]["timeoutConfig"],
            json!({"global": "1h0m0s", "processing": "10m0s"})
        );
        assert_eq!(
            rr["status"]["workflowSelection"]["selectedWorkflowRef"]["executionBundle"],
            "registry/restart:1.2"
        );
        assert_eq!(
            rr["status"]["workflowSelection"]["executionRef"]["namespace"],
            "payments"
        );
        assert_eq!(
            rr["status"]["completionStatus"],
            json!({"outcome": "Failed", "failurePhase": "Executing", "failureReason": "pod crashloop"})
        );
    }

    #[test]
    fn what_is_missing_is_named_and_counted() {
        let now = Utc::now();
        let gateway = obj(
            json!({"signal_name": "HighCPU", "signal_labels": {"a": "b"}, "signal_annotations": {"c": "d"}}),
        );
        let created = obj(json!({"timeout_config": {"global": "1h"}}));
        let r = rebuild(
            "rr-2",
            &[
                ev("gateway.signal.received", &gateway),
                ev("orchestrator.lifecycle.created", &created),
            ],
            now,
        )
        .unwrap();
        // Name, type, labels, annotations, timeouts: 5 of 9.
        assert_eq!(r.validation.completeness, 55);
        assert_eq!(r.validation.warnings.len(), 4);
        // Without the labels and timeouts: 3 of 9, refused.
        let bare = obj(json!({"signal_name": "HighCPU"}));
        assert_eq!(
            rebuild("rr-3", &[ev("gateway.signal.received", &bare)], now),
            Err(RebuildError::Incomplete(22))
        );
    }

    #[test]
    fn without_a_genesis_event_or_anything_readable_there_is_no_rebuild() {
        let now = Utc::now();
        let created = obj(json!({"timeout_config": {"global": "1h"}}));
        assert_eq!(
            rebuild("rr", &[ev("orchestrator.lifecycle.created", &created)], now),
            Err(RebuildError::NoGenesis)
        );
        let nameless = obj(json!({"signal_type": "alert"}));
        assert_eq!(
            rebuild("rr", &[ev("gateway.signal.received", &nameless)], now),
            Err(RebuildError::NothingReadable)
        );
        let gateway = obj(
            json!({"signal_name": "X", "signal_labels": {"a": "b"}, "signal_annotations": {"c": "d"}}),
        );
        let bad = obj(json!({"timeout_config": {"global": "soon"}}));
        assert!(matches!(
            rebuild("rr", &[ev("gateway.signal.received", &gateway), ev("orchestrator.lifecycle.created", &bad)], now),
            Err(RebuildError::BadValue(m)) if m.contains("soon")
        ));
    }
}
