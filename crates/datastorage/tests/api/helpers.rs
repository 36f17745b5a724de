//! One harness for every API test: start the app on port 0 against its own database.
//!
//! PostgreSQL tests each get a fresh database (created here, dropped when the test ends); SQLite
//! tests each get a fresh file in a temporary directory. With `CI=true` a PostgreSQL that does not
//! answer fails the test; elsewhere the test says so loudly and skips.

use std::path::PathBuf;
use std::sync::Arc;

use audit_model::{AuditEvent, EventField, FieldKind, FieldRef};
use datastorage::config::{
    ApiSettings, AuthSettings, CheckpointSettings, Config, ConnectionSettings, DlqSettings,
    IngestSettings, ReplaySettings, RetentionSettings, ServerSettings, Settings, StoreSettings,
    Switch, TlsSettings,
};
use datastorage::shutdown::Shutdown;
use datastorage::Application;
use serde_json::{json, Value};
use sqlx::{PgPool, SqlitePool};

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database owned by one test.
pub enum TestDb {
    Postgres {
        name: String,
        url: String,
        pool: PgPool,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
        pool: SqlitePool,
    },
}

impl TestDb {
    /// A fresh, empty database, or `None` when PostgreSQL is unreachable outside CI.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Postgres => {
                let admin = match PgPool::connect(PG_ADMIN_URL).await {
                    Ok(p) => p,
                    Err(e) => return service_missing("PostgreSQL", &e.to_string()),
                };
                let name = format!("ds_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                let pool = PgPool::connect(&url)
                    .await
                    .expect("connect to test database");
                Some(TestDb::Postgres { name, url, pool })
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("audit.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = SqlitePool::connect(&url).await.expect("open sqlite");
                Some(TestDb::Sqlite {
                    _dir: dir,
                    path,
                    pool,
                })
            }
        }
    }

    /// The `--database-url` for this database.
    pub fn url(&self) -> String {
        match self {
            TestDb::Postgres { url, .. } => url.clone(),
            TestDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        }
    }

    /// Runs a query that returns one integer (the SQL must suit both stores).
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self {
            TestDb::Postgres { pool, .. } => {
                sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await
            }
            TestDb::Sqlite { pool, .. } => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query that returns one text column (cast it to text on PostgreSQL).
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            TestDb::Postgres { pool, .. } => {
                sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await
            }
            TestDb::Sqlite { pool, .. } => {
                sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement; the error text when it fails.
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self {
            TestDb::Postgres { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            TestDb::Sqlite { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .map_err(|e| e.to_string())
    }

    /// Runs a query that returns one text value.
    pub async fn text(&self, sql: &str) -> String {
        match self {
            TestDb::Postgres { pool, .. } => {
                sqlx::query_scalar::<_, String>(sql).fetch_one(pool).await
            }
            TestDb::Sqlite { pool, .. } => {
                sqlx::query_scalar::<_, String>(sql).fetch_one(pool).await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Number of stored events.
    /// The events in the log but the access trail's (which the service writes about the
    /// requests a test makes: exports, chain checks, DLQ administration, refusals).
    /// Applies the migrations numbered below `version` only: the schema a log of that time
    /// was written in.
    pub async fn migrate_before(&self, version: i64) {
        let full = match self {
            TestDb::Postgres { .. } => &datastorage::store::POSTGRES_MIGRATIONS,
            TestDb::Sqlite { .. } => &datastorage::store::SQLITE_MIGRATIONS,
        };
        let before = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                full.migrations
                    .iter()
                    .filter(|m| m.version < version)
                    .cloned()
                    .collect(),
            ),
            ..*full
        };
        match self {
            TestDb::Postgres { pool, .. } => before.run(pool).await.unwrap(),
            TestDb::Sqlite { pool, .. } => before.run(pool).await.unwrap(),
        }
    }

    /// The table of the events' content: `audit_content` on PostgreSQL (monthly partitions,
    /// what retention removes), `audit_events` on SQLite (one table).
    pub fn content_table(&self) -> &'static str {
        match self {
            TestDb::Postgres { .. } => "audit_content",
            TestDb::Sqlite { .. } => "audit_events",
        }
    }

    /// The table of the log's leaves: `audit_leaves` on PostgreSQL, `audit_events` on SQLite.
    pub fn leaf_table(&self) -> &'static str {
        match self {
            TestDb::Postgres { .. } => "audit_leaves",
            TestDb::Sqlite { .. } => "audit_events",
        }
    }

    /// The table holding `column` of the log (see [`Self::content_table`], [`Self::leaf_table`]).
    pub fn table_of(&self, column: &str) -> &'static str {
        const LEAF: [&str; 9] = [
            "seq",
            "event_id",
            "event_timestamp",
            "retention_days",
            "leaf_hash",
            "received_at",
            "submitted_by",
            "committed_at",
            "purged_at",
        ];
        if LEAF.contains(&column) {
            self.leaf_table()
        } else {
            self.content_table()
        }
    }

    pub async fn count(&self) -> i64 {
        self.scalar(
            "SELECT count(*) FROM audit_events WHERE event_type NOT LIKE 'datastorage.access.%'",
        )
        .await
    }

    /// Checks that each of these event ids is stored exactly once.
    pub async fn assert_each_stored_once<S: std::fmt::Display>(
        &self,
        ids: impl IntoIterator<Item = S>,
    ) {
        for id in ids {
            let n = self
                .scalar(&format!(
                    "SELECT count(*) FROM audit_events WHERE event_id = '{id}'"
                ))
                .await;
            assert_eq!(
                n, 1,
                "acknowledged event {id} is stored {n} times, not once"
            );
        }
    }

    /// Checks that `seq` runs 1..=count with no gap and no repeat; returns the count.
    pub async fn assert_seq_gap_free(&self) -> i64 {
        let count = self.count().await;
        let distinct = self
            .scalar("SELECT count(DISTINCT seq) FROM audit_events")
            .await;
        let min = self
            .scalar("SELECT coalesce(min(seq), 0) FROM audit_events")
            .await;
        let max = self
            .scalar("SELECT coalesce(max(seq), 0) FROM audit_events")
            .await;
        let head = self.scalar("SELECT last_seq FROM log_head").await;
        assert_eq!(distinct, count, "seq repeats");
        if count > 0 {
            assert_eq!((min, max), (1, count), "seq has gaps");
        }
        assert_eq!(head, count, "log head disagrees with the log");
        count
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name, .. } = self {
            let name = name.clone();
            // Drop runs inside the test's runtime; use a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = PgPool::connect(PG_ADMIN_URL).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// The store of a test database, opened directly (no HTTP in between).
pub async fn open_store(
    db: &TestDb,
    max_connections: u32,
) -> Arc<dyn datastorage::store::LogStore> {
    let target = match db {
        TestDb::Postgres { url, .. } => datastorage::config::DatabaseTarget::Postgres {
            url: url.clone(),
            password: None,
        },
        TestDb::Sqlite { path, .. } => {
            datastorage::config::DatabaseTarget::Sqlite { path: path.clone() }
        }
    };
    datastorage::store::connect(&target, max_connections)
        .await
        .expect("store opens")
}

/// In CI a missing service is a failure; elsewhere a loud skip.
pub fn service_missing<T>(service: &str, error: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{service} is required under CI but is not reachable: {error}");
    }
    eprintln!(
        "\n*** SKIPPED: {service} is not reachable ({error}); start it to run this test ***\n"
    );
    None
}

/// A running app and its database.
pub struct TestApp {
    pub base: String,
    /// Asks for this service's own answers (`Prefer: answers=native`), as its client does.
    pub client: reqwest::Client,
    /// Sends what the platform's generated client sends (no preference).
    pub platform: reqwest::Client,
    pub db: Arc<TestDb>,
    pub backend: Backend,
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub dlq: Arc<dyn datastorage::dlq::DlqBackend>,
    /// The app's data directory (its journal DLQ lives here unless a DLQ URL is given).
    pub data_dir: Arc<tempfile::TempDir>,
}

/// A client that asks for this service's own answers, as `audit-client` does.
pub fn native_client() -> reqwest::Client {
    native_client_with(None)
}

/// A client asking for the native answers, sending `Authorization: Bearer <token>` if given.
pub fn native_client_with(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "prefer",
        reqwest::header::HeaderValue::from_static("answers=native"),
    );
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a token"),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// Options a test may change.
#[derive(Default, Clone)]
pub struct AppOptions {
    pub body_limit_bytes: Option<usize>,
    pub body_budget_bytes: Option<usize>,
    pub batch_max_items: Option<usize>,
    pub stream_max_subscribers: Option<usize>,
    pub batch_max_events: Option<usize>,
    /// Overrides the database URL (for example a proxy in front of the test database).
    pub database_url: Option<String>,
    /// A streaming replica to read from, and how far behind it may replay.
    pub read_url: Option<String>,
    pub replica_max_lag: Option<String>,
    pub dlq_url: Option<String>,
    pub dlq_capacity: Option<u64>,
    pub dlq_redis_prefix: Option<String>,
    /// The CA of a `rediss://` DLQ.
    pub dlq_redis_ca_file: Option<PathBuf>,
    /// Reuse this data directory (a restart of the same app).
    pub data_dir: Option<Arc<tempfile::TempDir>>,
    pub replay_poll_interval: Option<String>,
    pub replay_schedule: Option<String>,
    pub embedding_dimension: Option<usize>,
    /// Listen on this address instead of a free port (a restart on the same port).
    pub listen: Option<String>,
    pub ingest_writers: Option<usize>,
    pub checkpoint_interval: Option<String>,
    /// Runs the retention worker at this interval.
    pub retention_interval: Option<String>,
    pub checkpoint_witness_file: Option<PathBuf>,
    pub body_read_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub cors_allowed_origins: Option<Vec<String>>,
    /// `platform` or `native` (the service's default when unset).
    pub write_answers: Option<String>,
    /// The header an authenticating proxy would set (none trusted when unset).
    pub trusted_user_header: Option<String>,
    /// Authentication (`auth.enabled`), the static tokens file, the open routes.
    pub auth: Option<Switch>,
    pub tokens_file: Option<PathBuf>,
    pub public_metrics: bool,
    pub public_checkpoints: bool,
    /// Kubernetes ServiceAccount tokens through this kubeconfig's API server.
    pub kubeconfig: Option<PathBuf>,
    pub review_cache_ttl: Option<String>,
    pub write_scopes: Option<Vec<String>>,
    /// Rate limits: per principal (events/s, burst) and per address (requests/s).
    pub rate_limit: Option<(u32, u32)>,
    pub address_rate_limit: Option<(u32, u32)>,
    /// TLS on the listener (the app's base URL is then `https://localhost:PORT`).
    pub tls: Option<TlsSettings>,
    /// C2SP witnesses (`<verifier key>@<URL>`) and their quorum.
    pub witnesses: Option<Vec<String>>,
    pub witness_quorum: Option<usize>,
    pub witness_token_file: Option<PathBuf>,
    pub witness_ca_file: Option<PathBuf>,
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> Option<TestApp> {
    let db = Arc::new(TestDb::create(backend).await?);
    Some(start_on(db, backend, options).await)
}

/// Starts an app on an existing test database.
pub async fn start_on(db: Arc<TestDb>, backend: Backend, options: AppOptions) -> TestApp {
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
    let settings = Settings {
        server: ServerSettings {
            listen: Some(
                options
                    .listen
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1:0".into()),
            ),
            data_dir: Some(data_dir.path().to_path_buf()),
            shutdown_delay: Some("0s".into()),
            ..ServerSettings::default()
        },
        store: StoreSettings {
            url: Some(options.database_url.clone().unwrap_or_else(|| db.url())),
            retry_interval: Some("200ms".into()),
            read_url: options.read_url.clone(),
            replica_max_lag: options.replica_max_lag.clone(),
            ..StoreSettings::default()
        },
        ingest: IngestSettings {
            writers: options.ingest_writers,
            batch_max_events: options.batch_max_events,
            ..IngestSettings::default()
        },
        dlq: DlqSettings {
            url: options.dlq_url.clone(),
            capacity: options.dlq_capacity,
            redis_prefix: options.dlq_redis_prefix.clone(),
            redis_ca_file: options.dlq_redis_ca_file.clone(),
            ..DlqSettings::default()
        },
        replay: ReplaySettings {
            poll_interval: Some(
                options
                    .replay_poll_interval
                    .clone()
                    .unwrap_or_else(|| "100ms".into()),
            ),
            schedule: options.replay_schedule.clone(),
            ..ReplaySettings::default()
        },
        api: ApiSettings {
            body_limit_bytes: options.body_limit_bytes,
            body_budget_bytes: options.body_budget_bytes,
            batch_max_items: options.batch_max_items,
            embedding_dimension: options.embedding_dimension,
            cors_allowed_origins: options.cors_allowed_origins.clone(),
            write_answers: options.write_answers.clone(),
            trusted_user_header: options.trusted_user_header.clone(),
            rate_limit: options.rate_limit.map(|r| r.0),
            rate_limit_burst: options.rate_limit.map(|r| r.1),
            address_rate_limit: options.address_rate_limit.map(|r| r.0),
            address_rate_limit_burst: options.address_rate_limit.map(|r| r.1),
            stream_max_subscribers: options.stream_max_subscribers,
            ui_public_key: None,
        },
        connections: ConnectionSettings {
            body_read_timeout: options.body_read_timeout.clone(),
            header_read_timeout: options.header_read_timeout.clone(),
            idle_timeout: options.idle_timeout.clone(),
            max_connections: options.max_connections,
            ..ConnectionSettings::default()
        },
        checkpoints: CheckpointSettings {
            create_key: Some(true),
            interval: Some(
                options
                    .checkpoint_interval
                    .clone()
                    .unwrap_or_else(|| "200ms".into()),
            ),
            witness_file: options.checkpoint_witness_file.clone(),
            witnesses: options.witnesses.clone(),
            witness_quorum: options.witness_quorum,
            witness_token_file: options.witness_token_file.clone(),
            witness_ca_file: options.witness_ca_file.clone(),
            ..CheckpointSettings::default()
        },
        retention: RetentionSettings {
            enabled: options.retention_interval.as_ref().map(|_| Switch(true)),
            interval: options.retention_interval.clone(),
            ..RetentionSettings::default()
        },
        auth: AuthSettings {
            enabled: options.auth,
            tokens_file: options.tokens_file.clone(),
            public_metrics: options.public_metrics.then_some(Switch(true)),
            public_checkpoints: options.public_checkpoints.then_some(Switch(true)),
            kubernetes: options.kubeconfig.as_ref().map(|_| Switch(true)),
            kubeconfig: options.kubeconfig.clone(),
            review_cache_ttl: options.review_cache_ttl.clone(),
            write_scopes: options.write_scopes.clone(),
            ..AuthSettings::default()
        },
        tls: options.tls.clone().unwrap_or_default(),
    };
    let config = Config::from_settings(settings).expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let base = match options.tls {
        // The name the test certificates are issued for.
        Some(_) => format!("https://localhost:{}", app.local_addr().port()),
        None => format!("http://{}", app.local_addr()),
    };
    let shutdown = app.shutdown();
    let dlq = app.dlq();
    let handle = tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base,
        client: native_client(),
        platform: reqwest::Client::new(),
        db,
        backend,
        shutdown,
        handle,
        dlq,
        data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(&self.client, path, body).await
    }

    /// A POST with `client` (`self.platform` sends what the platform's client sends).
    pub async fn post_as(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let r = client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits for a checkpoint covering `size` events and verifies the whole log with the
    /// published key, as an auditor's tool does; the report must be valid.
    pub async fn assert_log_verifies(&self, size: i64) -> datastorage::evidence::verify::Report {
        checkpoint_covering(self, size).await;
        let key = self.verifier().await;
        let store = self.open_store().await;
        let report = datastorage::evidence::verify::verify_store(&store, &key)
            .await
            .unwrap();
        assert!(report.is_valid(), "{report:?}");
        report
    }

    /// The published checkpoint key.
    pub async fn verifier(&self) -> audit_model::checkpoint::CheckpointVerifier {
        let (status, key) = self.get("/api/v1/audit/checkpoints/public-key").await;
        assert_eq!(status, 200, "{key}");
        audit_model::checkpoint::CheckpointVerifier::parse(key["public_key"].as_str().unwrap())
            .unwrap()
    }

    /// A store of its own on the app's database (as an auditor's tool opens it).
    pub async fn open_store(&self) -> Arc<dyn datastorage::store::LogStore> {
        let target = match self.db.as_ref() {
            TestDb::Postgres { url, .. } => datastorage::config::DatabaseTarget::Postgres {
                url: url.clone(),
                password: None,
            },
            TestDb::Sqlite { path, .. } => {
                datastorage::config::DatabaseTarget::Sqlite { path: path.clone() }
            }
        };
        datastorage::store::connect(&target, 1).await.unwrap()
    }

    /// Sends a request with a JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.metrics_with(None).await
    }

    /// The text of `/metrics`, fetched with a bearer token.
    pub async fn metrics_as(&self, token: &str) -> String {
        self.metrics_with(Some(token)).await
    }

    async fn metrics_with(&self, token: Option<&str>) -> String {
        let mut request = self.client.get(self.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("a metrics page")
    }

    /// Runs `UPDATE … SET {set} WHERE seq = {seq}` on the table of the column `set` changes,
    /// behind the service's back, its append-only triggers bypassed (as someone with the
    /// database's rights could).
    pub async fn change_row(&self, set: &str, seq: i64) {
        let column = set.split_whitespace().next().unwrap_or_default();
        let table = self.db.table_of(column);
        let update = format!("UPDATE {table} SET {set} WHERE seq = {seq};");
        match self.db.as_ref() {
            TestDb::Postgres { pool, .. } => {
                let mut conn = pool.acquire().await.unwrap();
                let sql = format!(
                    "SET session_replication_role = replica; {update} \
                     SET session_replication_role = origin;"
                );
                sqlx::raw_sql(&sql).execute(&mut *conn).await.unwrap();
            }
            TestDb::Sqlite { pool, .. } => {
                let sql = format!("DROP TRIGGER IF EXISTS audit_events_no_update; {update}");
                sqlx::raw_sql(&sql).execute(pool).await.unwrap();
            }
        }
    }

    /// Places a legal hold on `correlation` through the API; it must be placed.
    pub async fn place_hold(&self, correlation: &str) {
        let (status, body) = self
            .post(
                "/api/v1/audit/legal-hold",
                &json!({"correlation_id": correlation, "reason": "litigation"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Releases the legal hold on `correlation` through the API; it must be released.
    pub async fn release_hold(&self, correlation: &str) {
        let (status, body) = self
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/audit/legal-hold/{correlation}"),
                &json!({"release_reason": "settled"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(&self.client, path).await
    }

    /// A GET with `client` (`self.platform` sends what the platform's client sends).
    pub async fn get_as(&self, client: &reqwest::Client, path: &str) -> (u16, Value) {
        let r = client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// Waits until a checkpoint covers `size` events (checkpoints are signed every 200 ms here).
pub async fn checkpoint_covering(app: &TestApp, size: i64) -> Value {
    eventually("a checkpoint covering the events", || async {
        let (status, body) = app.get("/api/v1/audit/checkpoints/latest").await;
        (status == 200 && body["tree_size"].as_i64().unwrap() >= size).then_some(body)
    })
    .await
}

/// Polls `probe` until it answers (at most 30 s).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Writes `n` events of `correlation` in one batch, numbered in their `event_data` (`{"i": i}`);
/// every one must be created. The batch's per-event results.
pub async fn write_numbered(app: &TestApp, correlation: &str, n: usize) -> Vec<Value> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = event(correlation);
            e["event_data"] = json!({"i": i});
            e
        })
        .collect();
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!(events)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["created"], n, "{body}");
    body["results"].as_array().unwrap().clone()
}

/// A hash given as hex text.
pub fn hex_hash(hex_text: &Value) -> audit_model::merkle::Hash {
    let text = hex_text.as_str().expect("hex text");
    assert_eq!(text.len(), 64, "{text}");
    std::array::from_fn(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
}

/// A valid event; tests change what they need.
pub fn event(correlation_id: &str) -> Value {
    json!({
        "event_type": "notification.message.sent",
        "event_category": "notification",
        "event_action": "sent",
        "event_outcome": "success",
        "correlation_id": correlation_id,
        "event_data": {"channel": "slack", "attempt": 1}
    })
}

/// Generates `#[tokio::test]`s that run `$test(app)` against PostgreSQL and SQLite.
#[macro_export]
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use $crate::helpers::{spawn_app, Backend};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = spawn_app(Backend::Postgres).await {
                        super::$test(app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = spawn_app(Backend::Sqlite).await {
                        super::$test(app).await;
                    }
                }
            }
        )*
    };
}

/// A Server-Sent Events reader over a streaming response: each `next` is one event's `id` and
/// its JSON `data` (comments and keep-alives skipped); `None` when the stream ends.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, waiting at most `wait` for it (`None` also when none came in time).
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<(i64, Value)> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    pub async fn next(&mut self) -> Option<(i64, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return Some((id, serde_json::from_str(&data).expect("data is JSON")));
                }
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// An event of a platform controller at second `t` of the remediation.
pub fn platform_event(
    correlation: &str,
    t: u32,
    event_type: &str,
    outcome: &str,
    data: Value,
) -> Value {
    let category = match event_type.split('.').next().unwrap() {
        "orchestrator" => "orchestration",
        "aianalysis" => "analysis",
        other => other,
    };
    json!({
        "event_type": event_type,
        "event_category": category,
        "event_action": event_type.rsplit('.').next().unwrap(),
        "event_outcome": outcome,
        "event_timestamp": format!("2026-12-03T10:{:02}:{:02}Z", t / 60, t % 60),
        "correlation_id": correlation,
        "actor_type": "service",
        "actor_id": format!("{category}-controller"),
        "resource_type": "RemediationRequest",
        "resource_id": correlation,
        "event_data": data,
    })
}

/// Writes `events` into the one table `audit_events` of an earlier schema (see
/// [`TestDb::migrate_before`]), as a service of that time did: the fields but those in `absent`
/// (columns that schema did not have), numbered from 1, the receipt time as the commit time
/// (`ReceivedAt` must be in `absent`), and the head moved on.
pub async fn write_as_before(db: &TestDb, events: &[AuditEvent], absent: &[EventField]) {
    assert!(absent.contains(&EventField::ReceivedAt));
    let fields: Vec<EventField> = EventField::ALL
        .iter()
        .copied()
        .filter(|f| !absent.contains(f))
        .collect();
    let postgres = matches!(db, TestDb::Postgres { .. });
    let cast = |f: &EventField| match (postgres, f.kind()) {
        (false, _) => "",
        (_, FieldKind::Uuid) => "::uuid",
        (_, FieldKind::Time) => "::timestamptz",
        (_, FieldKind::Int64) => "::int8",
        (_, FieldKind::Int32) => "::int4",
        (_, FieldKind::Object) => "::jsonb",
        (_, FieldKind::Bool) => "::bool",
        _ => "",
    };
    let mark = |i: usize| {
        if postgres {
            format!("${i}")
        } else {
            format!("?{i}")
        }
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let values: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{}{}", mark(i + 2), cast(f)))
        .collect();
    let n = fields.len();
    let time = if postgres { "::timestamptz" } else { "" };
    let sql = format!(
        "INSERT INTO audit_events (seq, {}, leaf_hash, received_at) VALUES ({}{}, {}, {}, {}{time})",
        names.join(", "),
        mark(1),
        if postgres { "::int8" } else { "" },
        values.join(", "),
        mark(n + 2),
        mark(n + 3),
    );
    let received = |seq: usize| format!("2026-11-01T00:00:{seq:02}.000000Z");
    for (i, e) in events.iter().enumerate() {
        let seq = i + 1;
        let text: Vec<Option<String>> = fields
            .iter()
            .map(|&f| match e.get(f) {
                FieldRef::Absent => None,
                FieldRef::Uuid(u) => Some(u.to_string()),
                FieldRef::Text(t) => Some(t.to_string()),
                FieldRef::Time(t) => Some(audit_model::timestamp::format(&t)),
                FieldRef::Int(n) => Some(n.to_string()),
                FieldRef::Object(o) => Some(serde_json::to_string(o).unwrap()),
                FieldRef::Bool(b) => Some(b.to_string()),
            })
            .collect();
        let hash = e.leaf_hash().as_bytes().to_vec();
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query(&sql).bind(seq.to_string());
                for t in &text {
                    q = q.bind(t.clone());
                }
                q.bind(hash.clone())
                    .bind(received(seq))
                    .execute($pool)
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
            }};
        }
        match db {
            TestDb::Postgres { pool, .. } => run!(pool),
            TestDb::Sqlite { pool, .. } => run!(pool),
        }
    }
    let head = format!(
        "UPDATE log_head SET last_seq = {}, last_received_at = '{}' WHERE id = 1",
        events.len(),
        received(events.len())
    );
    db.execute(&head).await.unwrap();
}
