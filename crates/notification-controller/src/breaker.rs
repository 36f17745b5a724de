//! Circuit breakers, one per endpoint a delivery calls.
//!
//! When an endpoint fails again and again (Slack down, SMTP relay refusing, one recipient's
//! webhook dead), every notification waiting on it would otherwise spend its attempts and its
//! reconcile time on a call that will fail. After `threshold` consecutive retryable failures the
//! endpoint's breaker opens: deliveries to it are not attempted (and use up no attempt) until the
//! cool-down has passed; then one trial delivery is let through (half-open), whose result closes
//! the breaker or opens it again. Refusals of invalid input say nothing about the endpoint's
//! health and are not counted.
//!
//! An endpoint is a channel and, for webhooks, the recipient's URL ([`Target::endpoint`]): Slack,
//! Teams, email and SMS each call one configured endpoint, whatever the recipient, but every
//! webhook recipient has its own, so one dead webhook holds back only the deliveries to it.
//!
//! The state lives in memory, shared by all reconciles of the process; a restarted controller
//! starts with closed breakers, which at worst costs one round of failing calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crd::ChannelKind;
use crate::decide::Target;

/// What a breaker is kept for: a channel and its endpoint (see [`Target::endpoint`]).
type Endpoint = (ChannelKind, String);

fn endpoint(target: &Target) -> Endpoint {
    (target.channel, target.endpoint().to_string())
}

/// A breaker's state, as exported in the `notification_circuit_breaker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries go through; `failures` consecutive failures so far.
    Closed { failures: u32 },
    /// Deliveries are refused until `until`.
    Open { until: DateTime<Utc> },
    /// One trial delivery is (or may be) in flight.
    HalfOpen { trial_in_flight: bool },
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed { .. } => 0.0,
            BreakerState::Open { .. } => 1.0,
            BreakerState::HalfOpen { .. } => 2.0,
        }
    }
}

/// The circuit breakers of all endpoints.
pub struct CircuitBreakers {
    threshold: u32,
    cooldown: chrono::Duration,
    states: Mutex<HashMap<Endpoint, BreakerState>>,
}

impl CircuitBreakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreakers {
            threshold: threshold.max(1),
            cooldown: chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::MAX),
            states: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Endpoint, BreakerState>) -> R) -> R {
        // A panic while holding this lock leaves plain data behind; keep using it.
        let mut guard = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The state of the breaker of `target`'s endpoint.
    pub fn state(&self, target: &Target) -> BreakerState {
        self.with(|s| {
            *s.get(&endpoint(target))
                .unwrap_or(&BreakerState::Closed { failures: 0 })
        })
    }

    /// The state a channel's gauge shows: open when any of its endpoints is open, else
    /// half-open when any is, else closed.
    pub fn channel_state(&self, channel: ChannelKind) -> BreakerState {
        self.with(|s| {
            let mut shown = BreakerState::Closed { failures: 0 };
            for state in s
                .iter()
                .filter(|((c, _), _)| *c == channel)
                .map(|(_, v)| *v)
            {
                match (state, shown) {
                    (BreakerState::Open { .. }, _) => return state,
                    (BreakerState::HalfOpen { .. }, BreakerState::Closed { .. }) => shown = state,
                    _ => {}
                }
            }
            shown
        })
    }

    /// Until when `target`'s endpoint refuses deliveries, looking only (no trial is reserved).
    pub fn blocked_until(&self, target: &Target, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.state(target) {
            BreakerState::Open { until } if until > now => Some(until),
            BreakerState::HalfOpen {
                trial_in_flight: true,
            } => Some(now + self.cooldown),
            _ => None,
        }
    }

    /// Asks to deliver to `target` now. A half-open breaker lets exactly one caller through.
    pub fn try_acquire(&self, target: &Target, now: DateTime<Utc>) -> bool {
        self.with(|s| {
            let state = s
                .entry(endpoint(target))
                .or_insert(BreakerState::Closed { failures: 0 });
            match *state {
                BreakerState::Closed { .. } => true,
                BreakerState::Open { until } if until <= now => {
                    *state = BreakerState::HalfOpen {
                        trial_in_flight: true,
                    };
                    true
                }
                BreakerState::Open { .. } => false,
                BreakerState::HalfOpen { trial_in_flight } => {
                    *state = BreakerState::HalfOpen {
                        trial_in_flight: true,
                    };
                    !trial_in_flight
                }
            }
        })
    }

    /// Records the result of a delivery that [`try_acquire`](Self::try_acquire) let through.
    /// `healthy` is false for failures that count against the endpoint.
    pub fn record(&self, target: &Target, healthy: bool, now: DateTime<Utc>) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        self.with(|s| {
            let state = s
                .entry(endpoint(target))
                .or_insert(BreakerState::Closed { failures: 0 });
            *state = match (*state, healthy) {
                (_, true) => BreakerState::Closed { failures: 0 },
                (BreakerState::Closed { failures }, false) if failures + 1 < threshold => {
                    BreakerState::Closed {
                        failures: failures + 1,
                    }
                }
                (_, false) => BreakerState::Open {
                    until: now + cooldown,
                },
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let b = CircuitBreakers::new(3, Duration::from_secs(60));
        let t0 = Utc::now();
        let slack = &Target::named(ChannelKind::Slack, "#ops");
        for _ in 0..2 {
            assert!(b.try_acquire(slack, t0));
            b.record(slack, false, t0);
        }
        assert_eq!(b.state(slack), BreakerState::Closed { failures: 2 });
        assert!(b.try_acquire(slack, t0));
        b.record(slack, false, t0);
        let until = t0 + chrono::Duration::seconds(60);
        assert_eq!(b.state(slack), BreakerState::Open { until });
        assert_eq!(b.blocked_until(slack, t0), Some(until));
        assert!(!b.try_acquire(slack, t0 + chrono::Duration::seconds(59)));
        // Other channels are unaffected, and so are other recipients of the same endpoint.
        assert!(b.try_acquire(&Target::named(ChannelKind::Email, "a@example.com"), t0));
        assert!(!b.try_acquire(&Target::named(ChannelKind::Slack, "#other"), t0));
        assert_eq!(
            b.channel_state(ChannelKind::Slack),
            BreakerState::Open { until }
        );

        // After the cool-down: one trial, the next caller waits for its result.
        assert!(b.try_acquire(slack, until));
        assert!(!b.try_acquire(slack, until));
        b.record(slack, false, until);
        assert_eq!(
            b.state(slack),
            BreakerState::Open {
                until: until + chrono::Duration::seconds(60)
            }
        );
        let later = until + chrono::Duration::seconds(60);
        assert!(b.try_acquire(slack, later));
        b.record(slack, true, later);
        assert_eq!(b.state(slack), BreakerState::Closed { failures: 0 });
        assert_eq!(b.blocked_until(slack, later), None);
    }

    #[test]
    fn every_webhook_url_has_a_breaker_of_its_own() {
        let b = CircuitBreakers::new(2, Duration::from_secs(60));
        let t0 = Utc::now();
        let webhook = |url: &str| Target {
            channel: ChannelKind::Webhook,
            recipient: "https://hooks.example.com".into(),
            address: url.into(),
        };
        let (dead, alive) = (
            webhook("https://hooks.example.com/a"),
            webhook("https://hooks.example.com/b"),
        );
        for _ in 0..2 {
            assert!(b.try_acquire(&dead, t0));
            b.record(&dead, false, t0);
        }
        assert!(matches!(b.state(&dead), BreakerState::Open { .. }));
        assert!(b.blocked_until(&dead, t0).is_some());
        assert_eq!(b.state(&alive), BreakerState::Closed { failures: 0 });
        assert_eq!(b.blocked_until(&alive, t0), None);
        assert!(b.try_acquire(&alive, t0));
        assert!(matches!(
            b.channel_state(ChannelKind::Webhook),
            BreakerState::Open { .. }
        ));
    }
}
