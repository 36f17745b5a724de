//! TLS on the listener (rustls): a certificate chain and key from PEM files, optionally a client
//! CA whose certificates authenticate callers (mTLS), all read again when the files change.
//!
//! A new version of the files applies to connections accepted from then on; connections open
//! at the change keep the session they negotiated, so a rotation (cert-manager renewing a
//! Secret) drops nothing. Files that do not make a working configuration (a key that does not
//! match, a half-written file) are logged and the version before stays in force.
//!
//! With a client CA, a client certificate is asked for but not required: a caller without one
//! authenticates with a bearer token as on a listener without a client CA; a certificate that
//! the CA did not issue ends the handshake. A verified certificate is named by
//! [`peer_subject`] and given roles by an entry of the tokens file (`docs/security.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::watched::{stamp, Reloadable, Stamp};

/// The PEM files of the listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the service's certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that issues client certificates (mTLS); none: clients are not asked for one.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

fn error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The listener's TLS configuration, kept current with its files.
pub struct TlsServer {
    files: TlsFiles,
    current: ArcSwap<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Stamp>,
    /// When the service's certificate expires (seconds since the epoch).
    not_after: i64,
}

impl TlsServer {
    /// Reads the files; files that do not make a configuration stop the service from starting.
    pub fn load(files: TlsFiles) -> Result<TlsServer, TlsError> {
        let loaded = load(&files)?;
        publish_expiry(loaded.not_after);
        Ok(TlsServer {
            files,
            current: ArcSwap::from_pointee(loaded),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.load().acceptor.clone()
    }

    /// Whether clients are asked for certificates.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Reads the files again if any changed since they were read; `Ok(true)` when they were.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = stamps(&self.files)?;
        if stamps == self.current.load().stamps {
            return Ok(false);
        }
        let loaded = load(&self.files)?;
        publish_expiry(loaded.not_after);
        self.current.store(Arc::new(loaded));
        Ok(true)
    }
}

impl Reloadable for TlsServer {
    fn what(&self) -> String {
        format!("the TLS certificate {}", self.files.cert.display())
    }

    fn kind(&self) -> &'static str {
        "tls"
    }

    fn reload_if_changed(&self) -> Result<bool, String> {
        TlsServer::reload_if_changed(self).map_err(|e| e.to_string())
    }
}

fn publish_expiry(not_after: i64) {
    metrics::gauge!(crate::metrics::TLS_CERTIFICATE_EXPIRY).set(not_after as f64);
}

fn stamps(files: &TlsFiles) -> Result<Vec<Stamp>, TlsError> {
    files
        .paths()
        .map(|p| stamp(p).map_err(|e| error(p, e)))
        .collect()
}

/// The crypto of every TLS configuration of the service.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    // Stamped before reading: a change while reading is read again next time.
    let stamps = stamps(files)?;
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| error(&files.key, e))?;
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| error(&files.cert, e))?
        .1
        .validity()
        .not_after
        .timestamp();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        error(
            &files.key,
            format!("the key does not fit the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        stamps,
        not_after,
    })
}

/// The certificates of a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, e))?;
    if chain.is_empty() {
        return Err(error(path, "holds no PEM certificate"));
    }
    Ok(chain)
}

/// The verified client certificate's subject of a connection, as its principal is looked up:
/// the first URI of its subjectAltName (a SPIFFE ID, for one), else its first DNS name, else
/// the common name of its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSubject(pub Arc<str>);

/// The subject of `certificate` as [`PeerSubject`] says; `None` when it names nothing usable.
pub fn peer_subject(certificate: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(certificate).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let uri = names.iter().find_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        });
        let dns = || {
            names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        };
        if let Some(name) = uri.or_else(dns) {
            return Some(name);
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    common_name
}
