//! Rate limits: a token bucket per principal (events per second, with a burst) and one per
//! client address, checked before the request's credential is (so a flood of bad tokens costs
//! no review). Over a limit: 429 with `Retry-After`; the client library waits that long and
//! sends again, so nothing is dropped.
//!
//! A write counts its events: one for a single event or record, and a batch's items after it is
//! read. Reads count one. Without authentication every caller is `anonymous`, so the principal's
//! bucket is kept per address instead.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// A rate and its burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// Over the limit: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: Duration,
}

/// The buckets of a running service.
pub struct RateLimits {
    principals: Option<(DefaultKeyedRateLimiter<String>, NonZeroU32)>,
    addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(principal: Option<Rate>, address: Option<Rate>) -> RateLimits {
        RateLimits {
            principals: principal.map(|r| (DefaultKeyedRateLimiter::keyed(r.quota()), r.burst)),
            addresses: address.map(|r| DefaultKeyedRateLimiter::keyed(r.quota())),
            clock: DefaultClock::default(),
        }
    }

    /// No limits.
    pub fn none() -> RateLimits {
        RateLimits::new(None, None)
    }

    /// One request from `address`, before its credential is looked at.
    pub fn address(&self, address: IpAddr) -> Result<(), Exceeded> {
        let Some(limiter) = &self.addresses else {
            return Ok(());
        };
        limiter
            .check_key(&address)
            .map_err(|not_until| self.exceeded(not_until.wait_time_from(self.clock.now())))
    }

    /// `events` units for `principal` (for `anonymous`: per address). A batch of more events
    /// than the burst takes the whole burst: it waits for a full bucket rather than never
    /// passing.
    pub fn principal(
        &self,
        principal: &str,
        address: Option<IpAddr>,
        events: u32,
    ) -> Result<(), Exceeded> {
        let Some((limiter, burst)) = &self.principals else {
            return Ok(());
        };
        let Some(n) = NonZeroU32::new(events) else {
            return Ok(());
        };
        let n = n.min(*burst);
        let key = match address {
            Some(ip) if principal == super::ANONYMOUS => format!("{principal}@{ip}"),
            _ => principal.to_string(),
        };
        match limiter.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(self.exceeded(not_until.wait_time_from(self.clock.now()))),
            // Not reached: `n` is at most the burst.
            Err(_) => Err(self.exceeded(Duration::from_secs(1))),
        }
    }

    fn exceeded(&self, wait: Duration) -> Exceeded {
        metrics::counter!(crate::metrics::RATE_LIMITED).increment(1);
        Exceeded { retry_after: wait }
    }

    /// Forgets the buckets that are full again (run now and then: the keys are unbounded).
    pub fn forget_idle(&self) {
        if let Some((l, _)) = &self.principals {
            l.retain_recent();
        }
        if let Some(l) = &self.addresses {
            l.retain_recent();
        }
    }
}

/// Whole seconds to wait, at least one (`Retry-After` takes seconds).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Option<Rate> {
        Some(Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn a_principal_gets_its_burst_then_waits() {
        let limits = RateLimits::new(rate(1, 3), None);
        for _ in 0..3 {
            limits.principal("nc", None, 1).unwrap();
        }
        let over = limits.principal("nc", None, 1).unwrap_err();
        assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_secs(1));
        assert_eq!(retry_after_seconds(over.retry_after), 1);
        // Another principal has its own bucket.
        limits.principal("gateway", None, 3).unwrap();
        // A batch larger than the burst takes a full bucket.
        limits.principal("ops", None, 40).unwrap();
        assert!(limits.principal("ops", None, 1).is_err());
    }

    #[test]
    fn anonymous_callers_are_counted_per_address() {
        let limits = RateLimits::new(rate(1, 1), rate(1, 2));
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        limits
            .principal(crate::auth::ANONYMOUS, Some(a), 1)
            .unwrap();
        limits
            .principal(crate::auth::ANONYMOUS, Some(b), 1)
            .unwrap();
        assert!(limits
            .principal(crate::auth::ANONYMOUS, Some(a), 1)
            .is_err());
        limits.address(a).unwrap();
        limits.address(a).unwrap();
        assert!(limits.address(a).is_err());
        limits.address(b).unwrap();
        assert!(RateLimits::none().address(a).is_ok());
    }
}
