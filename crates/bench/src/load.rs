//! Closed-loop load: C clients, each sending its next request as soon as the last is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What a load run achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    /// Events acknowledged (201 or 202, or `created`/`queued` items of a batch).
    pub events: u64,
    /// Requests answered with anything other than success.
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A unique, realistic event.
pub fn event(client: usize, i: u64) -> Value {
    json!({
        "event_type": "notification.message.sent",
        "event_category": "notification",
        "event_action": "sent",
        "event_outcome": "success",
        "correlation_id": format!("rr-bench-{client}-{}", i / 10),
        "resource_type": "NotificationRequest",
        "resource_id": format!("notif-{client}-{i}"),
        "namespace": "remediation",
        "event_data": {"channel": "slack", "recipient": "#ops", "attempt": 1, "duration_ms": 42}
    })
}

/// Runs `clients` closed loops for `duration` against `path`, `batch` events per request
/// (1: single-event endpoint; more: the batch endpoint).
pub async fn closed_loop(
    base: &str,
    clients: usize,
    duration: Duration,
    batch: usize,
) -> LoadResult {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, stop) = (http.clone(), stop.clone());
            let url = if batch == 1 {
                format!("{base}/api/v1/audit/events")
            } else {
                format!("{base}/api/v1/audit/events/batch")
            };
            tokio::spawn(async move {
                let mut r = LoadResult::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = if batch == 1 {
                        i += 1;
                        event(c, i)
                    } else {
                        Value::Array(
                            (0..batch)
                                .map(|_| {
                                    i += 1;
                                    event(c, i)
                                })
                                .collect(),
                        )
                    };
                    match http.post(&url).json(&body).send().await {
                        Ok(resp) if batch == 1 && matches!(resp.status().as_u16(), 201 | 202) => {
                            r.events += 1
                        }
                        Ok(resp) if resp.status() == 200 && batch > 1 => {
                            let v: Value = resp.json().await.unwrap_or(Value::Null);
                            r.events += v["summary"]["created"].as_u64().unwrap_or(0)
                                + v["summary"]["queued"].as_u64().unwrap_or(0);
                        }
                        _ => r.errors += 1,
                    }
                }
                r
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = LoadResult::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.events += r.events;
            total.errors += r.errors;
        }
    }
    total.elapsed = started.elapsed();
    total
}
