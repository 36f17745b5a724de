//! One connection's limits in time, and answers to what hyper refuses before a request exists.
//!
//! [`GuardedIo`] wraps a connection's socket and closes it when it is silent too long:
//!
//! * **idle**: no byte read or written for `idle_timeout` while no request is being served
//!   (between requests, and while a response is written to a client that does not read it);
//! * **header**: a request head begun and not complete within `header_read_timeout`.
//!
//! While a request is being served nothing times out here: the body's own read timeouts are in
//! [`crate::http::extract`], and the handlers' work is bounded by theirs. The idle timeout is
//! kept above the 90 s that Go's and reqwest's connection pools keep an idle connection, so a
//! client never sends a request on a connection the server is closing as idle.
//!
//! hyper answers a request it cannot parse (400), a target or head beyond its limits (414,
//! 431) on its own, with an empty body, and closes the connection; no service sees such a
//! request. [`GuardedIo`] replaces that answer with an RFC 7807 problem, so every refusal of the
//! API has the same shape. Such an answer is the only one the service writes with
//! `content-length: 0` and one of those statuses: every answer a handler gives has a body.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use audit_model::{Problem, ProblemKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the connection's service tells its socket: whether a request is being served, and how
/// many have been.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<ActivityState>);

#[derive(Debug, Default)]
struct ActivityState {
    serving: AtomicBool,
    requests: AtomicU64,
}

impl Activity {
    /// Marks a request as served until the guard is dropped.
    pub fn serving(&self) -> ServingGuard {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.serving.store(true, Ordering::Relaxed);
        ServingGuard(self.clone())
    }

    fn is_serving(&self) -> bool {
        self.0.serving.load(Ordering::Relaxed)
    }

    fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Relaxed)
    }
}

/// Ends the serving of a request when dropped (its response is built, or it was cancelled).
pub struct ServingGuard(Activity);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        self.0 .0.serving.store(false, Ordering::Relaxed);
    }
}

/// A socket that times out as the module docs say and answers hyper's own refusals with
/// problems.
pub struct GuardedIo<T> {
    inner: T,
    activity: Activity,
    limits: ConnectionLimits,
    last_activity: Instant,
    /// When the head of the next request began arriving, and how many requests had been served
    /// then (a change means the head was complete).
    head_started: Option<(Instant, u64)>,
    timer: Pin<Box<Sleep>>,
    /// A problem answer being written in place of hyper's empty one, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, activity: Activity, limits: ConnectionLimits) -> Self {
        let now = Instant::now();
        GuardedIo {
            inner,
            activity,
            limits,
            last_activity: now,
            head_started: None,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            replacement: None,
        }
    }

    fn on_read(&mut self) {
        let now = Instant::now();
        self.last_activity = now;
        if !self.activity.is_serving() && self.head_started.is_none() {
            self.head_started = Some((now, self.activity.requests()));
        }
    }

    /// Ready with an error when the connection has been silent too long.
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.activity.is_serving() {
            self.head_started = None;
            return Poll::Pending;
        }
        let head = self
            .head_started
            .filter(|(_, served)| *served == self.activity.requests());
        self.head_started = head;
        let (deadline, what) = match head {
            Some((began, _)) => (began + self.limits.header_read_timeout, "request head"),
            None => (
                self.last_activity + self.limits.idle_timeout,
                "idle connection",
            ),
        };
        // The timer is moved only when the deadline comes earlier; a later one (the usual case:
        // activity since it was set) is taken up when the timer fires, so a busy connection
        // does not touch the timer wheel on every read.
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
        loop {
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() < deadline => {
                    self.timer.as_mut().reset(deadline);
                }
                Poll::Ready(()) => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} timed out"),
                    ))
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_silence(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes the replacement answer; Ready(Ok) once all of it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match self.poll_silence(cx) {
                        Poll::Ready(e) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> GuardedIo<T> {
    /// Notes the activity of a write, or times out a write that cannot go on.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_silence(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() {
            this.replacement = refusal_as_problem(buf).map(|bytes| (bytes, 0));
        }
        if this.replacement.is_some() {
            // hyper's whole answer is this one head: it is taken as written once ours is.
            return this.poll_replacement(cx).map_ok(|()| buf.len());
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.replacement.is_some() || first.is_some_and(|b| refusal_status(b).is_some()) {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if this.replacement.is_none() {
                this.replacement = refusal_as_problem(&joined).map(|bytes| (bytes, 0));
            }
            if this.replacement.is_some() {
                return this.poll_replacement(cx).map_ok(|()| total);
            }
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The kind of an answer hyper gives on its own: a 400, 414 or 431 head with an empty body.
fn refusal_status(head: &[u8]) -> Option<ProblemKind> {
    let kind = match head.get(..13)? {
        b"HTTP/1.1 400 " => ProblemKind::BadRequest,
        b"HTTP/1.1 414 " => ProblemKind::UriTooLong,
        b"HTTP/1.1 431 " => ProblemKind::HeaderFieldsTooLarge,
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let (head_text, rest) = text.split_once("\r\n\r\n")?;
    let empty = head_text
        .split("\r\n")
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    (empty && rest.is_empty()).then_some(kind)
}

/// hyper's empty refusal in `head`, rewritten as the same status with a problem body.
fn refusal_as_problem(head: &[u8]) -> Option<Vec<u8>> {
    let kind = refusal_status(head)?;
    let detail = match kind {
        ProblemKind::UriTooLong => "the request target is longer than the server accepts",
        ProblemKind::HeaderFieldsTooLarge => {
            "the request head is larger than the server accepts (64 KiB, at most 100 header fields)"
        }
        _ => "the request is not valid HTTP/1.1 (a malformed request line or header field)",
    };
    let id = uuid::Uuid::new_v4();
    let mut problem = Problem::new(kind, detail);
    problem.instance = Some(format!("urn:request-id:{id}"));
    let body = serde_json::to_vec(&problem).ok()?;
    let text = std::str::from_utf8(head).ok()?;
    let (head_text, _) = text.split_once("\r\n\r\n")?;
    let mut out = String::with_capacity(head_text.len() + 160);
    for line in head_text.split("\r\n") {
        if line.eq_ignore_ascii_case("content-length: 0") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {id}\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
}

/// The answer to a connection beyond the connection limit, written before closing it.
pub fn over_capacity_answer(max_connections: usize) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    let mut problem = Problem::new(
        ProblemKind::ServiceUnavailable,
        format!("the service has {max_connections} open connections, its limit; retry shortly"),
    );
    problem.instance = Some(format!("urn:request-id:{id}"));
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut bytes = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\nx-request-id: {id}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_refusals_are_rewritten() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(refusal_as_problem(hyper_431).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 431 "));
        assert!(rewritten.contains("content-type: application/problem+json\r\n"));
        assert!(!rewritten.contains("content-length: 0\r\n"));
        let (_, body) = rewritten.split_once("\r\n\r\n").unwrap();
        let problem: Problem = serde_json::from_str(body).unwrap();
        assert_eq!(problem.status, 431);

        // An answer of the service itself has a body, or another status.
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 90\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
        ] {
            assert!(refusal_as_problem(head).is_none());
        }
    }
}
