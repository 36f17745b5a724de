//! The server loop: HTTP/1.1 connections served by hyper, with a bounded read buffer per
//! connection, and a graceful stop.
//!
//! `axum::serve` keeps hyper's default read buffer, which grows to about 400 KiB on a
//! connection that sends large bodies and stays that large while the connection is open. With
//! 50 clients sending batches of 500 events that was 26 MB of the service's 80 MB peak heap
//! (measured with a heap profiler over `audit-bench --against … --batches`), and it grows with
//! every client that connects. A read buffer of [`READ_BUFFER_BYTES`] reads a large body in a
//! few more reads; the memory then grows with the bodies being read, which the body budget
//! bounds, not with the connections.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The most a connection asks to read at once, and buffers of what it writes before flushing. A
/// request head that does not fit is refused (431); one read may bring a little more than this,
/// so the bound on a head is not exact.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` resolves; then accepts no more connections, lets
/// each open connection finish the request it is serving (closing it after its response), and
/// returns when all have closed.
pub async fn serve<S>(listener: TcpListener, app: S, stop: impl Future<Output = ()>)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    // No timer, as with `axum::serve`: hyper's header read timeout would also close keep-alive
    // connections idle for 30 s, a race with clients that reuse them.
    http.max_buf_size(READ_BUFFER_BYTES);
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = app
            .clone()
            .map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// A failed accept: one peer's trouble is skipped; anything else (out of file descriptors, for
/// one) is logged and the loop pauses before it tries again, instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
