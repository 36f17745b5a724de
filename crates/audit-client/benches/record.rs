//! Cost of `AuditClient::record` (ns/op): into a buffer with room, and against a full buffer.
//!
//! Run with `cargo bench -p audit-client --bench record`. The "server" accepts connections and
//! never answers, so the background task hangs on its first request and never empties the buffer
//! during a measurement. Building the JSON value is outside the measured time.

use std::time::Duration;

use audit_client::AuditClient;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
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

fn client(base: &str, capacity: usize) -> AuditClient {
    AuditClient::builder(base)
        .buffer_capacity(capacity)
        .flush_interval(Duration::from_millis(1))
        .batch_size(1000)
        .request_timeout(Duration::from_secs(3600))
        .build()
        .expect("client starts")
}

fn record(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", silent.local_addr().expect("addr"));

    let roomy = client(&base, 50_000_000);
    c.bench_function("record, buffer with room", |b| {
        b.iter_batched(
            event,
            |e| roomy.record(e).expect("room in the buffer"),
            BatchSize::SmallInput,
        )
    });

    let full = client(&base, 1000);
    // The first batch goes to the hanging request; then the buffer fills.
    while full.record(event()).is_ok() {
        std::thread::sleep(Duration::from_micros(50));
    }
    c.bench_function("record, buffer full (refused and counted)", |b| {
        b.iter_batched(
            event,
            |e| full.record(e).expect_err("buffer is full"),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
