//! Property tests of the decision logic: a driver plays the reconciler's part against
//! [`decide`] with scripted delivery results and a clock that sometimes jumps to the next retry
//! and sometimes wakes early (as a watch event would), and checks the invariants the controller
//! promises.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use notification_controller::audit::{intents, AuditIntent};
use notification_controller::crd::{
    AttemptStatus, ChannelKind, DeliveryAttempt, NotificationRequestSpec,
    NotificationRequestStatus, Phase, Recipient, RetryPolicy,
};
use notification_controller::decide::{
    apply_attempts, next_attempt_at, next_step, target_states, targets, Step, Target, View,
};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = AttemptStatus> {
    prop_oneof![
        4 => Just(AttemptStatus::Success),
        4 => Just(AttemptStatus::Failed),
        1 => Just(AttemptStatus::Timeout),
        1 => Just(AttemptStatus::Invalid),
    ]
}

fn spec_strategy() -> impl Strategy<Value = NotificationRequestSpec> {
    let channels = proptest::sample::subsequence(ChannelKind::ALL.to_vec(), 1..=4);
    let emails = 1usize..=3;
    let policy =
        (1u32..=5, 1u32..=20, 1u32..=3, 60u32..=120).prop_map(|(a, i, m, x)| RetryPolicy {
            max_attempts: a,
            initial_backoff_seconds: i,
            backoff_multiplier: m,
            max_backoff_seconds: x,
        });
    (channels, emails, policy).prop_map(|(channels, emails, retry_policy)| {
        let recipients = (0..emails)
            .map(|i| Recipient {
                email: Some(format!("r{i}@example.com")),
                slack: (i == 0).then(|| "#ops".to_string()),
                phone: (i == 0).then(|| "+15551230000".to_string()),
                ..Recipient::default()
            })
            .collect();
        NotificationRequestSpec {
            kind: notification_controller::crd::NotificationType::Escalation,
            priority: Default::default(),
            recipients,
            subject: "disk full".into(),
            body: "node-1".into(),
            channels,
            metadata: BTreeMap::new(),
            action_links: vec![],
            retry_policy,
            retention_days: 7,
        }
    })
}

/// What should happen to a target whose deliveries answer `script` in turn.
fn expected_success(script: &[AttemptStatus], max_attempts: u32) -> bool {
    for s in script.iter().take(max_attempts as usize) {
        match s {
            AttemptStatus::Success => return true,
            AttemptStatus::Invalid => return false,
            _ => {}
        }
    }
    false
}

struct Run {
    history: Vec<NotificationRequestStatus>,
    intents: Vec<AuditIntent>,
    delivered: HashMap<Target, Vec<AttemptStatus>>,
    end: DateTime<Utc>,
}

fn drive(
    spec: &NotificationRequestSpec,
    scripts: &HashMap<Target, Vec<AttemptStatus>>,
    early_wakeups: &[bool],
) -> Run {
    let uid = "0c2b6d3e-uid";
    let mut now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let mut status = NotificationRequestStatus::default();
    let mut run = Run {
        history: vec![status.clone()],
        intents: vec![],
        delivered: HashMap::new(),
        end: now,
    };
    let no_breaker = |_: &Target| None;
    for i in 0..1000 {
        let view = View {
            uid,
            generation: Some(1),
            spec,
            status: &status,
        };
        match next_step(&view, now, &no_breaker) {
            Step::Done => break,
            Step::Write(next) => {
                run.intents.extend(intents(spec, &status, &next, now));
                status = next;
                run.history.push(status.clone());
            }
            Step::Deliver(due) => {
                let states = target_states(spec, &status);
                let mut attempts = vec![];
                for t in due {
                    let state = &states[&t];
                    assert!(
                        state.succeeded.is_none(),
                        "{t:?} delivered again after success"
                    );
                    assert!(next_attempt_at(uid, &t, state, &spec.retry_policy)
                        .is_some_and(|at| at <= now));
                    if let Some(last) = &state.last {
                        // Independently of the code under test: at least 90 % of the capped
                        // exponential backoff has passed since the last attempt.
                        let p = &spec.retry_policy;
                        let base = f64::from(p.initial_backoff_seconds)
                            * f64::from(p.backoff_multiplier).powi(state.attempts as i32 - 1);
                        let min_wait = base.min(f64::from(p.max_backoff_seconds)) * 0.9;
                        let waited = (now - last.timestamp).as_seconds_f64();
                        assert!(
                            waited >= min_wait - 1e-6,
                            "{t:?} retried after {waited}s < {min_wait}s"
                        );
                    }
                    let done = run.delivered.entry(t.clone()).or_default();
                    let result = scripts
                        .get(&t)
                        .and_then(|s| s.get(done.len()).copied())
                        .unwrap_or(AttemptStatus::Success);
                    done.push(result);
                    attempts.push(DeliveryAttempt {
                        channel: t.channel,
                        recipient: t.recipient.clone(),
                        attempt: 0,
                        timestamp: now,
                        status: result,
                        error: (result != AttemptStatus::Success).then(|| "boom".into()),
                        provider_response: None,
                        duration_seconds: 0.01,
                    });
                }
                let next = apply_attempts(spec, &status, &attempts, now);
                run.intents.extend(intents(spec, &status, &next, now));
                status = next;
                run.history.push(status.clone());
            }
            Step::Wait(wait) => {
                let early = early_wakeups.get(i % early_wakeups.len().max(1)) == Some(&true);
                let step = if early { wait / 3 } else { wait };
                now += ChronoDuration::from_std(step).unwrap() + ChronoDuration::milliseconds(1);
            }
        }
    }
    run.end = now;
    run
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_results_end_in_the_right_final_phase(
        spec in spec_strategy(),
        raw_scripts in proptest::collection::vec(proptest::collection::vec(outcome(), 0..8), 12),
        early_wakeups in proptest::collection::vec(any::<bool>(), 1..6),
    ) {
        let all = targets(&spec);
        let scripts: HashMap<Target, Vec<AttemptStatus>> = all
            .iter()
            .cloned()
            .zip(raw_scripts.into_iter())
            .collect();
        let run = drive(&spec, &scripts, &early_wakeups);
        let last = run.history.last().unwrap();
        let max = spec.retry_policy.max_attempts;

        // Every target was tried at most max_attempts times and its outcome is the script's.
        let mut successes = 0;
        for t in &all {
            let tried = run.delivered.get(t).map_or(0, Vec::len) as u32;
            prop_assert!(tried >= 1 && tried <= max, "{t:?} tried {tried} times, max {max}");
            let script = scripts.get(t).cloned().unwrap_or_default();
            let padded: Vec<AttemptStatus> = script
                .iter()
                .copied()
                .chain(std::iter::repeat(AttemptStatus::Success))
                .take(max as usize)
                .collect();
            if expected_success(&padded, max) {
                successes += 1;
            }
        }
        let expected = match (successes, all.len()) {
            (s, n) if s == n => Phase::Sent,
            (0, _) => Phase::Failed,
            _ => Phase::PartiallySent,
        };
        prop_assert_eq!(last.phase, Some(expected));
        prop_assert!(last.completion_time.is_some());
        prop_assert_eq!(last.successful_deliveries as usize, successes);
        prop_assert_eq!(last.failed_deliveries as usize, all.len() - successes);
        prop_assert_eq!(last.total_attempts as usize, last.delivery_attempts.len());

        // Exactly one phase-transition record per phase change, in order.
        let changes: Vec<(Option<Phase>, Phase)> = run
            .history
            .windows(2)
            .filter(|w| w[0].phase != w[1].phase)
            .map(|w| (w[0].phase, w[1].phase.unwrap()))
            .collect();
        let audited: Vec<(Option<Phase>, Phase)> = run
            .intents
            .iter()
            .filter_map(|i| match i {
                AuditIntent::PhaseTransition { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        prop_assert_eq!(audited, changes);

        // One attempt record per attempt, one outcome record per target.
        let attempts = run.intents.iter().filter(|i| matches!(i, AuditIntent::Attempt(_))).count();
        prop_assert_eq!(attempts, last.delivery_attempts.len());
        let mut outcomes: Vec<&Target> = run
            .intents
            .iter()
            .filter_map(|i| match i {
                AuditIntent::Outcome { target, .. } => Some(target),
                _ => None,
            })
            .collect();
        outcomes.sort();
        prop_assert_eq!(outcomes, all.iter().collect::<Vec<_>>());

        // Finished is finished: later reconciles do nothing and record nothing.
        for later in [0i64, 1, 3600, 86_400 * 30] {
            let view = View { uid: "0c2b6d3e-uid", generation: Some(1), spec: &spec, status: last };
            let at = run.end + ChronoDuration::seconds(later);
            prop_assert_eq!(next_step(&view, at, &|_| None), Step::Done);
            prop_assert!(intents(&spec, last, last, at).is_empty());
        }
    }

    /// A reconcile that changes nothing records nothing, whatever the status.
    #[test]
    fn no_op_reconciles_record_nothing(
        spec in spec_strategy(),
        raw_scripts in proptest::collection::vec(proptest::collection::vec(outcome(), 0..8), 12),
    ) {
        let scripts: HashMap<Target, Vec<AttemptStatus>> =
            targets(&spec).into_iter().zip(raw_scripts.into_iter()).collect();
        let run = drive(&spec, &scripts, &[true, false]);
        let now = run.end;
        for status in &run.history {
            prop_assert!(intents(&spec, status, status, now).is_empty());
        }
    }
}

#[test]
fn a_breaker_holds_deliveries_back_without_spending_attempts() {
    let spec: NotificationRequestSpec = serde_json::from_value(serde_json::json!({
        "type": "simple",
        "recipients": [{"slack": "#ops"}],
        "subject": "s", "body": "b", "channels": ["slack", "console"],
    }))
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let status = NotificationRequestStatus {
        phase: Some(Phase::Sending),
        ..Default::default()
    };
    let view = View {
        uid: "u",
        generation: Some(1),
        spec: &spec,
        status: &status,
    };
    let open_until = now + ChronoDuration::seconds(30);
    let blocked = |t: &Target| (t.channel == ChannelKind::Slack).then_some(open_until);
    match next_step(&view, now, &blocked) {
        Step::Deliver(due) => assert_eq!(due, vec![Target::named(ChannelKind::Console, "console")]),
        other => panic!("expected console only, got {other:?}"),
    }
    let after = apply_attempts(
        &spec,
        &status,
        &[DeliveryAttempt {
            channel: ChannelKind::Console,
            recipient: "console".into(),
            attempt: 0,
            timestamp: now,
            status: AttemptStatus::Success,
            error: None,
            provider_response: Some("written to stdout".into()),
            duration_seconds: 0.0,
        }],
        now,
    );
    let view = View {
        uid: "u",
        generation: Some(1),
        spec: &spec,
        status: &after,
    };
    assert_eq!(
        next_step(&view, now, &blocked),
        Step::Wait(std::time::Duration::from_secs(30))
    );
    assert_eq!(after.total_attempts, 1);
}
