//! A remediation's timeline: its events across the six services, grouped per service into
//! lifecycles with their phases, durations, outcomes and completeness findings.
//!
//! Sans-IO: [`build`] takes the remediation's events in time order and answers the timeline;
//! the route reads them from the store. The vocabularies are the platform's event types (as its
//! controllers write them) and the six typed seed records (`<category>.<noun>.<status>`, whose
//! outcome says whether the status is terminal). The rules, per service, are written down in
//! `docs/timeline.md`; each has a unit test below.

use std::collections::BTreeMap;

use audit_model::{EventOutcome, StoredEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// What the timeline reads of one event (the store reads these columns alone, from the
/// correlation index, rather than whole events).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_category: String,
    pub event_action: String,
    pub event_outcome: EventOutcome,
    pub event_timestamp: DateTime<Utc>,
    pub resource_id: String,
    /// A typed seed record.
    pub record: bool,
    /// The phase a transition enters (`event_data.to_phase`, else `new_phase`).
    pub to_phase: Option<String>,
    /// `event_data.notification_uid`.
    pub notification_uid: Option<String>,
}

impl TimelineRow {
    /// The row of a whole event.
    pub fn of(stored: &StoredEvent) -> TimelineRow {
        let e = &stored.event;
        let data = e.event_data();
        let text = |key: &str| match data.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        TimelineRow {
            seq: stored.seq,
            event_id: e.event_id(),
            event_type: e.event_type().to_string(),
            event_category: e.event_category().to_string(),
            event_action: e.event_action().to_string(),
            event_outcome: e.event_outcome(),
            event_timestamp: e.event_timestamp(),
            resource_id: e.resource_id().to_string(),
            record: e.record_kind().is_some(),
            to_phase: text("to_phase").or_else(|| text("new_phase")),
            notification_uid: text("notification_uid"),
        }
    }
}

/// The six services of a remediation, and the events that belong to none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The RemediationOrchestrator: the remediation's own phases.
    Orchestration,
    /// The Gateway and SignalProcessing: the signal.
    Signal,
    AiAnalysis,
    WorkflowExecution,
    Effectiveness,
    Notification,
    /// Anything else written under the remediation (access records, catalog lookups).
    Other,
}

impl Service {
    /// The service an event belongs to, by its type (and, for typed records, its category).
    pub fn of(event_type: &str, category: &str) -> Service {
        let head = event_type.split('.').next().unwrap_or("");
        match head {
            "orchestrator" | "orchestration" | "remediationorchestrator" => Service::Orchestration,
            "gateway" | "signalprocessing" => Service::Signal,
            "aianalysis" | "analysis" => Service::AiAnalysis,
            "workflowexecution" => Service::WorkflowExecution,
            "effectiveness" => Service::Effectiveness,
            "notification" => Service::Notification,
            "apifrontend" if event_type.starts_with("apifrontend.rr.") => Service::Orchestration,
            "webhook" if event_type.starts_with("webhook.notification.") => Service::Notification,
            "webhook" if event_type.starts_with("webhook.remediation") => Service::Orchestration,
            _ if category == "notification" => Service::Notification,
            _ => Service::Other,
        }
    }

    /// Event types that end this service's lifecycle (besides typed records whose outcome is
    /// not `pending`, and phase transitions into a terminal phase).
    fn terminal_types(self) -> &'static [&'static str] {
        match self {
            Service::Orchestration => &[
                "orchestrator.lifecycle.completed",
                "orchestrator.lifecycle.failed",
            ],
            Service::Signal => &["signalprocessing.signal.processed"],
            Service::AiAnalysis => &[
                "aianalysis.analysis.completed",
                "aianalysis.analysis.failed",
            ],
            Service::WorkflowExecution => &[
                "workflowexecution.workflow.completed",
                "workflowexecution.workflow.failed",
            ],
            Service::Effectiveness => &["effectiveness.assessment.completed"],
            Service::Notification => &[
                "notification.message.acknowledged",
                "webhook.notification.acknowledged",
                "webhook.notification.cancelled",
            ],
            Service::Other => &[],
        }
    }
}

/// Phases that end a lifecycle, compared case-insensitively without `_`/`-`.
const TERMINAL_PHASES: [&str; 9] = [
    "completed",
    "failed",
    "sent",
    "partiallysent",
    "timeout",
    "timedout",
    "skipped",
    "cancelled",
    "rejected",
];

fn is_terminal_phase(phase: &str) -> bool {
    let folded: String = phase
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    TERMINAL_PHASES.contains(&folded.as_str())
}

/// A completeness finding: what is missing, and the event it was noticed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Finding {
    /// The rule's name (`not_terminal`, `attempt_without_outcome`, `started_without_completion`,
    /// `execution_without_selection`, `decision_without_analysis`, `call_without_result`,
    /// `approval_without_decision`).
    pub rule: &'static str,
    pub message: String,
    /// The event the finding is about (the one whose counterpart is missing).
    pub event_id: Option<Uuid>,
}

/// A phase a lifecycle was in.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Phase {
    pub phase: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub entered_at: DateTime<Utc>,
    /// Until the next phase (absent for the last one).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "audit_model::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub left_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

/// One service's lifecycle within the remediation (one per notification, one per service
/// otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Lifecycle {
    pub service: Service,
    /// What it is about: the notification's id, else the service's name.
    pub subject: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    /// When it reached its terminal state.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "audit_model::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub last_event_at: DateTime<Utc>,
    /// From the first event to the end (or to the last event while it runs).
    pub duration_ms: i64,
    /// `success`, `failure` (the terminal event's outcome), or `in_progress`.
    pub outcome: &'static str,
    pub phases: Vec<Phase>,
    /// Its events that failed (outcome `failure`).
    pub failures: u64,
    pub event_count: u64,
    pub findings: Vec<Finding>,
}

/// One event as the timeline lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub event_timestamp: DateTime<Utc>,
    pub event_outcome: &'static str,
    pub service: Service,
    /// Index of its lifecycle in `lifecycles` (absent for `other` events).
    pub lifecycle: Option<usize>,
}

/// The summary on top.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub first_event_at: DateTime<Utc>,
    #[serde(with = "audit_model::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub last_event_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub event_count: u64,
    /// Per service with a lifecycle: `success`, `failure`, `in_progress` (the worst of its
    /// lifecycles: a failure, else one in progress, else success).
    #[schema(value_type = Object)]
    pub outcomes: BTreeMap<Service, &'static str>,
    /// The share of lifecycles without a finding, in percent (100 with none).
    pub completeness: u32,
    pub findings: u64,
}

/// A remediation's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Timeline {
    pub correlation_id: String,
    /// The remediation has more events than a timeline draws (100 000); these are its first.
    pub truncated: bool,
    pub summary: Summary,
    pub lifecycles: Vec<Lifecycle>,
    pub events: Vec<TimelineEntry>,
}

/// The phase an event enters, if it says so: a transition's `to_phase`/`new_phase`, or a
/// typed record's status (the second says whether it is a record's).
fn entered_phase(row: &TimelineRow) -> Option<(&str, bool)> {
    if let Some(phase) = &row.to_phase {
        return Some((phase, false));
    }
    row.record.then_some((row.event_action.as_str(), true))
}

/// Whether the event ends its lifecycle.
fn is_terminal(service: Service, row: &TimelineRow, phase: Option<&str>) -> bool {
    if service.terminal_types().contains(&row.event_type.as_str()) {
        return true;
    }
    if row.record {
        return row.event_outcome != EventOutcome::Pending;
    }
    phase.is_some_and(is_terminal_phase)
}

/// The lifecycle an event belongs to within its service: a notification's (by the
/// NotificationRequest's uid when the event carries it, as typed records and the controller's
/// events do, else its resource id); one per service otherwise.
fn subject(service: Service, row: &TimelineRow) -> String {
    if service != Service::Notification {
        return service_name(service).to_string();
    }
    row.notification_uid
        .clone()
        .unwrap_or_else(|| row.resource_id.clone())
}

fn service_name(service: Service) -> &'static str {
    match service {
        Service::Orchestration => "orchestration",
        Service::Signal => "signal",
        Service::AiAnalysis => "aianalysis",
        Service::WorkflowExecution => "workflowexecution",
        Service::Effectiveness => "effectiveness",
        Service::Notification => "notification",
        Service::Other => "other",
    }
}

/// A lifecycle being built.
struct Open<'a> {
    service: Service,
    subject: String,
    events: Vec<&'a TimelineRow>,
    /// The phases its transitions entered.
    phases: Vec<(String, DateTime<Utc>)>,
    /// The statuses its typed records named (its phases when it has no transitions).
    statuses: Vec<(String, DateTime<Utc>)>,
    terminal: Option<&'a TimelineRow>,
}

/// Builds the timeline of `correlation_id` from its events in time order; `None` without
/// events.
pub fn build(correlation_id: &str, events: &[TimelineRow]) -> Option<Timeline> {
    let first = events.first()?.event_timestamp;
    let last = events
        .iter()
        .map(|r| r.event_timestamp)
        .max()
        .unwrap_or(first);
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut index: BTreeMap<(Service, String), usize> = BTreeMap::new();
    let mut entries = Vec::with_capacity(events.len());
    for row in events {
        let service = Service::of(&row.event_type, &row.event_category);
        let lifecycle = (service != Service::Other).then(|| {
            let key = (service, subject(service, row));
            *index.entry(key.clone()).or_insert_with(|| {
                open.push(Open {
                    service,
                    subject: key.1,
                    events: Vec::new(),
                    phases: Vec::new(),
                    statuses: Vec::new(),
                    terminal: None,
                });
                open.len() - 1
            })
        });
        if let Some(i) = lifecycle {
            let l = &mut open[i];
            l.events.push(row);
            let phase = entered_phase(row);
            if let Some((phase, record)) = phase {
                let list = if record {
                    &mut l.statuses
                } else {
                    &mut l.phases
                };
                if list.last().map(|(p, _)| p.as_str()) != Some(phase) {
                    list.push((phase.to_string(), row.event_timestamp));
                }
            }
            if is_terminal(service, row, phase.map(|(p, _)| p)) {
                l.terminal = Some(row);
            }
        }
        entries.push(TimelineEntry {
            seq: row.seq,
            event_id: row.event_id,
            event_type: row.event_type.clone(),
            event_timestamp: row.event_timestamp,
            event_outcome: row.event_outcome.as_str(),
            service,
            lifecycle,
        });
    }
    let analysed = events.iter().any(|r| {
        r.event_type == "aianalysis.analysis.completed"
            || (r.record
                && Service::of(&r.event_type, &r.event_category) == Service::AiAnalysis
                && r.event_outcome == EventOutcome::Success)
    });
    let lifecycles: Vec<Lifecycle> = open.into_iter().map(|l| finish(l, analysed)).collect();
    let mut outcomes: BTreeMap<Service, &'static str> = BTreeMap::new();
    for l in &lifecycles {
        let worst = outcomes.entry(l.service).or_insert("success");
        *worst = match (*worst, l.outcome) {
            ("failure", _) | (_, "failure") => "failure",
            ("in_progress", _) | (_, "in_progress") => "in_progress",
            _ => "success",
        };
    }
    let findings: u64 = lifecycles.iter().map(|l| l.findings.len() as u64).sum();
    let complete = lifecycles.iter().filter(|l| l.findings.is_empty()).count();
    let completeness = if lifecycles.is_empty() {
        100
    } else {
        (complete * 100 / lifecycles.len()) as u32
    };
    Some(Timeline {
        correlation_id: correlation_id.to_string(),
        truncated: false,
        summary: Summary {
            first_event_at: first,
            last_event_at: last,
            duration_ms: (last - first).num_milliseconds(),
            event_count: events.len() as u64,
            outcomes,
            completeness,
            findings,
        },
        lifecycles,
        events: entries,
    })
}

/// A lifecycle's phases, outcome and findings.
fn finish(l: Open<'_>, analysed: bool) -> Lifecycle {
    let started_at = l.events[0].event_timestamp;
    let last_event_at = l
        .events
        .iter()
        .map(|r| r.event_timestamp)
        .max()
        .unwrap_or(started_at);
    let ended_at = l.terminal.map(|t| t.event_timestamp);
    let outcome = match l.terminal.map(|t| t.event_outcome) {
        Some(EventOutcome::Failure) => "failure",
        Some(_) => "success",
        None => "in_progress",
    };
    let entered = if l.phases.is_empty() {
        &l.statuses
    } else {
        &l.phases
    };
    let phases = entered
        .iter()
        .enumerate()
        .map(|(i, (phase, entered_at))| {
            let left_at = entered.get(i + 1).map(|(_, at)| *at);
            Phase {
                phase: phase.clone(),
                entered_at: *entered_at,
                left_at,
                duration_ms: left_at.map(|at| (at - *entered_at).num_milliseconds()),
            }
        })
        .collect();
    let mut findings = Vec::new();
    rules(&l, analysed, &mut findings);
    Lifecycle {
        service: l.service,
        subject: l.subject,
        started_at,
        ended_at,
        last_event_at,
        duration_ms: (ended_at.unwrap_or(last_event_at) - started_at).num_milliseconds(),
        outcome,
        phases,
        failures: l
            .events
            .iter()
            .filter(|r| r.event_outcome == EventOutcome::Failure)
            .count() as u64,
        event_count: l.events.len() as u64,
        findings,
    }
}

/// The first event of `types` at or after position `from` in the lifecycle.
fn after<'a>(events: &[&'a TimelineRow], from: usize, types: &[&str]) -> Option<&'a TimelineRow> {
    events[from..]
        .iter()
        .copied()
        .find(|s| types.contains(&s.event_type.as_str()))
}

/// Each event of `starts` needs one of `ends` after it in the lifecycle.
fn pairs(
    l: &Open<'_>,
    starts: &[&str],
    ends: &[&str],
    rule: &'static str,
    what: &str,
    findings: &mut Vec<Finding>,
) {
    for (i, s) in l.events.iter().enumerate() {
        if starts.contains(&s.event_type.as_str()) && after(&l.events, i + 1, ends).is_none() {
            findings.push(Finding {
                rule,
                message: format!("{} (seq {}) {what}", s.event_type.as_str(), s.seq),
                event_id: Some(s.event_id),
            });
        }
    }
}

/// The completeness rules of a lifecycle (see `docs/timeline.md`).
fn rules(l: &Open<'_>, analysed: bool, findings: &mut Vec<Finding>) {
    if l.terminal.is_none() {
        let last = l.events.last().expect("a lifecycle has an event");
        findings.push(Finding {
            rule: "not_terminal",
            message: format!(
                "the {} lifecycle started and never reached a terminal state (last: {} at seq {})",
                service_name(l.service),
                last.event_type,
                last.seq
            ),
            event_id: Some(last.event_id),
        });
    }
    match l.service {
        Service::Notification => {
            // A delivery attempt: the controller enters `Sending`; its outcome is a
            // `notification.message.sent`/`failed` (or a typed delivery record) after it.
            for (i, s) in l.events.iter().enumerate() {
                let sending = entered_phase(s)
                    .is_some_and(|(p, record)| !record && p.eq_ignore_ascii_case("sending"));
                let outcome = l.events[i + 1..].iter().any(|o| {
                    matches!(
                        o.event_type.as_str(),
                        "notification.message.sent" | "notification.message.failed"
                    ) || o.record
                });
                if sending && !outcome {
                    findings.push(Finding {
                        rule: "attempt_without_outcome",
                        message: format!(
                            "a delivery attempt began (seq {}) and no outcome was recorded",
                            s.seq
                        ),
                        event_id: Some(s.event_id),
                    });
                }
            }
        }
        Service::WorkflowExecution => {
            pairs(
                l,
                &[
                    "workflowexecution.execution.started",
                    "workflowexecution.workflow.started",
                ],
                &[
                    "workflowexecution.workflow.completed",
                    "workflowexecution.workflow.failed",
                ],
                "started_without_completion",
                "started a workflow whose completion or failure was never recorded",
                findings,
            );
            for s in &l.events {
                let started = s.event_type.as_str() == "workflowexecution.execution.started";
                if started
                    && !l
                        .events
                        .iter()
                        .any(|o| o.event_type.as_str() == "workflowexecution.selection.completed")
                {
                    findings.push(Finding {
                        rule: "execution_without_selection",
                        message: format!(
                            "an execution started (seq {}) without a recorded workflow selection",
                            s.seq
                        ),
                        event_id: Some(s.event_id),
                    });
                }
            }
        }
        Service::AiAnalysis => pairs(
            l,
            &["aianalysis.aiagent.submit"],
            &["aianalysis.aiagent.result"],
            "call_without_result",
            "submitted to the AI agent and no result was recorded",
            findings,
        ),
        Service::Orchestration => pairs(
            l,
            &["orchestrator.approval.requested"],
            &[
                "orchestrator.approval.approved",
                "orchestrator.approval.rejected",
                "webhook.remediationapprovalrequest.decided",
            ],
            "approval_without_decision",
            "requested an approval that was never decided",
            findings,
        ),
        Service::Signal | Service::Effectiveness | Service::Other => {}
    }
    // A decision without its analysis: a workflow selected, or an approval decided, in a
    // remediation whose AI analysis never completed.
    if !analysed {
        for s in &l.events {
            if matches!(
                s.event_type.as_str(),
                "workflowexecution.selection.completed" | "aianalysis.approval.decision"
            ) {
                findings.push(Finding {
                    rule: "decision_without_analysis",
                    message: format!(
                        "{} (seq {}) was decided without a completed AI analysis",
                        s.event_type.as_str(),
                        s.seq
                    ),
                    event_id: Some(s.event_id),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_model::records::{NotificationAudit, RecordRules, SeedRecord};
    use audit_model::AuditEvent;
    use serde_json::json;

    fn at(second: i64) -> DateTime<Utc> {
        audit_model::timestamp::parse("2026-12-03T10:00:00Z").unwrap()
            + chrono::Duration::seconds(second)
    }

    /// An event of `event_type` at second `t`, with `data`.
    fn event(seq: i64, t: i64, event_type: &str, outcome: &str, data: Value) -> StoredEvent {
        let category = event_type.split('.').next().unwrap();
        let e = AuditEvent::parse(
            json!({
                "event_type": event_type,
                "event_category": category,
                "event_action": event_type.rsplit('.').next().unwrap(),
                "event_outcome": outcome,
                "event_timestamp": audit_model::timestamp::format(&at(t)),
                "correlation_id": "rr-1",
                "resource_type": "Thing",
                "resource_id": "thing-1",
                "event_data": data,
            }),
            at(t),
        )
        .unwrap();
        stored(seq, e)
    }

    fn stored(seq: i64, event: AuditEvent) -> StoredEvent {
        StoredEvent {
            leaf_hash: event.leaf_hash(),
            event,
            seq,
            committed_at: at(0),
        }
    }

    fn ok(seq: i64, t: i64, event_type: &str) -> StoredEvent {
        event(seq, t, event_type, "success", json!({}))
    }

    fn transition(seq: i64, t: i64, event_type: &str, from: &str, to: &str) -> StoredEvent {
        event(
            seq,
            t,
            event_type,
            "success",
            json!({"from_phase": from, "to_phase": to}),
        )
    }

    fn rows(events: &[StoredEvent]) -> Vec<TimelineRow> {
        events.iter().map(TimelineRow::of).collect()
    }

    fn rules_of(timeline: &Timeline, service: Service) -> Vec<&'static str> {
        timeline
            .lifecycles
            .iter()
            .filter(|l| l.service == service)
            .flat_map(|l| l.findings.iter().map(|f| f.rule))
            .collect()
    }

    #[test]
    fn no_events_no_timeline() {
        assert_eq!(build("rr-1", &[]), None);
    }

    #[test]
    fn a_complete_remediation_has_one_lifecycle_per_service_and_no_findings() {
        let events = vec![
            ok(1, 0, "gateway.signal.received"),
            ok(2, 1, "orchestrator.lifecycle.created"),
            transition(
                3,
                2,
                "signalprocessing.phase.transition",
                "Pending",
                "Enriching",
            ),
            ok(4, 4, "signalprocessing.signal.processed"),
            ok(5, 5, "aianalysis.aiagent.submit"),
            ok(6, 9, "aianalysis.aiagent.result"),
            ok(7, 10, "aianalysis.analysis.completed"),
            ok(8, 11, "workflowexecution.selection.completed"),
            ok(9, 12, "workflowexecution.execution.started"),
            ok(10, 20, "workflowexecution.workflow.completed"),
            ok(11, 30, "effectiveness.assessment.completed"),
            ok(12, 31, "orchestrator.lifecycle.completed"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        let services: Vec<_> = t.lifecycles.iter().map(|l| l.service).collect();
        assert_eq!(
            services,
            [
                Service::Signal,
                Service::Orchestration,
                Service::AiAnalysis,
                Service::WorkflowExecution,
                Service::Effectiveness
            ]
        );
        assert!(t.lifecycles.iter().all(|l| l.findings.is_empty()), "{t:#?}");
        assert_eq!(t.summary.completeness, 100);
        assert_eq!(t.summary.duration_ms, 31_000);
        assert_eq!(t.summary.event_count, 12);
        assert!(t.summary.outcomes.values().all(|o| *o == "success"));
        let workflow = &t.lifecycles[3];
        assert_eq!(
            (workflow.started_at, workflow.ended_at, workflow.duration_ms),
            (at(11), Some(at(20)), 9_000)
        );
        assert_eq!(t.events[9].lifecycle, Some(3));
    }

    #[test]
    fn phases_have_their_durations_and_the_last_one_stays_open() {
        let events = vec![
            transition(1, 0, "orchestrator.lifecycle.transitioned", "", "Pending"),
            transition(
                2,
                5,
                "orchestrator.lifecycle.transitioned",
                "Pending",
                "Analyzing",
            ),
            transition(
                3,
                12,
                "orchestrator.lifecycle.transitioned",
                "Analyzing",
                "Executing",
            ),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        let phases = &t.lifecycles[0].phases;
        let named: Vec<_> = phases
            .iter()
            .map(|p| (p.phase.as_str(), p.duration_ms))
            .collect();
        assert_eq!(
            named,
            [
                ("Pending", Some(5_000)),
                ("Analyzing", Some(7_000)),
                ("Executing", None)
            ]
        );
        assert_eq!(t.lifecycles[0].outcome, "in_progress");
    }

    #[test]
    fn a_lifecycle_that_never_ends_is_not_terminal() {
        let events = vec![
            ok(1, 0, "gateway.signal.received"),
            transition(
                2,
                1,
                "signalprocessing.phase.transition",
                "Pending",
                "Enriching",
            ),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(rules_of(&t, Service::Signal), ["not_terminal"]);
        assert_eq!(t.summary.completeness, 0);
        assert_eq!(t.summary.outcomes[&Service::Signal], "in_progress");
        // A transition into a terminal phase ends it.
        let mut ended = events.clone();
        ended.push(transition(
            3,
            2,
            "signalprocessing.phase.transition",
            "Enriching",
            "Completed",
        ));
        assert!(rules_of(&build("rr-1", &rows(&ended)).unwrap(), Service::Signal).is_empty());
    }

    #[test]
    fn a_failed_terminal_event_makes_the_service_fail() {
        let events = vec![
            ok(1, 0, "workflowexecution.selection.completed"),
            ok(2, 0, "aianalysis.analysis.completed"),
            ok(3, 1, "workflowexecution.execution.started"),
            event(
                4,
                9,
                "workflowexecution.workflow.failed",
                "failure",
                json!({}),
            ),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        let workflow = &t.lifecycles[0];
        assert_eq!((workflow.outcome, workflow.failures), ("failure", 1));
        assert_eq!(t.summary.outcomes[&Service::WorkflowExecution], "failure");
        assert!(workflow.findings.is_empty(), "{:?}", workflow.findings);
    }

    #[test]
    fn a_workflow_started_without_completion_or_selection() {
        let events = vec![
            ok(1, 0, "aianalysis.analysis.completed"),
            ok(2, 1, "workflowexecution.execution.started"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(
            rules_of(&t, Service::WorkflowExecution),
            [
                "not_terminal",
                "started_without_completion",
                "execution_without_selection"
            ]
        );
    }

    #[test]
    fn a_decision_without_its_analysis() {
        let events = vec![
            ok(1, 0, "aianalysis.aiagent.submit"),
            ok(2, 1, "workflowexecution.selection.completed"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(
            rules_of(&t, Service::AiAnalysis),
            ["not_terminal", "call_without_result"]
        );
        assert_eq!(
            rules_of(&t, Service::WorkflowExecution),
            ["not_terminal", "decision_without_analysis"]
        );
    }

    #[test]
    fn an_approval_never_decided() {
        let events = vec![
            ok(1, 0, "orchestrator.approval.requested"),
            ok(2, 9, "orchestrator.lifecycle.completed"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(
            rules_of(&t, Service::Orchestration),
            ["approval_without_decision"]
        );
        let decided = vec![
            ok(1, 0, "orchestrator.approval.requested"),
            ok(2, 5, "orchestrator.approval.approved"),
            ok(3, 9, "orchestrator.lifecycle.completed"),
        ];
        assert!(rules_of(
            &build("rr-1", &rows(&decided)).unwrap(),
            Service::Orchestration
        )
        .is_empty());
    }

    /// The Notification controller's events: phases, attempts, and the typed delivery record
    /// (joined to the same notification by its uid).
    #[test]
    fn a_notification_attempt_without_outcome_and_one_per_notification() {
        let phase = |seq, t, from: &str, to: &str, uid: &str| {
            event(
                seq,
                t,
                "notification.phase.transitioned",
                "pending",
                json!({"old_phase": from, "new_phase": to, "notification_uid": uid}),
            )
        };
        let record = NotificationAudit::parse(
            json!({
                "remediation_id": "rr-1",
                "notification_id": "uid-a",
                "recipient": "#ops",
                "channel": "slack",
                "message_summary": "restarted",
                "status": "sent",
                "sent_at": audit_model::timestamp::format(&at(3)),
            }),
            &RecordRules::new(at(10)),
        )
        .unwrap()
        .to_event(at(3).into());
        let events = vec![
            phase(1, 0, "", "Pending", "uid-a"),
            phase(2, 1, "Pending", "Sending", "uid-a"),
            event(
                3,
                2,
                "notification.message.sent",
                "success",
                json!({"channel": "slack", "notification_uid": "uid-a"}),
            ),
            stored(4, record),
            phase(5, 3, "Sending", "Sent", "uid-a"),
            phase(6, 4, "", "Pending", "uid-b"),
            phase(7, 5, "Pending", "Sending", "uid-b"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(t.lifecycles.len(), 2);
        let (a, b) = (&t.lifecycles[0], &t.lifecycles[1]);
        assert_eq!((a.subject.as_str(), a.event_count), ("uid-a", 5));
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.outcome, "success");
        let rules: Vec<_> = b.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["not_terminal", "attempt_without_outcome"]);
        assert_eq!(b.findings[1].event_id, Some(events[6].event.event_id()));
        assert_eq!(t.summary.completeness, 50);
        assert_eq!(t.summary.findings, 2);
    }

    #[test]
    fn events_of_no_service_are_listed_without_a_lifecycle() {
        let events = vec![
            ok(1, 0, "workflow.catalog.workflows_listed"),
            ok(2, 1, "effectiveness.assessment.completed"),
        ];
        let t = build("rr-1", &rows(&events)).unwrap();
        assert_eq!(t.events[0].service, Service::Other);
        assert_eq!(t.events[0].lifecycle, None);
        assert_eq!(t.lifecycles.len(), 1);
    }
}
