//! A stand-in for an OpenTelemetry collector: takes OTLP/HTTP trace exports on `/v1/traces`,
//! counts them and their bytes, and answers as a collector does (an empty protobuf answer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::routing::post;
use axum::Router;

#[derive(Default)]
pub struct Received {
    pub exports: AtomicU64,
    pub bytes: AtomicU64,
}

/// Starts the collector; its endpoint (for `--otlp-endpoint`) and what it has received.
pub async fn start() -> anyhow::Result<(String, Arc<Received>)> {
    let received = Arc::new(Received::default());
    let router = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((endpoint, received))
}

async fn export(
    State(received): State<Arc<Received>>,
    body: Bytes,
) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    received.exports.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    // An `ExportTraceServiceResponse` with no field set is zero bytes of protobuf.
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
}
