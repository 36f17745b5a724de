//! Per-channel circuit breakers.
//!
//! When a provider fails again and again (Slack down, SMTP relay refusing), every notification
//! waiting on it would otherwise spend its attempts and its reconcile time on a call that will
//! fail. After `threshold` consecutive retryable failures a channel's breaker opens: deliveries on
//! it are not attempted (and use up no attempt) until the cool-down has passed; then one trial
//! delivery is let through (half-open), whose result closes the breaker or opens it again.
//! Refusals of invalid input say nothing about the provider's health and are not counted.
//!
//! The state lives in memory, shared by all reconciles of the process; a restarted controller
//! starts with closed breakers, which at worst costs one round of failing calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crd::ChannelKind;

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

/// The circuit breakers of all channels.
pub struct CircuitBreakers {
    threshold: u32,
    cooldown: chrono::Duration,
    states: Mutex<HashMap<ChannelKind, BreakerState>>,
}

impl CircuitBreakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreakers {
            threshold: threshold.max(1),
            cooldown: chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::MAX),
            states: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ChannelKind, BreakerState>) -> R) -> R {
        // A panic while holding this lock leaves plain data behind; keep using it.
        let mut guard = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The state of `channel`.
    pub fn state(&self, channel: ChannelKind) -> BreakerState {
        self.with(|s| {
            *s.get(&channel)
                .unwrap_or(&BreakerState::Closed { failures: 0 })
        })
    }

    /// Until when `channel` refuses deliveries, looking only (no trial is reserved).
    pub fn blocked_until(&self, channel: ChannelKind, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.state(channel) {
            BreakerState::Open { until } if until > now => Some(until),
            BreakerState::HalfOpen {
                trial_in_flight: true,
            } => Some(now + self.cooldown),
            _ => None,
        }
    }

    /// Asks to deliver on `channel` now. A half-open breaker lets exactly one caller through.
    pub fn try_acquire(&self, channel: ChannelKind, now: DateTime<Utc>) -> bool {
        self.with(|s| {
            let state = s
                .entry(channel)
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
    /// `healthy` is false for failures that count against the provider.
    pub fn record(&self, channel: ChannelKind, healthy: bool, now: DateTime<Utc>) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        self.with(|s| {
            let state = s
                .entry(channel)
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
        let slack = ChannelKind::Slack;
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
        // Other channels are unaffected.
        assert!(b.try_acquire(ChannelKind::Email, t0));

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
}
