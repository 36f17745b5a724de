//! TLS on the listener: HTTPS with a certificate made in the test, client certificates (mTLS)
//! authenticating their subject, a rotated certificate taken without a restart while open
//! connections keep theirs, and clients that do not trust the service (or that the client CA
//! did not issue) refused before any request is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datastorage::auth::tokens::{self, TokenEntry};
use datastorage::auth::Role;
use datastorage::config::TlsSettings;
use serde_json::Value;
use test_pki::{Issued, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    event, eventually, spawn_app_with, start_on, AppOptions, Backend, TestApp, TestDb,
};

/// The PKI of one test: the service's CA and certificate, a client CA, the tokens file.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    client_ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
    tokens: PathBuf,
    /// A writer's bearer token.
    writer: String,
}

/// The subject the workflow controller's client certificate carries.
const WORKFLOW_URI: &str = "spiffe://cluster.local/ns/kubernaut/sa/workflowexecution";

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("datastorage test CA");
    let client_ca = TestCa::new("client test CA");
    let (cert, key) = ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let tokens = dir.path().join("tokens.yaml");
    let writer = tokens::create(&tokens, TokenEntry::new("gateway", [Role::Writer])).unwrap();
    // Appended by hand as an operator would: certificate entries hold no secret.
    let mut text = std::fs::read_to_string(&tokens).unwrap();
    text.push_str(&format!(
        "- certificate: {WORKFLOW_URI}\n  principal: workflowexecution-controller\n  roles: [writer]\n  event_types: [workflowexecution.]\n- certificate: auditor.example\n  principal: auditor\n  roles: [reader]\n"
    ));
    std::fs::write(&tokens, text).unwrap();
    tokens::parse(&std::fs::read_to_string(&tokens).unwrap()).unwrap();
    Pki {
        dir,
        ca,
        client_ca,
        cert,
        key,
        tokens,
        writer,
    }
}

impl Pki {
    fn settings(&self, client_certificates: bool) -> TlsSettings {
        TlsSettings {
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            client_ca_file: client_certificates
                .then(|| self.client_ca.write(self.dir.path(), "client-ca")),
            require: None,
        }
    }

    async fn app(&self, backend: Backend, client_certificates: bool) -> Option<TestApp> {
        spawn_app_with(
            backend,
            AppOptions {
                tokens_file: Some(self.tokens.clone()),
                tls: Some(self.settings(client_certificates)),
                ..AppOptions::default()
            },
        )
        .await
    }
}

/// An HTTPS client trusting only `ca`, presenting `identity` if given.
fn https_client(ca: &TestCa, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    if let Some(issued) = identity {
        let pem = format!("{}{}", issued.cert_pem, issued.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = client
        .post(app.url("/api/v1/audit/events"))
        .header("prefer", "answers=native")
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn workflow_event(correlation: &str) -> Value {
    let mut e = event(correlation);
    e["event_type"] = "workflowexecution.workflow.started".into();
    e["event_category"] = "workflowexecution".into();
    e
}

#[tokio::test]
async fn postgres_serves_https_and_nothing_else() {
    serves_https_and_nothing_else(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_serves_https_and_nothing_else() {
    serves_https_and_nothing_else(Backend::Sqlite).await;
}

async fn serves_https_and_nothing_else(backend: Backend) {
    let pki = pki();
    let Some(app) = pki.app(backend, false).await else {
        return;
    };
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let client = https_client(&pki.ca, None);
    let (status, body) = post(&client, &app, Some(&pki.writer), &event("rr-tls"))
        .await
        .expect("an HTTPS request to a trusted service");
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        app.db
            .text("SELECT submitted_by FROM audit_events WHERE correlation_id = 'rr-tls'")
            .await,
        "gateway"
    );

    // Plain HTTP to the TLS port gets no answer from the API, and stores nothing.
    let plain = reqwest::Client::new()
        .post(app.base.replace("https://", "http://") + "/api/v1/audit/events")
        .bearer_auth(&pki.writer)
        .json(&event("rr-plain"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "{plain:?}"
    );
    // A client that trusts another CA refuses the service before sending anything.
    let stranger = https_client(&TestCa::new("someone else's CA"), None);
    let refused = post(&stranger, &app, Some(&pki.writer), &event("rr-stranger")).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(app.db.count().await, 1);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE correlation_id <> 'rr-tls'")
            .await,
        0
    );
}

#[tokio::test]
async fn postgres_a_client_certificate_authenticates_its_subject() {
    a_client_certificate_authenticates_its_subject(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_a_client_certificate_authenticates_its_subject() {
    a_client_certificate_authenticates_its_subject(Backend::Sqlite).await;
}

async fn a_client_certificate_authenticates_its_subject(backend: Backend) {
    let pki = pki();
    let Some(app) = pki.app(backend, true).await else {
        return;
    };
    // The subject is the certificate's URI; its roles and event types come from its entry.
    let workflow = pki.client_ca.client("workflow", Some(WORKFLOW_URI));
    let client = https_client(&pki.ca, Some(&workflow));
    let (status, body) = post(&client, &app, None, &workflow_event("rr-mtls"))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        app.db
            .text("SELECT submitted_by || ' ' || actor_id FROM audit_events WHERE correlation_id = 'rr-mtls'")
            .await,
        "workflowexecution-controller workflowexecution-controller"
    );
    // Outside its event types: 403, nothing stored.
    let (status, body) = post(&client, &app, None, &event("rr-mtls-scope"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("workflowexecution."));

    // Without a URI the common name is the subject: a reader, who may not write.
    let auditor = https_client(
        &pki.ca,
        Some(&pki.client_ca.client("auditor.example", None)),
    );
    let (status, body) = post(&auditor, &app, None, &event("rr-mtls-reader"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["required_role"], "writer");
    let read = auditor
        .get(app.url("/api/v1/audit/events?correlation_id=rr-mtls"))
        .header("prefer", "answers=native")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let page: Value = read.json().await.unwrap();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1), "{page}");

    // A certificate of the client CA whose subject has no entry: 401.
    let unknown = https_client(&pki.ca, Some(&pki.client_ca.client("intruder", None)));
    let (status, body) = post(&unknown, &app, None, &event("rr-mtls-unknown"))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("intruder"));

    // A certificate another CA issued, with a listed subject: the handshake fails.
    let forged = TestCa::new("forger").client("workflow", Some(WORKFLOW_URI));
    let refused = post(
        &https_client(&pki.ca, Some(&forged)),
        &app,
        None,
        &workflow_event("rr-mtls-forged"),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");

    // No certificate: a bearer token works as on any listener; neither: 401.
    let anonymous = https_client(&pki.ca, None);
    let (status, _) = post(&anonymous, &app, Some(&pki.writer), &event("rr-mtls-token"))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (status, _) = post(&anonymous, &app, None, &event("rr-mtls-none"))
        .await
        .unwrap();
    assert_eq!(status, 401);

    assert_eq!(app.db.count().await, 2);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM audit_events WHERE correlation_id IN ('rr-mtls', 'rr-mtls-token')")
            .await,
        2
    );
}

/// One TLS connection kept open by the test, trusting only `ca`.
async fn connect(
    port: u16,
    ca: &TestCa,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in datastorage::tls::certificates(&write_temp(&ca.pem())).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(datastorage::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), stream)
        .await
}

fn write_temp(text: &str) -> tempfile::TempPath {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file.into_temp_path()
}

/// `GET /health/live` on an open connection (kept alive); the answer's status.
async fn live(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> u16 {
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The head, then as many body bytes as it announces.
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_taken_without_a_restart_and_open_connections_keep_theirs() {
    let pki = pki();
    let Some(app) = pki.app(Backend::Sqlite, false).await else {
        return;
    };
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut open = connect(port, &pki.ca).await.expect("trusts the first CA");
    assert_eq!(live(&mut open).await, 200);

    // cert-manager renews the Secret with a certificate of a new CA (files swapped whole).
    let renewed = TestCa::new("renewed CA");
    renewed
        .server(&["localhost", "127.0.0.1"])
        .write(pki.dir.path(), "server");
    // A new connection gets the new certificate once the service has read it.
    eventually("the renewed certificate to be served", || async {
        connect(port, &renewed).await.ok().map(|_| ())
    })
    .await;
    assert!(
        connect(port, &pki.ca).await.is_err(),
        "a new connection still got the old certificate"
    );
    // The connection opened before the renewal goes on with its session.
    assert_eq!(live(&mut open).await, 200);

    // A renewal that does not work (a key of another certificate) keeps the one in force.
    let other = renewed.server(&["localhost"]);
    test_pki::replace(&pki.key, &other.key_pem);
    eventually("the broken renewal to be refused", || async {
        let text = datastorage::metrics::prometheus().render();
        text.lines()
            .any(|l| l.starts_with("datastorage_reload_failures_total{file=\"tls\"}"))
            .then_some(())
    })
    .await;
    let mut fresh = connect(port, &renewed)
        .await
        .expect("the renewed pair is kept");
    assert_eq!(live(&mut fresh).await, 200);
    let https = https_client(&renewed, None);
    let (status, body) = post(&https, &app, Some(&pki.writer), &event("rr-rotated"))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.db.count().await, 1);
}

/// The CA of the test PostgreSQL's certificate (`.ci/pg-tls` serves one and names it).
fn postgres_ca() -> Option<PathBuf> {
    match std::env::var_os("DATASTORAGE_TEST_PG_CA") {
        Some(path) => Some(PathBuf::from(path)),
        None => crate::helpers::service_missing(
            "PostgreSQL over TLS",
            "DATASTORAGE_TEST_PG_CA is not set (run .ci/pg-tls and export its output)",
        ),
    }
}

#[tokio::test]
async fn postgres_over_verified_tls() {
    let Some(ca) = postgres_ca() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let db = Arc::new(db);
    let name = db.text("SELECT current_database()").await;
    let verified = |ca: &Path| {
        format!(
            "postgres://postgres@localhost:5432/{name}?sslmode=verify-full&sslrootcert={}",
            ca.display()
        )
    };
    let app = start_on(
        db.clone(),
        Backend::Postgres,
        AppOptions {
            database_url: Some(verified(&ca)),
            ..AppOptions::default()
        },
    )
    .await;
    let (status, body) = app.post("/api/v1/audit/events", &event("rr-pg-tls")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(db.count().await, 1);
    // Every connection of the service is encrypted.
    let encrypted = db
        .text(&format!(
            "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = '{name}' AND a.application_name = 'datastorage'"
        ))
        .await;
    assert_eq!(
        encrypted
            .split_once('/')
            .map(|(tls, all)| tls == all && tls != "0"),
        Some(true),
        "encrypted/all connections of the service: {encrypted}"
    );

    // A server whose certificate the configured CA did not issue is refused.
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::new("not the database's CA").write(dir.path(), "other");
    let mut settings = datastorage::config::Settings::default();
    settings.store.url = Some(verified(&other));
    settings.server.data_dir = Some(dir.path().to_path_buf());
    settings.checkpoints.create_key = Some(true);
    let config = datastorage::config::Config::from_settings(settings).unwrap();
    let refused = datastorage::Application::build(config).await;
    let error = format!("{:#}", refused.err().expect("the database is not trusted"));
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(db.count().await, 1);
}

#[test]
fn the_production_guard_refuses_what_is_not_verified_tls() {
    use datastorage::config::{Config, DlqSettings, Settings, StoreSettings, Switch};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("guard CA");
    let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "server");
    let settings = |tls: bool, store: Option<&str>, dlq: Option<&str>| Settings {
        tls: TlsSettings {
            cert_file: tls.then(|| cert.clone()),
            key_file: tls.then(|| key.clone()),
            client_ca_file: None,
            require: Some(Switch(true)),
        },
        store: StoreSettings {
            url: store.map(str::to_owned),
            ..StoreSettings::default()
        },
        dlq: DlqSettings {
            url: dlq.map(str::to_owned),
            ..DlqSettings::default()
        },
        ..Settings::default()
    };
    let refusal = |s: Settings| Config::from_settings(s).unwrap_err().to_string();
    assert!(refusal(settings(false, None, None)).contains("tls.cert_file"));
    let pg = "postgres://audit@db:5432/audit";
    assert!(refusal(settings(true, Some(pg), None)).contains("sslmode=verify-full"));
    let pg_require = "postgres://audit@db:5432/audit?sslmode=require";
    assert!(refusal(settings(true, Some(pg_require), None)).contains("sslmode=verify-full"));
    let pg_verified = "postgres://audit@db:5432/audit?sslmode=verify-full&sslrootcert=/ca.crt";
    assert!(
        refusal(settings(true, Some(pg_verified), Some("redis://r:6379"))).contains("rediss://")
    );
    // Verified TLS everywhere; the embedded store and the journal DLQ are files.
    Config::from_settings(settings(true, Some(pg_verified), Some("rediss://r:6379"))).unwrap();
    Config::from_settings(settings(true, None, None)).unwrap();
}
