//! One keep-alive HTTP/1.1 connection per load client, straight on hyper.
//!
//! A closed-loop client has one request in flight at a time, so it needs no pool: each client
//! owns its connection, and the request's URI and headers are built once. This keeps the load
//! generator's own CPU per request low on a machine it shares with the service and the database
//! (measured against reqwest's pooled client in `docs/benchmarks.md`).

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// A client's connection to the service.
pub struct Conn {
    authority: String,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `base` (`http://host:port`), opened on the first request.
    pub fn new(base: &str) -> anyhow::Result<Conn> {
        let uri: Uri = base.parse().context("the service URL")?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("{base} names no host"))?
            .to_string();
        Ok(Conn {
            host: HeaderValue::from_str(&authority)?,
            authority,
            sender: None,
        })
    }

    async fn open(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// POSTs a JSON body to `path` and reads the whole answer. A failed connection is dropped and
    /// the next request opens a new one.
    pub async fn post(&mut self, path: &Uri, body: String) -> anyhow::Result<(StatusCode, Bytes)> {
        let answer = self.send(path, body).await;
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }

    async fn send(&mut self, path: &Uri, body: String) -> anyhow::Result<(StatusCode, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.open().await?),
        };
        sender.ready().await?;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
