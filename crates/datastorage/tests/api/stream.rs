//! `GET /api/v1/audit/events/stream`: the matching events as Server-Sent Events in `seq` order,
//! resumed with `Last-Event-ID` across a restart of the service without a loss or a repeat, and
//! a cap on the streams open at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    event, spawn_app, spawn_app_with, start_on, AppOptions, Backend, SseReader, TestApp,
};

const WAIT: Duration = Duration::from_secs(15);

async fn write(app: &TestApp, correlation: &str, n: usize) {
    let batch: Vec<Value> = (0..n).map(|_| event(correlation)).collect();
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!(batch)).await;
    assert_eq!(status, 200, "{body}");
}

async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> SseReader {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/audit/events/stream{query}")));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    SseReader::new(response)
}

/// Reads `n` events, each within [`WAIT`].
async fn take(stream: &mut SseReader, n: usize) -> Vec<(i64, Value)> {
    let mut events = Vec::new();
    for _ in 0..n {
        let next = stream.next_within(WAIT).await;
        events.push(next.unwrap_or_else(|| panic!("only {} of {n} events came", events.len())));
    }
    events
}

async fn resumes_across_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    write(&app, "rr-stream", 5).await;
    write(&app, "rr-other", 3).await;

    // From the first event, filtered: the five of rr-stream, then live ones as they come.
    let mut stream = open(&app, "?correlation_id=rr-stream&after_seq=0", None).await;
    let mut seen = take(&mut stream, 5).await;
    write(&app, "rr-stream", 3).await;
    write(&app, "rr-other", 2).await;
    seen.extend(take(&mut stream, 3).await);
    assert!(seen.iter().all(|(_, e)| e["correlation_id"] == "rr-stream"));
    for (id, e) in &seen {
        assert_eq!(e["seq"], *id, "the SSE id is the event's seq");
    }

    // The service stops: the stream ends. It starts again; events are written before the
    // client is back, and after.
    let TestApp {
        db,
        shutdown,
        handle,
        data_dir,
        ..
    } = app;
    shutdown.begin();
    handle.await.unwrap().unwrap();
    assert!(stream.next_within(WAIT).await.is_none(), "the stream ends");
    let app = start_on(
        db,
        backend,
        AppOptions {
            data_dir: Some(data_dir),
            ..AppOptions::default()
        },
    )
    .await;
    write(&app, "rr-stream", 4).await;
    let last = seen.last().unwrap().0;
    let mut stream = open(&app, "?correlation_id=rr-stream", Some(last)).await;
    seen.extend(take(&mut stream, 4).await);
    write(&app, "rr-stream", 2).await;
    seen.extend(take(&mut stream, 2).await);
    assert!(
        stream
            .next_within(Duration::from_millis(600))
            .await
            .is_none(),
        "nothing more"
    );

    // Every event of the correlation once, in seq order, as the database holds them.
    let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let stored: Vec<String> = app
        .db
        .strings(
            "SELECT CAST(event_id AS TEXT) FROM audit_events \
             WHERE correlation_id = 'rr-stream' ORDER BY seq",
        )
        .await;
    let streamed: Vec<String> = seen
        .iter()
        .map(|(_, e)| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed.len(), 14);
    assert_eq!(streamed, stored);

    // Without a position: only what is stored from now on.
    let mut live = open(&app, "", None).await;
    write(&app, "rr-later", 1).await;
    let (_, first) = live.next_within(WAIT).await.expect("the new event");
    assert_eq!(first["correlation_id"], "rr-later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_across_a_restart_on_postgres() {
    resumes_across_a_restart(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_across_a_restart_on_sqlite() {
    resumes_across_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_and_bad_positions_refused() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            stream_max_subscribers: Some(1),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let first = open(&app, "", None).await;
    let (status, problem) = app.get("/api/v1/audit/events/stream").await;
    assert_eq!(status, 503, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("too many"));
    drop(first);
    // The permit returns when the client goes.
    crate::helpers::eventually("the stream's permit to return", || async {
        let response = app
            .client
            .get(app.url("/api/v1/audit/events/stream"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let response = app
        .client
        .get(app.url("/api/v1/audit/events/stream"))
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .unwrap();
    // A bad position is refused before a stream is opened.
    assert_eq!(response.status(), 400);
    let (status, problem) = app.get("/api/v1/audit/events/stream?after_seq=-1").await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = app.get("/api/v1/audit/events/stream?limit=5").await;
    assert_eq!(status, 400, "{problem}");
}
