//! One keep-alive HTTP/1.1 connection per load client, straight on hyper.
//!
//! A closed-loop client has one request in flight at a time, so it needs no pool: each client
//! owns its connection, and the request's URI and headers are built once. This keeps the load
//! generator's own CPU per request low on a machine it shares with the service and the database
//! (measured against reqwest's pooled client in `docs/benchmarks.md`). The client's task also
//! drives its connection (instead of a task of its own per connection), so an answer wakes one
//! task, not two.

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::pin::Pin;

use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> Io for T {}

type Driver = Pin<Box<Connection<TokioIo<Box<dyn Io>>, Full<Bytes>>>>;

/// The client side of TLS: the roots the service's certificate is verified against.
pub type Tls = std::sync::Arc<rustls::ClientConfig>;

/// A client's connection to the service.
pub struct Conn {
    authority: String,
    host: HeaderValue,
    /// `Bearer <token>`, sent with every request when the service authenticates.
    authorization: Option<HeaderValue>,
    /// For an `https` service.
    tls: Option<(Tls, rustls_pki_types::ServerName<'static>)>,
    /// The request side of the connection and the connection itself, polled while a request is
    /// in flight.
    open: Option<(SendRequest<Full<Bytes>>, Driver)>,
}

impl Conn {
    /// A connection to `base` (`http://host:port`, or `https://` with `tls`), opened on the
    /// first request, sending `Authorization: Bearer <token>` when a token is given.
    pub fn with_token(base: &str, token: Option<&str>, tls: Option<&Tls>) -> anyhow::Result<Conn> {
        let uri: Uri = base.parse().context("the service URL")?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("{base} names no host"))?
            .to_string();
        let tls = match (uri.scheme_str(), tls) {
            (Some("https"), Some(tls)) => {
                let host = uri.host().unwrap_or_default().to_string();
                Some((tls.clone(), rustls_pki_types::ServerName::try_from(host)?))
            }
            (Some("https"), None) => anyhow::bail!("{base} needs a TLS client configuration"),
            _ => None,
        };
        Ok(Conn {
            tls,
            host: HeaderValue::from_str(&authority)?,
            authority,
            authorization: token
                .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                .transpose()?,
            open: None,
        })
    }

    async fn open(&self) -> anyhow::Result<(SendRequest<Full<Bytes>>, Driver)> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(stream),
            Some((config, name)) => Box::new(
                tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await?,
            ),
        };
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
        Ok((sender, Box::pin(connection)))
    }

    /// POSTs a JSON body to `path` and reads the whole answer. A failed connection is dropped and
    /// the next request opens a new one.
    pub async fn post(&mut self, path: &Uri, body: String) -> anyhow::Result<(StatusCode, Bytes)> {
        let answer = self.send(path, body).await;
        if answer.is_err() {
            self.open = None;
        }
        answer
    }

    async fn send(&mut self, path: &Uri, body: String) -> anyhow::Result<(StatusCode, Bytes)> {
        let (sender, connection) = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(self.open().await?),
        };
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // The load reads this service's own answers (per-item batch results).
        headers.insert("prefer", HeaderValue::from_static("answers=native"));
        if let Some(authorization) = &self.authorization {
            headers.insert(hyper::header::AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::select! {
            answer = exchange => answer,
            ended = connection.as_mut() => Err(match ended {
                Ok(()) => anyhow!("the service closed the connection"),
                Err(error) => error.into(),
            }),
        }
    }
}
