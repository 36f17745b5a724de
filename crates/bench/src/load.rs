//! HTTP load: closed loops (C clients, each sending its next request as soon as the last is
//! answered) and an open loop (requests at a fixed rate, latency measured from the scheduled
//! start, so a slow server cannot hide its queueing: no coordinated omission).
//!
//! Bodies are formatted as strings, not built as JSON values, to keep the generator's own CPU
//! use low on a machine it shares with the server and the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::conn::Conn;

/// What a load run achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    /// Events acknowledged (201 or 202, or `created`/`queued` items of a batch).
    pub events: u64,
    /// Requests answered with anything else.
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    /// Adds another turn of the same scenario.
    pub fn add(&mut self, other: &LoadResult) {
        self.events += other.events;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `POST /api/v1/audit/events`, one event.
    Single,
    /// `POST /api/v1/audit/events/batch` with this many events.
    Batch(usize),
    /// `POST /api/v1/audit/notifications`, one typed record.
    Notification,
}

impl Shape {
    fn path(self) -> &'static str {
        match self {
            Shape::Single => "/api/v1/audit/events",
            Shape::Batch(_) => "/api/v1/audit/events/batch",
            Shape::Notification => "/api/v1/audit/notifications",
        }
    }

    /// The body of request `i` of client `c` and the events it holds.
    fn body(self, c: usize, i: u64) -> (String, u64) {
        match self {
            Shape::Single => (event_json(c, i), 1),
            Shape::Batch(n) => {
                let items: Vec<String> = (0..n as u64)
                    .map(|k| event_json(c, i * n as u64 + k))
                    .collect();
                (format!("[{}]", items.join(",")), n as u64)
            }
            Shape::Notification => (notification_json(c, i), 1),
        }
    }
}

/// A unique, realistic event.
pub fn event_json(client: usize, i: u64) -> String {
    format!(
        r##"{{"event_type":"notification.message.sent","event_category":"notification","event_action":"sent","event_outcome":"success","correlation_id":"rr-bench-{client}-{}","resource_type":"NotificationRequest","resource_id":"notif-{client}-{i}","namespace":"remediation","event_data":{{"channel":"slack","recipient":"#ops","attempt":1,"duration_ms":42}}}}"##,
        i / 10
    )
}

/// The same event as a JSON value.
pub fn event(client: usize, i: u64) -> Value {
    serde_json::from_str(&event_json(client, i)).unwrap_or(Value::Null)
}

fn notification_json(client: usize, i: u64) -> String {
    format!(
        r##"{{"remediation_id":"rr-bench-{client}-{}","notification_id":"notif-{client}-{i}","recipient":"#ops","channel":"slack","message_summary":"Pod restarted","status":"sent","sent_at":"{}","delivery_status":"200 OK"}}"##,
        i / 10,
        audit_model::timestamp::format(&chrono::Utc::now())
    )
}

fn http(clients: usize) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    // The load reads this service's own answers (per-item batch results).
    headers.insert(
        "prefer",
        reqwest::header::HeaderValue::from_static("answers=native"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(clients.max(1))
        .build()
        .unwrap_or_default()
}

/// Counts the acknowledged events of one answer.
async fn acknowledged(shape: Shape, response: reqwest::Result<reqwest::Response>) -> Option<u64> {
    let response = response.ok()?;
    let status = response.status().as_u16();
    let body = response.bytes().await.ok()?;
    acknowledged_in(shape, status, &body)
}

/// Counts the acknowledged events of an answer read whole.
fn acknowledged_in(shape: Shape, status: u16, body: &[u8]) -> Option<u64> {
    match (shape, status) {
        (Shape::Batch(_), 200) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            Some(
                v["summary"]["created"].as_u64().unwrap_or(0)
                    + v["summary"]["queued"].as_u64().unwrap_or(0),
            )
        }
        (Shape::Single | Shape::Notification, 201 | 202) => Some(1),
        _ => None,
    }
}

/// Runs `clients` closed loops for `duration`, each on its own connection.
pub async fn closed_loop(
    base: &str,
    clients: usize,
    duration: Duration,
    shape: Shape,
) -> anyhow::Result<LoadResult> {
    closed_loop_on(&[base], clients, duration, shape).await
}

/// [`closed_loop`] with the clients spread over several servers (client `c` on `bases[c % n]`).
pub async fn closed_loop_on(
    bases: &[&str],
    clients: usize,
    duration: Duration,
    shape: Shape,
) -> anyhow::Result<LoadResult> {
    closed_loop_as(bases, clients, duration, shape, None, None).await
}

/// [`closed_loop_on`] with every request carrying the bearer `token`, when given, over TLS
/// with `tls` to an `https` service.
pub async fn closed_loop_as(
    bases: &[&str],
    clients: usize,
    duration: Duration,
    shape: Shape,
    token: Option<&str>,
    tls: Option<&crate::conn::Tls>,
) -> anyhow::Result<LoadResult> {
    let path: hyper::Uri = shape.path().parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let base = bases[c % bases.len()];
        let (mut conn, stop, path) = (
            Conn::with_token(base, token, tls)?,
            stop.clone(),
            path.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (body, _) = shape.body(c, i);
                let answer = conn.post(&path, body).await;
                match answer
                    .ok()
                    .and_then(|(status, body)| acknowledged_in(shape, status.as_u16(), &body))
                {
                    Some(n) => r.events += n,
                    None => r.errors += 1,
                }
            }
            r
        }));
    }
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
    Ok(total)
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

fn histogram() -> Arc<Mutex<Histogram<u64>>> {
    // 1 µs to 60 s, 3 significant digits: the bounds are constants that the crate accepts.
    Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
    ))
}

/// Sends single events at `rate` per second for `duration`; each latency counts from the moment
/// the request was due, not from when it was sent.
pub async fn open_loop(base: &str, rate: u64, duration: Duration) -> (LoadResult, Latency) {
    let http = http(256);
    let url = format!("{base}/api/v1/audit/events");
    paced(rate, duration, move |i| {
        let sent = http
            .post(&url)
            .header("content-type", "application/json")
            .body(event_json(usize::MAX, i))
            .send();
        async move {
            let ok = acknowledged(Shape::Single, sent.await).await.is_some();
            (tokio::time::Instant::now(), ok)
        }
    })
    .await
}

/// Reads at `rate` per second for `duration`, through `paths` in a stride from their middle
/// (away from where [`get_loop`]'s clients start); an answer counts when it is 200 and `check`
/// accepts its body. Each latency counts from the moment the read was due until its body was
/// in, the check aside.
pub async fn get_open_loop(
    base: &str,
    rate: u64,
    duration: Duration,
    paths: Arc<Vec<String>>,
    check: fn(&[u8]) -> bool,
) -> (LoadResult, Latency) {
    let http = http(256);
    let base = base.to_string();
    paced(rate, duration, move |i| {
        let k = (paths.len() as u64 / 2 + i * 104_729) % paths.len().max(1) as u64;
        let sent = http.get(format!("{base}{}", paths[k as usize])).send();
        async move {
            let body = match sent.await {
                Ok(a) if a.status() == 200 => a.bytes().await.ok(),
                _ => None,
            };
            (tokio::time::Instant::now(), body.is_some_and(|b| check(&b)))
        }
    })
    .await
}

/// Makes request `i` at its due time (`rate` per second, for `duration`) whether or not the
/// ones before it were answered; `request`'s future gives the moment its answer was in and
/// whether it counts as done. Each latency counts from the due time to that moment.
async fn paced<F, Fut>(rate: u64, duration: Duration, request: F) -> (LoadResult, Latency)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = (tokio::time::Instant, bool)> + Send + 'static,
{
    let hist = histogram();
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let (answer, hist) = (request(i), hist.clone());
        tasks.push(tokio::spawn(async move {
            let (at, ok) = answer.await;
            let us = (at - due).as_micros().max(1) as u64;
            if let Ok(mut h) = hist.lock() {
                let _ = h.record(us.min(60_000_000));
            }
            ok
        }));
    }
    let mut r = LoadResult::default();
    for t in tasks {
        match t.await {
            Ok(true) => r.events += 1,
            _ => r.errors += 1,
        }
    }
    r.elapsed = t0.elapsed();
    let latency = hist.lock().map(|h| Latency::of(&h)).unwrap_or_default();
    (r, latency)
}

/// Reads from `clients` closed loops for `duration`, cycling through `paths` (each client
/// from its own offset); an answer counts when it is 200 and `check` accepts its body. Each
/// latency counts until the body was in, the check aside.
pub async fn get_loop(
    base: &str,
    clients: usize,
    duration: Duration,
    paths: Arc<Vec<String>>,
    check: fn(&[u8]) -> bool,
) -> (LoadResult, Latency) {
    let http = http(clients);
    let hist = histogram();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, stop, hist, base, paths) = (
                http.clone(),
                stop.clone(),
                hist.clone(),
                base.to_string(),
                paths.clone(),
            );
            tokio::spawn(async move {
                let mut r = LoadResult::default();
                let mut k = c * 7919;
                while !stop.load(Ordering::Relaxed) && !paths.is_empty() {
                    k = (k + 104_729) % paths.len();
                    let t = Instant::now();
                    let answer = http.get(format!("{base}{}", paths[k])).send().await;
                    let body = match answer {
                        Ok(a) if a.status() == 200 => a.bytes().await.ok(),
                        _ => None,
                    };
                    // The answer's latency: until its body was in, the generator's check aside.
                    if let Ok(mut h) = hist.lock() {
                        let _ = h.record((t.elapsed().as_micros() as u64).clamp(1, 60_000_000));
                    }
                    let ok = body.is_some_and(|b| check(&b));
                    if ok {
                        r.events += 1;
                    } else {
                        r.errors += 1;
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
    let latency = hist.lock().map(|h| Latency::of(&h)).unwrap_or_default();
    (total, latency)
}
