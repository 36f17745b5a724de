//! The notification's audit trail: what to record after a status write, and how.
//!
//! Audit records are derived by comparing the status before and after a successful write, so a
//! phase change yields exactly one `notification.phase.transitioned` event and a reconcile that
//! writes nothing yields none. Every new delivery attempt yields `notification.message.sent` or
//! `notification.message.failed`, and every target that reaches its final outcome yields one typed
//! `notification_audit` record. All ids are deterministic (UUIDv5 of the CR's uid and what
//! happened), so re-recording after a restart is a no-op in Data Storage.
//!
//! Every text a record carries is held to Data Storage's limits by construction
//! ([`audit_model::limits`], the limits Data Storage enforces): a value that may be longer (a
//! recipient, a name, a provider's answer, an error) is shortened by [`fit`], which keeps its
//! prefix and a digest of the whole, so a record is never refused for a long value and two long
//! values never collide. The typed record's `notification_id` is the object's uid.
//!
//! Recording never waits: the audit client queues the record and returns. A refusal (invalid
//! record, full buffer without spill, closed client) is counted and logged by the caller, never
//! turned into a reconcile error.

use audit_model::limits::{fit, MAX_SHORT, MAX_TEXT};
use audit_model::NotificationAudit;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::crd::NotificationRequestSpec;
use crate::crd::{AttemptStatus, DeliveryAttempt, NotificationRequestStatus, Phase};
use crate::decide::{target_states, Target};

/// The UUIDv5 namespace of the controller's event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_6a0b_9f8e_4d2c_a1b3_7e6f_0d4c_2b19);

/// The actor of every record this controller writes.
pub const ACTOR_ID: &str = "notification-controller";

/// Something the audit trail must show after a status write.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditIntent {
    PhaseTransition {
        from: Option<Phase>,
        to: Phase,
        at: DateTime<Utc>,
    },
    Attempt(DeliveryAttempt),
    /// The final outcome of one target: its success, or its last failed attempt.
    Outcome {
        target: Target,
        attempt: DeliveryAttempt,
        sent: bool,
    },
}

/// What changed between `old` and `new` (the status as written), in the order it happened.
pub fn intents(
    spec: &NotificationRequestSpec,
    old: &NotificationRequestStatus,
    new: &NotificationRequestStatus,
    now: DateTime<Utc>,
) -> Vec<AuditIntent> {
    let mut out: Vec<AuditIntent> = new
        .delivery_attempts
        .iter()
        .skip(old.delivery_attempts.len())
        .cloned()
        .map(AuditIntent::Attempt)
        .collect();
    let policy = &spec.retry_policy;
    let before = target_states(spec, old);
    for (target, state) in target_states(spec, new) {
        let was_resolved = before.get(&target).is_some_and(|s| s.is_resolved(policy));
        if was_resolved || !state.is_resolved(policy) {
            continue;
        }
        let (attempt, sent) = match (&state.succeeded, &state.last) {
            (Some(a), _) => (a.clone(), true),
            (None, Some(a)) => (a.clone(), false),
            (None, None) => continue,
        };
        out.push(AuditIntent::Outcome {
            target,
            attempt,
            sent,
        });
    }
    if let Some(to) = new.phase.filter(|p| old.phase != Some(*p)) {
        out.push(AuditIntent::PhaseTransition {
            from: old.phase,
            to,
            at: now,
        });
    }
    out
}

/// Who the records are about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// `metadata.remediationRequestName`, else the CR name.
    pub correlation_id: String,
    /// The (redacted) subject line, used as the records' message summary.
    pub summary: String,
}

/// A record ready for the audit client.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditRecord {
    Event(Value),
    Notification(NotificationAudit),
}

fn id(subject: &Subject, what: &str) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{}/{what}", subject.uid).as_bytes(),
    )
}

fn base(subject: &Subject, event_id: Uuid, at: DateTime<Utc>) -> Value {
    json!({
        "event_id": event_id,
        "event_version": "1.0",
        "event_timestamp": audit_model::timestamp::format(&at),
        "event_category": "notification",
        "actor_type": "service",
        "actor_id": ACTOR_ID,
        "resource_type": "NotificationRequest",
        "resource_id": short(&subject.name),
        "resource_name": short(&subject.name),
        "correlation_id": short(&subject.correlation_id),
        "namespace": short(&subject.namespace),
    })
}

/// The records for one intent.
pub fn record(subject: &Subject, intent: &AuditIntent) -> AuditRecord {
    match intent {
        AuditIntent::PhaseTransition { from, to, at } => {
            let from_name = from.map(Phase::as_str).unwrap_or("");
            let mut e = base(
                subject,
                id(subject, &format!("phase/{from_name}/{to}")),
                *at,
            );
            e["event_type"] = json!("notification.phase.transitioned");
            e["event_action"] = json!("phase_transition");
            e["event_outcome"] = json!(match to {
                Phase::Failed => "failure",
                Phase::Sent | Phase::PartiallySent => "success",
                _ => "pending",
            });
            e["event_data"] = json!({
                "notification": subject.name,
                "notification_uid": subject.uid,
                "old_phase": from.map(Phase::as_str),
                "new_phase": to.as_str(),
            });
            AuditRecord::Event(e)
        }
        AuditIntent::Attempt(a) => {
            let what = format!("attempt/{}/{}/{}", a.channel, a.recipient, a.attempt);
            let mut e = base(subject, id(subject, &what), a.timestamp);
            let ok = a.status == AttemptStatus::Success;
            e["event_type"] = json!(if ok {
                "notification.message.sent"
            } else {
                "notification.message.failed"
            });
            e["event_action"] = json!(if ok { "sent" } else { "failed" });
            e["event_outcome"] = json!(if ok { "success" } else { "failure" });
            e["duration_ms"] = json!((a.duration_seconds * 1000.0).round() as i64);
            if let Some(err) = &a.error {
                e["error_message"] = json!(text(err));
            }
            e["event_data"] = json!({
                "notification_uid": subject.uid,
                "channel": a.channel.as_str(),
                "recipient": short(&a.recipient),
                "attempt": a.attempt,
                "status": a.status,
                "duration_seconds": a.duration_seconds,
                "provider_response": a.provider_response,
                "error": a.error,
            });
            AuditRecord::Event(e)
        }
        AuditIntent::Outcome {
            target,
            attempt,
            sent,
        } => AuditRecord::Notification(NotificationAudit {
            remediation_id: short(&subject.correlation_id),
            // The object's uid: unique across namespaces and across a delete and re-create
            // under the same name, so the record's natural key never meets another object's.
            notification_id: short(&subject.uid),
            recipient: short(&target.recipient),
            channel: target.channel.as_str().to_string(),
            message_summary: text(&subject.summary),
            status: if *sent { "sent" } else { "failed" }.to_string(),
            sent_at: attempt.timestamp,
            escalation_level: 0,
            delivery_status: Some(short(
                attempt
                    .provider_response
                    .as_deref()
                    .unwrap_or(&format!("{:?}", attempt.status).to_lowercase()),
            )),
            error_message: if *sent {
                None
            } else {
                attempt.error.as_deref().map(text)
            },
        }),
    }
}

/// A name or identifier as Data Storage takes it: at most [`MAX_SHORT`] characters, a longer
/// one shortened by [`fit`] (its prefix and a digest of the whole, so it stays distinct).
fn short(value: &str) -> String {
    fit(value, MAX_SHORT).into_owned()
}

/// Free text as Data Storage takes it (at most [`MAX_TEXT`] characters).
fn text(value: &str) -> String {
    fit(value, MAX_TEXT).into_owned()
}
