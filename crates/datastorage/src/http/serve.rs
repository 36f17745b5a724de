//! The server loop: HTTP/1.1 connections served by hyper, with a bounded read buffer per
//! connection, time limits on silent connections, a cap on open connections, and a graceful
//! stop.
//!
//! `axum::serve` keeps hyper's default read buffer, which grows large on a connection that sends
//! large bodies and stays that large while the connection is open (the heap profile is in
//! `docs/benchmarks.md`). A read buffer of [`READ_BUFFER_BYTES`] reads a large body in a few
//! more reads; the memory then grows with the bodies being read, which the body budget bounds,
//! not with the connections. The number of connections is bounded by `max_connections`: beyond
//! it a connection is answered 503 with a problem and closed, so file descriptors are never
//! exhausted by idle sockets. On a TLS listener ([`crate::tls`]) each connection's handshake
//! runs on its own task, within the time a request head may take.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use super::connection::{over_capacity_answer, Activity, ConnectionLimits, GuardedIo};
use crate::tls::{self, PeerSubject, TlsServer};

/// The most a connection asks to read at once, and buffers of what it writes before flushing. A
/// request head that does not fit is refused (431); one read may bring a little more than this,
/// so the bound on a head is not exact.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The largest request head (request line and header fields); a larger one is refused (431).
pub const MAX_HEADER_BYTES: usize = 48 * 1024;

/// What serves the requests (the router).
pub trait App:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The limits of the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub connection: ConnectionLimits,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` (through TLS when `tls` is given) until `stop` resolves; then
/// accepts no more connections, lets each open connection finish the request it is serving
/// (closing it after its response), and returns when all have closed.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    limits: ServeLimits,
    tls: Option<Arc<TlsServer>>,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(READ_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
            tokio::spawn(refuse(stream, tls.clone(), limits));
            continue;
        };
        let connection = Connection {
            http: http.clone(),
            watcher: connections.watcher(),
            peer,
            limits: limits.connection,
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream, None, app).await,
                Some(tls) => {
                    if let Some((stream, subject)) = handshake(&tls, stream, limits).await {
                        connection.serve(stream, subject, app).await;
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// One accepted connection, served by hyper.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    watcher: Watcher,
    peer: SocketAddr,
    limits: ConnectionLimits,
}

impl Connection {
    async fn serve<I>(self, io: I, subject: Option<PeerSubject>, app: impl App)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::default();
        let io = GuardedIo::new(io, activity.clone(), self.limits);
        let peer = self.peer;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let serving = activity.serving();
            let app = app.clone();
            let subject = subject.clone();
            async move {
                let mut req = req.map(Body::new);
                // The client's address, for its rate limit and the access trail; its
                // certificate's subject, for authentication.
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                if let Some(subject) = subject {
                    req.extensions_mut().insert(subject);
                }
                let response = app.oneshot(req).await;
                drop(serving);
                response
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        if let Err(error) = self.watcher.watch(connection).await {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// The TLS handshake of a new connection, within the time a request head may take; with the
/// verified client certificate's subject. `None`: the handshake failed (logged at debug: a
/// client that does not trust the service, a certificate the client CA did not issue, a port
/// scan).
async fn handshake(
    tls: &TlsServer,
    stream: TcpStream,
    limits: ServeLimits,
) -> Option<(TlsStream<TcpStream>, Option<PeerSubject>)> {
    let accepted = tokio::time::timeout(
        limits.connection.header_read_timeout,
        tls.acceptor().accept(stream),
    )
    .await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
            tracing::debug!(%error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES).increment(1);
            tracing::debug!("TLS handshake timed out");
            return None;
        }
    };
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(tls::peer_subject)
        .map(|s| PeerSubject(s.into()));
    Some((stream, subject))
}

/// Answers a connection beyond the limit with a 503 problem and closes it (after the TLS
/// handshake on a TLS listener, so the client can read it).
async fn refuse(stream: TcpStream, tls: Option<Arc<TlsServer>>, limits: ServeLimits) {
    let answer = over_capacity_answer(limits.max_connections);
    match tls {
        None => answer_and_close(stream, &answer).await,
        Some(tls) => {
            if let Some((stream, _)) = handshake(&tls, stream, limits).await {
                answer_and_close(stream, &answer).await;
            }
        }
    }
}

/// Writes `answer` and closes. What the client sends meanwhile is read and dropped for a
/// moment, so that closing does not reset the connection before the client has read it.
async fn answer_and_close(mut stream: impl AsyncRead + AsyncWrite + Unpin, answer: &[u8]) {
    let polite = async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), polite).await;
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
