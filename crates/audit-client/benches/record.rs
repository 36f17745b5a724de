//! Cost of `AuditClient::record` (ns/op): into a buffer with room, and against a full buffer.
//!
//! Run with `cargo bench -p audit-client --bench record`. The server is unreachable and the
//! retry backoff long, so the background task never empties the buffer during a measurement.

use std::time::Duration;

use audit_client::AuditClient;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn event() -> serde_json::Value {
    json!({
        "event_type": "notification.message.sent",
        "event_category": "notification",
        "event_action": "sent",
        "event_outcome": "success",
        "correlation_id": "rr-bench",
        "resource_type": "NotificationRequest",
        "resource_id": "notif-1",
        "event_data": {"channel": "slack", "recipient": "#ops", "attempt": 1}
    })
}

fn client(capacity: usize) -> AuditClient {
    AuditClient::builder("http://127.0.0.1:9")
        .buffer_capacity(capacity)
        .flush_interval(Duration::from_secs(3600))
        .batch_size(1000)
        .retry(1, Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
        .expect("client starts")
}

fn record(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let roomy = client(50_000_000);
    c.bench_function("record, buffer with room", |b| {
        b.iter(|| roomy.record(event()).expect("room in the buffer"))
    });
    let full = client(1);
    let _ = full.record(event());
    c.bench_function("record, buffer full (refused and counted)", |b| {
        b.iter(|| full.record(event()).expect_err("buffer is full"))
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
