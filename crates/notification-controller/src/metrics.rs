//! The controller's Prometheus metrics, through the `metrics` facade.
//!
//! Labels are bounded: namespaces, the seven channels, the six phases and the four attempt
//! statuses; never a notification name or recipient.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::breaker::BreakerState;
use crate::crd::{AttemptStatus, ChannelKind, DeliveryAttempt, Phase};

pub const DELIVERIES: &str = "notification_deliveries_total";
pub const DELIVERY_DURATION: &str = "notification_delivery_duration_seconds";
pub const PHASE: &str = "notification_phase";
pub const RETRIES: &str = "notification_retry_count";
pub const BREAKER_STATE: &str = "notification_circuit_breaker_state";
pub const RECONCILES: &str = "notification_reconcile_total";
pub const RECONCILE_ERRORS: &str = "notification_reconcile_errors_total";
pub const AUDIT_FAILURES: &str = "notification_audit_write_failures_total";
pub const UNREADABLE: &str = "notification_unreadable_objects_total";

/// Every family with its HELP text.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        DELIVERIES,
        "Delivery attempts, by namespace, status and channel.",
    ),
    (
        DELIVERY_DURATION,
        "Time of one delivery attempt, in seconds, by namespace and channel.",
    ),
    (
        PHASE,
        "NotificationRequests in each phase, by namespace, as this process last saw them.",
    ),
    (
        RETRIES,
        "Delivery attempts after the first, by namespace and channel.",
    ),
    (
        BREAKER_STATE,
        "A channel's circuit breaker: 0 closed, 1 open, 2 half-open.",
    ),
    (RECONCILES, "Reconciles run."),
    (RECONCILE_ERRORS, "Reconciles that failed."),
    (
        AUDIT_FAILURES,
        "Audit records the controller could not hand to the audit client.",
    ),
    (UNREADABLE, "NotificationRequests that could not be read."),
];

/// Gives the controller's and the audit client's families their HELP text.
pub fn describe() {
    for (name, help) in DESCRIPTIONS {
        metrics::describe_counter!(*name, *help);
    }
    audit_client::metric_names::describe();
}

fn status_label(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::Success => "success",
        AttemptStatus::Failed => "failed",
        AttemptStatus::Timeout => "timeout",
        AttemptStatus::Invalid => "invalid",
    }
}

/// Counts one delivery attempt.
pub fn delivery(namespace: &str, a: &DeliveryAttempt) {
    let (ns, channel) = (namespace.to_string(), a.channel.as_str());
    metrics::counter!(DELIVERIES, "namespace" => ns.clone(), "status" => status_label(a.status), "channel" => channel)
        .increment(1);
    metrics::histogram!(DELIVERY_DURATION, "namespace" => ns.clone(), "channel" => channel)
        .record(a.duration_seconds);
    if a.attempt > 1 {
        metrics::counter!(RETRIES, "namespace" => ns, "channel" => channel).increment(1);
    }
}

/// Exports a channel's breaker state (0 closed, 1 open, 2 half-open).
pub fn breaker(channel: ChannelKind, state: BreakerState) {
    metrics::gauge!(BREAKER_STATE, "channel" => channel.as_str()).set(state.gauge_value());
}

/// How many notifications are in each phase, per namespace, as last seen by this process.
#[derive(Default)]
pub struct PhaseGauge {
    state: Mutex<PhaseCounts>,
}

#[derive(Default)]
struct PhaseCounts {
    seen: HashMap<(String, String), Phase>,
    counts: HashMap<(String, Phase), usize>,
}

impl PhaseGauge {
    /// Moves `namespace/name` to `phase` (None: forgotten, for deleted objects).
    pub fn set(&self, namespace: &str, name: &str, phase: Option<Phase>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let old = match phase {
            Some(p) => state.seen.insert(key, p),
            None => state.seen.remove(&key),
        };
        if old == phase {
            return;
        }
        for (p, delta) in [(old, -1i64), (phase, 1)] {
            let Some(p) = p else { continue };
            let n = state.counts.entry((namespace.to_string(), p)).or_default();
            *n = n.saturating_add_signed(delta as isize);
            metrics::gauge!(PHASE, "namespace" => namespace.to_string(), "phase" => p.as_str())
                .set(*n as f64);
        }
    }
}
