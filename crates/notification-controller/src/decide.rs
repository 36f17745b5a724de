//! The controller's decisions, with no I/O: what to do next with a notification, and what its
//! status becomes after a round of deliveries.
//!
//! Everything here is a function of the spec, the stored status and the time passed in, so the
//! reconciler can be replayed and property-tested without a cluster. The status is the only
//! memory: a delivery target with a recorded success is never delivered again, the next retry
//! time is derived from the last recorded attempt (so an early reconcile from a watch event
//! cannot shorten a backoff), and a notification with a final phase and a `completionTime` is
//! never touched again.
//!
//! A *target* is one recipient on one channel. Channels that address people (email, SMS, Slack,
//! Teams, webhook) get one target per recipient that has an address for them; console and file
//! have one target each, and Slack, Teams and webhook fall back to the configured default
//! destination when no recipient names one. A channel that addresses people but finds no address
//! still gets a target, whose delivery is refused as invalid, so the outcome is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::crd::{
    AttemptStatus, ChannelKind, Condition, DeliveryAttempt, NotificationRequestSpec,
    NotificationRequestStatus, Phase, RetryPolicy,
};

/// The recipient name of a target that goes to the channel's configured destination.
pub const DEFAULT_DESTINATION: &str = "default";
/// The recipient name of a target for which the spec gives no address.
pub const NO_ADDRESS: &str = "(none)";

/// One recipient on one channel: the unit of delivery, retry and outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub channel: ChannelKind,
    /// How the target is named in the status, the audit trail and the logs. For every channel
    /// but webhook, its address; for a webhook, the URL's origin (scheme, host, port: no
    /// userinfo, path, query or fragment, where secrets live), with ` #2`, ` #3`… for further
    /// URLs of one notification on the same origin.
    pub recipient: String,
    /// Where the delivery goes (for a webhook, the whole URL). Never written anywhere.
    pub address: String,
}

impl Target {
    /// A target whose name is its address.
    pub fn named(channel: ChannelKind, recipient: &str) -> Target {
        Target {
            channel,
            recipient: recipient.to_string(),
            address: recipient.to_string(),
        }
    }

    /// The endpoint a delivery to this target calls, as the circuit breakers key it: a
    /// webhook's own URL; for the other channels the one endpoint they are configured with.
    pub fn endpoint(&self) -> &str {
        match self.channel {
            ChannelKind::Webhook => &self.address,
            _ => "",
        }
    }

    /// Whether a recorded attempt was made to this target (by its name, or by its address as
    /// versions before webhook names were origins recorded it).
    fn made(&self, a: &DeliveryAttempt) -> bool {
        a.channel == self.channel && (a.recipient == self.recipient || a.recipient == self.address)
    }
}

/// The origin of a webhook URL (`https://host:port`), or a fixed name for one that does not
/// parse (its delivery is refused as invalid).
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.has_host() => u.origin().ascii_serialization(),
        _ => "(invalid URL)".to_string(),
    }
}

/// The delivery targets of a spec, in a stable order, without duplicates.
pub fn targets(spec: &NotificationRequestSpec) -> Vec<Target> {
    let mut out = BTreeSet::new();
    for &channel in &spec.channels {
        let addresses: Vec<&str> = spec
            .recipients
            .iter()
            .filter_map(|r| match channel {
                ChannelKind::Email => r.email.as_deref(),
                ChannelKind::Slack => r.slack.as_deref(),
                ChannelKind::Teams => r.teams.as_deref(),
                ChannelKind::Sms => r.phone.as_deref(),
                ChannelKind::Webhook => r.webhook_url.as_deref(),
                ChannelKind::Console | ChannelKind::File => None,
            })
            .collect();
        let fallback = match channel {
            ChannelKind::Console => "console",
            ChannelKind::File => "file",
            ChannelKind::Slack | ChannelKind::Teams | ChannelKind::Webhook => DEFAULT_DESTINATION,
            ChannelKind::Email | ChannelKind::Sms => NO_ADDRESS,
        };
        if addresses.is_empty() {
            out.insert(Target::named(channel, fallback));
        }
        let mut seen = BTreeSet::new();
        let mut per_origin: BTreeMap<String, usize> = BTreeMap::new();
        for a in addresses {
            if !seen.insert(a) {
                continue;
            }
            if channel != ChannelKind::Webhook {
                out.insert(Target::named(channel, a));
                continue;
            }
            let origin = origin(a);
            let n = per_origin.entry(origin.clone()).or_insert(0);
            *n += 1;
            let recipient = match *n {
                1 => origin,
                n => format!("{origin} #{n}"),
            };
            out.insert(Target {
                channel,
                recipient,
                address: a.to_string(),
            });
        }
    }
    out.into_iter().collect()
}

/// The target of `states` that `a` was made to.
fn target_of<'s, V>(states: &'s mut BTreeMap<Target, V>, a: &DeliveryAttempt) -> Option<&'s mut V> {
    states.iter_mut().find_map(|(t, v)| t.made(a).then_some(v))
}

/// What the stored attempts say about one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetState {
    pub attempts: u32,
    pub succeeded: Option<DeliveryAttempt>,
    pub last: Option<DeliveryAttempt>,
}

impl TargetState {
    /// Delivered, or out of attempts, or refused as invalid.
    pub fn is_resolved(&self, policy: &RetryPolicy) -> bool {
        self.succeeded.is_some() || self.is_exhausted(policy)
    }

    /// Not delivered and never will be.
    pub fn is_exhausted(&self, policy: &RetryPolicy) -> bool {
        self.succeeded.is_none()
            && (self.attempts >= policy.max_attempts
                || self
                    .last
                    .as_ref()
                    .is_some_and(|a| a.status == AttemptStatus::Invalid))
    }
}

/// The state of every target of `spec` according to `status`.
pub fn target_states(
    spec: &NotificationRequestSpec,
    status: &NotificationRequestStatus,
) -> BTreeMap<Target, TargetState> {
    let mut states: BTreeMap<Target, TargetState> = targets(spec)
        .into_iter()
        .map(|t| {
            (
                t,
                TargetState {
                    attempts: 0,
                    succeeded: None,
                    last: None,
                },
            )
        })
        .collect();
    for a in &status.delivery_attempts {
        if let Some(s) = target_of(&mut states, a) {
            s.attempts += 1;
            if a.status == AttemptStatus::Success && s.succeeded.is_none() {
                s.succeeded = Some(a.clone());
            }
            s.last = Some(a.clone());
        }
    }
    states
}

/// The wait after the `failures`-th failed attempt: `initial × multiplier^(failures-1)`, capped
/// at the maximum, with a ±10 % jitter that is fixed for a given notification, target and
/// attempt (so every reconcile computes the same retry time).
pub fn backoff(policy: &RetryPolicy, failures: u32, jitter_seed: &str) -> Duration {
    let exp = failures.saturating_sub(1).min(32);
    let base = f64::from(policy.initial_backoff_seconds)
        * f64::from(policy.backoff_multiplier).powi(exp as i32);
    let max = f64::from(policy.max_backoff_seconds);
    let jittered = base.min(max) * (1.0 + jitter(jitter_seed));
    Duration::from_secs_f64(jittered.clamp(0.0, max))
}

/// A deterministic value in [-0.1, 0.1] derived from `seed`.
fn jitter(seed: &str) -> f64 {
    let digest = Sha256::digest(seed.as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n as f64 / u64::MAX as f64) * 0.2 - 0.1
}

/// When `target` may be attempted next (None: never again).
pub fn next_attempt_at(
    uid: &str,
    target: &Target,
    state: &TargetState,
    policy: &RetryPolicy,
) -> Option<DateTime<Utc>> {
    if state.is_resolved(policy) {
        return None;
    }
    match &state.last {
        None => Some(DateTime::<Utc>::MIN_UTC),
        Some(last) => {
            let seed = format!(
                "{uid}/{}/{}/{}",
                target.channel, target.recipient, state.attempts
            );
            let wait = backoff(policy, state.attempts, &seed);
            Some(last.timestamp + chrono::Duration::from_std(wait).unwrap_or_default())
        }
    }
}

/// What a reconcile does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The notification is finished; nothing to do, ever.
    Done,
    /// Write this status (a phase change that needs no delivery first).
    Write(NotificationRequestStatus),
    /// Deliver to these targets now, then [`apply_attempts`].
    Deliver(Vec<Target>),
    /// Nothing is due; look again after this long.
    Wait(Duration),
}

/// A notification as the decision logic needs it.
pub struct View<'a> {
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a NotificationRequestSpec,
    pub status: &'a NotificationRequestStatus,
}

/// Decides the next step. `blocked_until` says until when the circuit breaker of a target's
/// endpoint refuses deliveries (None: the target may be tried now).
pub fn next_step(
    view: &View<'_>,
    now: DateTime<Utc>,
    blocked_until: &dyn Fn(&Target) -> Option<DateTime<Utc>>,
) -> Step {
    let status = view.status;
    if status.completion_time.is_some() && status.phase.is_some_and(Phase::is_final) {
        return Step::Done;
    }
    match status.phase {
        None => {
            let mut next = status.clone();
            next.phase = Some(Phase::Pending);
            next.queued_at = Some(now);
            next.observed_generation = view.generation;
            set_condition(
                &mut next,
                "Ready",
                "False",
                "Queued",
                "waiting to be sent",
                now,
            );
            return Step::Write(next);
        }
        Some(Phase::Pending) => {
            let mut next = status.clone();
            next.phase = Some(Phase::Sending);
            next.processing_started_at = Some(now);
            set_condition(&mut next, "Ready", "False", "Sending", "delivering", now);
            return Step::Write(next);
        }
        _ => {}
    }
    let policy = &view.spec.retry_policy;
    let states = target_states(view.spec, status);
    if states.values().all(|s| s.is_resolved(policy)) {
        return Step::Write(settle(view.spec, status, now));
    }
    let mut due = Vec::new();
    let mut earliest: Option<DateTime<Utc>> = None;
    for (target, state) in &states {
        let Some(at) = next_attempt_at(view.uid, target, state, policy) else {
            continue;
        };
        let at = match blocked_until(target) {
            Some(open_until) if open_until > at.max(now) => open_until,
            _ => at,
        };
        if at <= now {
            due.push(target.clone());
        } else {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    if !due.is_empty() {
        return Step::Deliver(due);
    }
    let wait = earliest
        .map(|at| (at - now).to_std().unwrap_or_default())
        .unwrap_or_default();
    Step::Wait(wait.max(Duration::from_millis(100)))
}

/// The status after a round of attempts: attempts appended (numbered per target), counters
/// recomputed, and the phase that follows (final with `completionTime` when every target is
/// resolved). Attempts to targets that are already resolved in `status` are ignored, so applying
/// the same round to a status that already holds it changes nothing it should not.
pub fn apply_attempts(
    spec: &NotificationRequestSpec,
    status: &NotificationRequestStatus,
    attempts: &[DeliveryAttempt],
    now: DateTime<Utc>,
) -> NotificationRequestStatus {
    let policy = &spec.retry_policy;
    let mut states = target_states(spec, status);
    let mut next = status.clone();
    for a in attempts {
        let Some(state) = target_of(&mut states, a) else {
            continue;
        };
        if state.is_resolved(policy) {
            continue;
        }
        let mut a = a.clone();
        a.attempt = state.attempts + 1;
        state.attempts += 1;
        if a.status == AttemptStatus::Success {
            state.succeeded = Some(a.clone());
        }
        state.last = Some(a.clone());
        next.delivery_attempts.push(a);
    }
    count(spec, &mut next);
    if states.values().all(|s| s.is_resolved(policy)) {
        return settle(spec, &next, now);
    }
    let any_failed = next
        .delivery_attempts
        .iter()
        .any(|a| a.status != AttemptStatus::Success);
    if any_failed && next.phase != Some(Phase::Retrying) {
        next.phase = Some(Phase::Retrying);
        set_condition(
            &mut next,
            "Ready",
            "False",
            "Retrying",
            "some deliveries failed and will be retried",
            now,
        );
    }
    next
}

fn count(spec: &NotificationRequestSpec, status: &mut NotificationRequestStatus) {
    let states = target_states(spec, status);
    let policy = &spec.retry_policy;
    status.total_attempts = status.delivery_attempts.len() as u32;
    status.successful_deliveries = states.values().filter(|s| s.succeeded.is_some()).count() as u32;
    status.failed_deliveries = states.values().filter(|s| s.is_exhausted(policy)).count() as u32;
}

/// The final status once every target is resolved.
fn settle(
    spec: &NotificationRequestSpec,
    status: &NotificationRequestStatus,
    now: DateTime<Utc>,
) -> NotificationRequestStatus {
    let mut next = status.clone();
    count(spec, &mut next);
    let (phase, reason, message) = match (next.successful_deliveries, next.failed_deliveries) {
        (_, 0) => (
            Phase::Sent,
            "AllDelivered",
            "every delivery succeeded".to_string(),
        ),
        (0, _) => (
            Phase::Failed,
            "AllFailed",
            "no delivery succeeded".to_string(),
        ),
        (ok, failed) => (
            Phase::PartiallySent,
            "PartiallyDelivered",
            format!("{ok} deliveries succeeded, {failed} failed"),
        ),
    };
    next.phase = Some(phase);
    next.completion_time = Some(now);
    next.reason = Some(reason.to_string());
    next.message = Some(message.clone());
    let ready = if phase == Phase::Failed {
        "False"
    } else {
        "True"
    };
    set_condition(&mut next, "Ready", ready, reason, &message, now);
    next
}

fn set_condition(
    status: &mut NotificationRequestStatus,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let generation = status.observed_generation;
    match status.conditions.iter_mut().find(|c| c.kind == kind) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
            }
            c.status = value.to_string();
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
        }
        None => status.conditions.push(Condition {
            kind: kind.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
            observed_generation: generation,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Recipient;

    fn spec(channels: &[ChannelKind], recipients: Vec<Recipient>) -> NotificationRequestSpec {
        serde_json::from_value(serde_json::json!({
            "type": "escalation",
            "recipients": recipients,
            "subject": "s",
            "body": "b",
            "channels": channels,
        }))
        .unwrap()
    }

    #[test]
    fn targets_follow_the_recipients_addresses() {
        let s = spec(
            &[
                ChannelKind::Email,
                ChannelKind::Slack,
                ChannelKind::Sms,
                ChannelKind::Console,
            ],
            vec![
                Recipient {
                    email: Some("a@example.com".into()),
                    ..Default::default()
                },
                Recipient {
                    email: Some("b@example.com".into()),
                    slack: Some("#ops".into()),
                    ..Default::default()
                },
            ],
        );
        let got = targets(&s);
        let got: Vec<(ChannelKind, &str)> = got
            .iter()
            .map(|t| (t.channel, t.recipient.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (ChannelKind::Email, "a@example.com"),
                (ChannelKind::Email, "b@example.com"),
                (ChannelKind::Slack, "#ops"),
                (ChannelKind::Sms, NO_ADDRESS),
                (ChannelKind::Console, "console"),
            ]
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_ten_percent() {
        let policy = RetryPolicy::default(); // 30 s × 2^n, max 480 s
        for (failures, base) in [(1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (5, 480.0)] {
            for seed in ["a", "b", "c", "d"] {
                let d = backoff(&policy, failures, seed).as_secs_f64();
                assert!(d >= base * 0.9 - 1e-9 && d <= (base * 1.1).min(480.0) + 1e-9);
            }
        }
        assert!(backoff(&policy, 9, "x").as_secs_f64() <= 480.0);
        assert_eq!(backoff(&policy, 3, "same"), backoff(&policy, 3, "same"));
        assert_ne!(backoff(&policy, 3, "one"), backoff(&policy, 3, "two"));
    }
}
