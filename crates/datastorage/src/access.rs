//! The access trail: what an auditor needs to see of who used the log, written into the log
//! itself as `datastorage.access.*` events (through the ingest queue, so a database outage parks
//! them in the dead-letter queue like any event).
//!
//! * Every export, chain check and DLQ administration (replay, retry) is one event, written
//!   before the action: who, from where, which selection. (Legal holds have their own
//!   `datastorage.legal_hold.*` events.)
//! * Refusals (401, 403, 429) are counted per kind and principal (or client address, when no
//!   principal is known) and written once a minute as one `datastorage.access.denied` event per
//!   count, so a flood of bad requests adds a handful of events, not one per request. At most
//!   [`MAX_KEYS`] counts are kept per minute; the rest are summed under `(others)`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Principal;
use crate::ingest::IngestQueue;
use crate::shutdown::Shutdown;
use crate::store::PreparedEvent;
use crate::system_event::SystemEvent;

pub const EXPORT: &str = "datastorage.access.export";
pub const VERIFY_CHAIN: &str = "datastorage.access.verify_chain";
pub const DLQ_ADMIN: &str = "datastorage.access.dlq";
pub const DENIED: &str = "datastorage.access.denied";
/// The correlation of the access events that name none of their own.
pub const CORRELATION: &str = "datastorage-access";

/// Most distinct (kind, who) counts kept per window.
pub const MAX_KEYS: usize = 10_000;
/// How often the counts are written.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One access by `principal`: `action`, with what it selected. Recorded under its own
/// correlation ([`CORRELATION`] unless one is given), not the remediation it looked at, whose
/// trail stays what its controllers wrote.
pub fn event(
    event_type: &'static str,
    action: &'static str,
    principal: &Principal,
    address: Option<IpAddr>,
    correlation_id: Option<&str>,
    data: Value,
) -> PreparedEvent {
    let mut data = data;
    if let (Some(map), Some(ip)) = (data.as_object_mut(), address) {
        map.insert("client_address".into(), ip.to_string().into());
    }
    if let Some(map) = data.as_object_mut() {
        map.insert("principal".into(), principal.name.clone().into());
    }
    SystemEvent {
        event_id: Uuid::now_v7(),
        at: Utc::now(),
        event_type,
        action,
        actor: ("service", principal.name.clone()),
        resource: ("audit_log", event_type.to_string()),
        correlation_id: correlation_id.unwrap_or(CORRELATION).to_string(),
        data,
    }
    .prepare()
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// 401: no credential, a bad or expired one.
    Unauthenticated,
    /// 403: a role missing, or an event type outside the writer's.
    Forbidden,
    /// 429: over a rate limit.
    RateLimited,
}

impl Denial {
    fn as_str(self) -> &'static str {
        match self {
            Denial::Unauthenticated => "unauthenticated",
            Denial::Forbidden => "forbidden",
            Denial::RateLimited => "rate_limited",
        }
    }
}

/// The refusals of the current window.
pub struct Denials {
    window: Mutex<Window>,
}

struct Window {
    started: DateTime<Utc>,
    counts: HashMap<(Denial, String), u64>,
}

impl Default for Denials {
    fn default() -> Self {
        Denials {
            window: Mutex::new(Window {
                started: Utc::now(),
                counts: HashMap::new(),
            }),
        }
    }
}

impl Denials {
    /// Counts one refusal of `who` (a principal, or `address:<ip>`).
    pub fn note(&self, denial: Denial, who: String) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let key = if window.counts.len() >= MAX_KEYS
            && !window.counts.contains_key(&(denial, who.clone()))
        {
            (denial, "(others)".to_string())
        } else {
            (denial, who)
        };
        *window.counts.entry(key).or_default() += 1;
    }

    /// The events of the window so far, which starts again.
    pub fn drain(&self) -> Vec<PreparedEvent> {
        let now = Utc::now();
        let (started, counts) = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let counts = std::mem::take(&mut window.counts);
            (std::mem::replace(&mut window.started, now), counts)
        };
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| (a.0 .0.as_str(), &a.0 .1).cmp(&(b.0 .0.as_str(), &b.0 .1)));
        counts
            .into_iter()
            .map(|((denial, who), count)| {
                SystemEvent {
                    event_id: Uuid::now_v7(),
                    at: now,
                    event_type: DENIED,
                    action: denial.as_str(),
                    actor: ("service", who.clone()),
                    resource: ("audit_log", DENIED.to_string()),
                    correlation_id: CORRELATION.to_string(),
                    data: json!({
                        "denial": denial.as_str(),
                        "who": who,
                        "count": count,
                        "window_start": audit_model::timestamp::format(&started),
                        "window_end": audit_model::timestamp::format(&now),
                    }),
                }
                .prepare()
            })
            .collect()
    }

    /// Writes the counts every [`WINDOW`] (and once more at the stop) until the service stops.
    pub async fn run(self: Arc<Self>, queue: IngestQueue, every: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                () = shutdown.begun() => true,
                _ = tick.tick() => false,
            };
            let events = self.drain();
            if !events.is_empty() {
                if let Err(error) = queue.submit(events).await {
                    tracing::error!(%error, "the access trail's refusal counts could not be written");
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// Writes the access event of `action` by `principal` (see [`event`]) before the action; the
/// action is refused (503) when it cannot be recorded.
pub async fn record(
    queue: &IngestQueue,
    (event_type, action): (&'static str, &'static str),
    principal: &Principal,
    address: Option<IpAddr>,
    data: Value,
) -> Result<(), crate::http::problem::ApiError> {
    use crate::ingest::IngestOutcome;
    let event = event(event_type, action, principal, address, None, data);
    let outcome = queue.submit(vec![event]).await?;
    match outcome.first() {
        Some(
            IngestOutcome::Created(_) | IngestOutcome::Duplicate(_) | IngestOutcome::Queued(_),
        ) => Ok(()),
        _ => Err(crate::http::problem::ApiError::new(
            audit_model::ProblemKind::ServiceUnavailable,
            "the access could not be recorded in the audit trail, so it is not done; retry shortly",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_kind_and_caller_and_the_window_starts_again() {
        let denials = Denials::default();
        for _ in 0..500 {
            denials.note(Denial::Unauthenticated, "address:10.0.0.9".into());
        }
        denials.note(Denial::Forbidden, "notification-controller".into());
        denials.note(Denial::Forbidden, "notification-controller".into());
        let events = denials.drain();
        assert_eq!(events.len(), 2);
        let data: Vec<(String, u64)> = events
            .iter()
            .map(|e| {
                let d = e.event.event_data();
                (
                    d["denial"].as_str().unwrap().to_string(),
                    d["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            data,
            [
                ("forbidden".to_string(), 2),
                ("unauthenticated".to_string(), 500)
            ]
        );
        assert_eq!(events[1].event.event_type(), DENIED);
        assert_eq!(events[1].event.submitted_by(), Some("datastorage"));
        assert!(denials.drain().is_empty());
    }

    #[test]
    fn the_number_of_counts_is_bounded() {
        let denials = Denials::default();
        for i in 0..MAX_KEYS + 50 {
            denials.note(
                Denial::RateLimited,
                format!("address:10.0.{}.{}", i / 256, i % 256),
            );
        }
        let events = denials.drain();
        assert_eq!(events.len(), MAX_KEYS + 1);
        let others = events
            .iter()
            .find(|e| e.event.event_data()["who"] == "(others)")
            .unwrap();
        assert_eq!(others.event.event_data()["count"], 50);
    }
}
