//! Layered configuration: command-line flag > environment variable > YAML file > default.
//!
//! [`Settings`] is the one definition of every setting, by section: each field is a flag (with
//! its environment variable, read by clap) and a key of the YAML file (`ingest.batch_max_events`
//! is `--batch-max-events`, `DATASTORAGE_BATCH_MAX_EVENTS` and `batch_max_events:` under
//! `ingest:`). figment layers the flags over the file; [`Config::from_settings`] fills the
//! defaults and checks each value, failing at start with a message naming the key (see
//! `config/datastorage.example.yaml`, and docs/configuration.md for the keys of earlier
//! versions, which still load). The database password can come from a file
//! (`store.password_file`), so it never has to sit in the config file or the URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use figment::providers::Serialized;
use figment::Figment;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Errors that stop the service before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid value for `{key}`{forms}: {message}")]
    Invalid {
        key: &'static str,
        /// The key's flag and environment variable.
        forms: String,
        message: String,
    },
    /// Values of the wrong type, or unknown keys; the message names each key and where it was
    /// given.
    #[error("{message}")]
    Settings { message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        forms: other_forms(key),
        message: message.into(),
    }
}

/// How a key (`section.key`) is given as a flag and as an environment variable.
fn other_forms(key: &str) -> String {
    MOVED_KEYS
        .iter()
        .find(|(_, new)| *new == key)
        .map(|(id, _)| {
            format!(
                " (--{}, DATASTORAGE_{})",
                id.replace('_', "-"),
                id.to_uppercase()
            )
        })
        .unwrap_or_default()
}

/// The arguments of `datastorage serve` and `migrate`: the config file, and every setting as a
/// flag (or its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// YAML config file.
    #[arg(long, env = "DATASTORAGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Every setting, by section: one definition for the flag (and its environment variable), the
/// YAML key (`section.key`) and the layering. All are optional here; [`Config::load`] applies
/// the defaults and checks the values.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerSettings,
    #[command(flatten, next_help_heading = "Store")]
    pub store: StoreSettings,
    #[command(flatten, next_help_heading = "Ingest")]
    pub ingest: IngestSettings,
    #[command(flatten, next_help_heading = "Dead-letter queue")]
    pub dlq: DlqSettings,
    #[command(flatten, next_help_heading = "Replay")]
    pub replay: ReplaySettings,
    #[command(flatten, next_help_heading = "API")]
    pub api: ApiSettings,
    #[command(flatten, next_help_heading = "Connections")]
    pub connections: ConnectionSettings,
    #[command(flatten, next_help_heading = "Checkpoints")]
    pub checkpoints: CheckpointSettings,
    #[command(flatten, next_help_heading = "Retention")]
    pub retention: RetentionSettings,
    #[command(flatten, next_help_heading = "Authentication")]
    pub auth: AuthSettings,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsSettings,
}

/// TLS on the listener, and the production guard (docs/security.md).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The listener's certificate chain (PEM); with `tls.key_file`, the listener speaks TLS
    /// only. Read again when it changes.
    #[arg(
        id = "tls_cert_file",
        long = "tls-cert-file",
        env = "DATASTORAGE_TLS_CERT_FILE"
    )]
    pub cert_file: Option<PathBuf>,
    /// The listener's private key (PEM).
    #[arg(
        id = "tls_key_file",
        long = "tls-key-file",
        env = "DATASTORAGE_TLS_KEY_FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// The CA that issues client certificates (PEM): clients are asked for one (mTLS), and a
    /// verified certificate authenticates its subject through the tokens file.
    #[arg(
        id = "tls_client_ca_file",
        long = "tls-client-ca-file",
        env = "DATASTORAGE_TLS_CLIENT_CA_FILE"
    )]
    pub client_ca_file: Option<PathBuf>,
    /// `true` or `false` (default): refuse to start on a plain-text listener, a PostgreSQL URL
    /// without `sslmode=verify-full`, or a Redis DLQ without TLS (`rediss://`).
    #[arg(
        id = "require_tls",
        long = "require-tls",
        env = "DATASTORAGE_REQUIRE_TLS"
    )]
    pub require: Option<Switch>,
}

/// The process: where it listens, where it keeps files, how it logs and stops.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(id = "listen", long = "listen", env = "DATASTORAGE_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the embedded database and local journals (default ./data).
    #[arg(id = "data_dir", long = "data-dir", env = "DATASTORAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `json` or `text`.
    #[arg(id = "log_format", long = "log-format", env = "DATASTORAGE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Time between readiness turning 503 and the listener closing (e.g. `5s`).
    #[arg(
        id = "shutdown_delay",
        long = "shutdown-delay",
        env = "DATASTORAGE_SHUTDOWN_DELAY"
    )]
    pub shutdown_delay: Option<String>,
    /// Longest wait for in-flight requests at shutdown (e.g. `30s`).
    #[arg(
        id = "drain_timeout",
        long = "drain-timeout",
        env = "DATASTORAGE_DRAIN_TIMEOUT"
    )]
    pub drain_timeout: Option<String>,
    /// OTLP/HTTP endpoint to export traces to (e.g. `http://otel-collector:4318`; spans go to
    /// its `/v1/traces`). Tracing is off without it.
    #[arg(
        id = "otlp_endpoint",
        long = "otlp-endpoint",
        env = "DATASTORAGE_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
    /// Share of the traces started here that are exported, 0 to 1 (default 1); a trace the
    /// caller sampled is always continued.
    #[arg(
        id = "trace_sample_ratio",
        long = "trace-sample-ratio",
        env = "DATASTORAGE_TRACE_SAMPLE_RATIO"
    )]
    pub trace_sample_ratio: Option<f64>,
}

/// The database the log lives in.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://…` or `sqlite://…` (default: a SQLite file under the data dir).
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATASTORAGE_DATABASE_URL"
    )]
    pub url: Option<String>,
    /// File holding the database password (for example a mounted Kubernetes Secret).
    #[arg(
        id = "database_password_file",
        long = "database-password-file",
        env = "DATASTORAGE_DATABASE_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Largest number of database connections.
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATASTORAGE_DATABASE_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<u32>,
    /// After the store fails, writes go straight to the DLQ for this long before the store is
    /// tried again (e.g. `1s`).
    #[arg(
        id = "store_retry_interval",
        long = "store-retry-interval",
        env = "DATASTORAGE_STORE_RETRY_INTERVAL"
    )]
    pub retry_interval: Option<String>,
    /// `postgres://…` of a streaming replica of the log's database: queries, timelines,
    /// exports, proofs and checkpoints are read from it; writes stay on the primary.
    #[arg(
        id = "database_read_url",
        long = "database-read-url",
        env = "DATASTORAGE_DATABASE_READ_URL"
    )]
    pub read_url: Option<String>,
    /// Reads go to the primary while the replica replays more than this far behind (e.g. `5s`).
    #[arg(
        id = "replica_max_lag",
        long = "replica-max-lag",
        env = "DATASTORAGE_REPLICA_MAX_LAG"
    )]
    pub replica_max_lag: Option<String>,
}

/// Group commit: many requests, one transaction.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Concurrent ingest writers (PostgreSQL; SQLite always uses one).
    #[arg(
        id = "ingest_writers",
        long = "ingest-writers",
        env = "DATASTORAGE_INGEST_WRITERS"
    )]
    pub writers: Option<usize>,
    /// Most events committed in one transaction.
    #[arg(
        id = "batch_max_events",
        long = "batch-max-events",
        env = "DATASTORAGE_BATCH_MAX_EVENTS"
    )]
    pub batch_max_events: Option<usize>,
    /// How long the writer waits for more events before committing (e.g. `0s`, `500us`, `2ms`).
    #[arg(
        id = "batch_linger",
        long = "batch-linger",
        env = "DATASTORAGE_BATCH_LINGER"
    )]
    pub batch_linger: Option<String>,
    /// Most submissions (one per request) waiting for the writer before requests wait for room.
    #[arg(
        id = "queue_capacity",
        long = "queue-capacity",
        env = "DATASTORAGE_QUEUE_CAPACITY"
    )]
    pub queue_capacity: Option<usize>,
}

/// The dead-letter queue: where events wait while the database cannot take them.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSettings {
    /// `redis://…` or `file://DIR` (default: a journal under the data dir).
    #[arg(id = "dlq_url", long = "dlq-url", env = "DATASTORAGE_DLQ_URL")]
    pub url: Option<String>,
    /// Most events the DLQ holds; beyond it writes are refused (503), never evicted.
    #[arg(
        id = "dlq_capacity",
        long = "dlq-capacity",
        env = "DATASTORAGE_DLQ_CAPACITY"
    )]
    pub capacity: Option<u64>,
    /// Key prefix of the Redis DLQ streams.
    #[arg(
        id = "dlq_redis_prefix",
        long = "dlq-redis-prefix",
        env = "DATASTORAGE_DLQ_REDIS_PREFIX"
    )]
    pub redis_prefix: Option<String>,
    /// The CA (PEM) that issued the Redis server's certificate, for `rediss://`; unset: the
    /// public web roots.
    #[arg(
        id = "dlq_redis_ca_file",
        long = "dlq-redis-ca-file",
        env = "DATASTORAGE_DLQ_REDIS_CA_FILE"
    )]
    pub redis_ca_file: Option<PathBuf>,
    /// Redis DLQ entries held this long by a silent replica are taken over (e.g. `60s`).
    #[arg(
        id = "dlq_claim_idle",
        long = "dlq-claim-idle",
        env = "DATASTORAGE_DLQ_CLAIM_IDLE"
    )]
    pub claim_idle: Option<String>,
}

/// The replay worker, which drains the DLQ into the store.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    /// Backoff between failed replays of one entry (e.g. `1m,5m,15m,1h,4h,24h`).
    #[arg(
        id = "replay_schedule",
        long = "replay-schedule",
        env = "DATASTORAGE_REPLAY_SCHEDULE"
    )]
    pub schedule: Option<String>,
    /// Entries replayed per transaction.
    #[arg(
        id = "replay_batch",
        long = "replay-batch",
        env = "DATASTORAGE_REPLAY_BATCH"
    )]
    pub batch: Option<usize>,
    /// How often the replay worker checks whether the store answers (e.g. `1s`).
    #[arg(
        id = "replay_poll_interval",
        long = "replay-poll-interval",
        env = "DATASTORAGE_REPLAY_POLL_INTERVAL"
    )]
    pub poll_interval: Option<String>,
    /// How long the replay worker keeps draining at shutdown (e.g. `5s`).
    #[arg(
        id = "replay_shutdown_drain",
        long = "replay-shutdown-drain",
        env = "DATASTORAGE_REPLAY_SHUTDOWN_DRAIN"
    )]
    pub shutdown_drain: Option<String>,
}

/// What one request may carry, and who may call from a browser.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest request body in bytes.
    #[arg(
        id = "body_limit_bytes",
        long = "body-limit-bytes",
        env = "DATASTORAGE_BODY_LIMIT_BYTES"
    )]
    pub body_limit_bytes: Option<usize>,
    /// Most bytes of request bodies held at once; beyond it requests wait their turn.
    #[arg(
        id = "body_budget_bytes",
        long = "body-budget-bytes",
        env = "DATASTORAGE_BODY_BUDGET_BYTES"
    )]
    pub body_budget_bytes: Option<usize>,
    /// Most events in one batch request.
    #[arg(
        id = "batch_max_items",
        long = "batch-max-items",
        env = "DATASTORAGE_BATCH_MAX_ITEMS"
    )]
    pub batch_max_items: Option<usize>,
    /// Most live event streams (`/api/v1/audit/events/stream`) open at once.
    #[arg(
        id = "stream_max_subscribers",
        long = "stream-max-subscribers",
        env = "DATASTORAGE_STREAM_MAX_SUBSCRIBERS"
    )]
    pub stream_max_subscribers: Option<usize>,
    /// The log key the explorer (`/ui/`) checks checkpoints with, pinned in its pages
    /// (`<origin>+<hash>+<key>`); default the service's own checkpoint key.
    #[arg(
        id = "ui_public_key",
        long = "ui-public-key",
        env = "DATASTORAGE_UI_PUBLIC_KEY"
    )]
    pub ui_public_key: Option<String>,
    /// Required length of an AI decision's embedding.
    #[arg(
        id = "embedding_dimension",
        long = "embedding-dimension",
        env = "DATASTORAGE_EMBEDDING_DIMENSION"
    )]
    pub embedding_dimension: Option<usize>,
    /// Origins whose pages may call the API from a browser (CORS), comma-separated; none by
    /// default (the explorer is same-origin).
    #[arg(
        id = "cors_allowed_origins",
        long = "cors-allowed-origins",
        env = "DATASTORAGE_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// How writes are answered when the request does not say (`Prefer: answers=…`):
    /// `platform` (the platform's Data Storage API; the default) or `native`.
    #[arg(
        id = "write_answers",
        long = "write-answers",
        env = "DATASTORAGE_WRITE_ANSWERS"
    )]
    pub write_answers: Option<String>,
    /// The header in which an authenticating proxy in front of the service passes the caller's
    /// identity (the platform's is `X-Auth-Request-User`); unset, no such header is trusted.
    #[arg(
        id = "trusted_user_header",
        long = "trusted-user-header",
        env = "DATASTORAGE_TRUSTED_USER_HEADER"
    )]
    pub trusted_user_header: Option<String>,
    /// Events per second each principal may write (a read counts one); unset: no limit. Over
    /// it: 429 with `Retry-After`.
    #[arg(id = "rate_limit", long = "rate-limit", env = "DATASTORAGE_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Events a principal may send at once above its rate (default twice the rate).
    #[arg(
        id = "rate_limit_burst",
        long = "rate-limit-burst",
        env = "DATASTORAGE_RATE_LIMIT_BURST"
    )]
    pub rate_limit_burst: Option<u32>,
    /// Requests per second from one client address, counted before its credential is checked;
    /// unset: no limit.
    #[arg(
        id = "address_rate_limit",
        long = "address-rate-limit",
        env = "DATASTORAGE_ADDRESS_RATE_LIMIT"
    )]
    pub address_rate_limit: Option<u32>,
    /// Requests one address may send at once above its rate (default twice the rate).
    #[arg(
        id = "address_rate_limit_burst",
        long = "address-rate-limit-burst",
        env = "DATASTORAGE_ADDRESS_RATE_LIMIT_BURST"
    )]
    pub address_rate_limit_burst: Option<u32>,
}

/// How long a client may take, and how many may be connected.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Longest pause between two parts of a request body, and longest wait for room in the body
    /// budget (e.g. `10s`); beyond it the request is answered 408 (or 503).
    #[arg(
        id = "body_read_timeout",
        long = "body-read-timeout",
        env = "DATASTORAGE_BODY_READ_TIMEOUT"
    )]
    pub body_read_timeout: Option<String>,
    /// Slowest average rate a body may arrive at after its first body_read_timeout, in bytes per
    /// second.
    #[arg(
        id = "body_min_rate_bytes_per_second",
        long = "body-min-rate-bytes-per-second",
        env = "DATASTORAGE_BODY_MIN_RATE_BYTES_PER_SECOND"
    )]
    pub body_min_rate_bytes_per_second: Option<u64>,
    /// Longest time from the first byte of a request head to its end (e.g. `10s`).
    #[arg(
        id = "header_read_timeout",
        long = "header-read-timeout",
        env = "DATASTORAGE_HEADER_READ_TIMEOUT"
    )]
    pub header_read_timeout: Option<String>,
    /// A connection that sends and reads nothing this long between requests is closed (e.g.
    /// `120s`; above the 90 s that Go's and reqwest's pools keep idle connections).
    #[arg(
        id = "idle_timeout",
        long = "idle-timeout",
        env = "DATASTORAGE_IDLE_TIMEOUT"
    )]
    pub idle_timeout: Option<String>,
    /// Most connections open at once; beyond it a connection is answered 503 and closed.
    #[arg(
        id = "max_connections",
        long = "max-connections",
        env = "DATASTORAGE_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<usize>,
}

/// Signed Merkle checkpoints over the log.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    /// `true` (default) or `false` (`enabled`/`disabled` are read too): signed Merkle
    /// checkpoints over the log.
    #[arg(
        id = "checkpoints",
        long = "checkpoints",
        env = "DATASTORAGE_CHECKPOINTS"
    )]
    pub enabled: Option<Switch>,
    /// The checkpoint signing key (from `datastorage keygen`); default `<data_dir>/checkpoint.key`.
    #[arg(
        id = "checkpoint_key_file",
        long = "checkpoint-key-file",
        env = "DATASTORAGE_CHECKPOINT_KEY_FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// How often new events are covered by a signed checkpoint (e.g. `1s`).
    #[arg(
        id = "checkpoint_interval",
        long = "checkpoint-interval",
        env = "DATASTORAGE_CHECKPOINT_INTERVAL"
    )]
    pub interval: Option<String>,
    /// Create the signing key when the key file is missing (for a local or embedded setup;
    /// production keys are made with `datastorage keygen` and mounted).
    #[arg(
        id = "create_checkpoint_key",
        long = "create-checkpoint-key",
        env = "DATASTORAGE_CREATE_CHECKPOINT_KEY",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub create_key: Option<bool>,
    /// The log's name in its checkpoints, used when the key is created.
    #[arg(
        id = "checkpoint_origin",
        long = "checkpoint-origin",
        env = "DATASTORAGE_CHECKPOINT_ORIGIN"
    )]
    pub origin: Option<String>,
    /// Also append every signed checkpoint to this file, kept outside the database.
    #[arg(
        id = "checkpoint_witness_file",
        long = "checkpoint-witness-file",
        env = "DATASTORAGE_CHECKPOINT_WITNESS_FILE"
    )]
    pub witness_file: Option<PathBuf>,
    /// C2SP witnesses asked to cosign every checkpoint: `<verifier key>@<URL prefix>`, several
    /// separated by `,` (the key names the witness; `add-checkpoint` is under the prefix).
    #[arg(
        id = "witnesses",
        long = "witnesses",
        env = "DATASTORAGE_WITNESSES",
        value_delimiter = ','
    )]
    pub witnesses: Option<Vec<String>>,
    /// How many of the witnesses must cosign a checkpoint for it to count as witnessed
    /// (default: a majority).
    #[arg(
        id = "witness_quorum",
        long = "witness-quorum",
        env = "DATASTORAGE_WITNESS_QUORUM"
    )]
    pub witness_quorum: Option<usize>,
    /// A bearer token (in a file, read again for each submission) sent to the witnesses.
    #[arg(
        id = "witness_token_file",
        long = "witness-token-file",
        env = "DATASTORAGE_WITNESS_TOKEN_FILE"
    )]
    pub witness_token_file: Option<PathBuf>,
    /// A CA bundle (PEM) the witnesses' `https` certificates are verified against, besides the
    /// public web roots.
    #[arg(
        id = "witness_ca_file",
        long = "witness-ca-file",
        env = "DATASTORAGE_WITNESS_CA_FILE"
    )]
    pub witness_ca_file: Option<PathBuf>,
}

/// The retention worker.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// `true` or `false` (default; `enabled`/`disabled` are read too): purge the content of
    /// events past their retention that no legal hold keeps.
    #[arg(id = "retention", long = "retention", env = "DATASTORAGE_RETENTION")]
    pub enabled: Option<Switch>,
    /// Time between retention runs (e.g. `1h`).
    #[arg(
        id = "retention_interval",
        long = "retention-interval",
        env = "DATASTORAGE_RETENTION_INTERVAL"
    )]
    pub interval: Option<String>,
    /// Most events purged per transaction.
    #[arg(
        id = "retention_batch_size",
        long = "retention-batch-size",
        env = "DATASTORAGE_RETENTION_BATCH_SIZE"
    )]
    pub batch_size: Option<i64>,
}

/// Who may call: the authenticators and the routes open without a credential
/// (docs/security.md).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `enabled` or `disabled`. Unset: enabled when an authenticator is configured; with none,
    /// the service serves unauthenticated only on a loopback address and refuses to start on
    /// any other unless this is `disabled` explicitly.
    #[arg(id = "auth", long = "auth", env = "DATASTORAGE_AUTH")]
    pub enabled: Option<Switch>,
    /// The static tokens file (hashes, principals, roles, event types; see `datastorage token
    /// create`), read again when it changes.
    #[arg(
        id = "tokens_file",
        long = "tokens-file",
        env = "DATASTORAGE_TOKENS_FILE"
    )]
    pub tokens_file: Option<PathBuf>,
    /// `true` or `false` (default): `/metrics` answers without a credential.
    #[arg(
        id = "public_metrics",
        long = "public-metrics",
        env = "DATASTORAGE_PUBLIC_METRICS"
    )]
    pub public_metrics: Option<Switch>,
    /// `true` or `false` (default): the checkpoints, the public key and consistency proofs
    /// answer without a credential (for witnesses and auditors).
    #[arg(
        id = "public_checkpoints",
        long = "public-checkpoints",
        env = "DATASTORAGE_PUBLIC_CHECKPOINTS"
    )]
    pub public_checkpoints: Option<Switch>,
    /// `true` or `false` (default): Kubernetes ServiceAccount tokens, through the API server's
    /// TokenReview and SubjectAccessReview.
    #[arg(
        id = "kubernetes_auth",
        long = "kubernetes-auth",
        env = "DATASTORAGE_KUBERNETES_AUTH"
    )]
    pub kubernetes: Option<Switch>,
    /// The audience ServiceAccount tokens must be issued for (default `datastorage`).
    #[arg(
        id = "token_audience",
        long = "token-audience",
        env = "DATASTORAGE_TOKEN_AUDIENCE"
    )]
    pub audience: Option<String>,
    /// The kubeconfig to reach the API server with; default the in-cluster configuration.
    #[arg(id = "kubeconfig", long = "kubeconfig", env = "DATASTORAGE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// How long a TokenReview or SubjectAccessReview answer is kept (default `30s`); while the
    /// API server is unreachable a kept answer holds until then.
    #[arg(
        id = "review_cache_ttl",
        long = "review-cache-ttl",
        env = "DATASTORAGE_REVIEW_CACHE_TTL"
    )]
    pub review_cache_ttl: Option<String>,
    /// Most review answers kept (default 10000).
    #[arg(
        id = "review_cache_size",
        long = "review-cache-size",
        env = "DATASTORAGE_REVIEW_CACHE_SIZE"
    )]
    pub review_cache_size: Option<u64>,
    /// The event types each ServiceAccount may write: `PRINCIPAL=PREFIX[,PREFIX…]`, several
    /// separated by `;` (e.g. `system:serviceaccount:kubernaut:notification=notification.`).
    #[arg(
        id = "write_scopes",
        long = "write-scopes",
        env = "DATASTORAGE_WRITE_SCOPES",
        value_delimiter = ';'
    )]
    pub write_scopes: Option<Vec<String>>,
}

/// An on/off setting: `true`/`false`, also read as `enabled`/`disabled` (the spelling of
/// earlier versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(pub bool);

impl FromStr for Switch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "true" | "enabled" => Ok(Switch(true)),
            "false" | "disabled" => Ok(Switch(false)),
            other => Err(format!("{other:?}: expected true or false")),
        }
    }
}

impl Serialize for Switch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spelling {
            Bool(bool),
            Text(String),
        }
        match Spelling::deserialize(deserializer)? {
            Spelling::Bool(on) => Ok(Switch(on)),
            Spelling::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A flat key of an earlier version and its place now (`section.key`).
pub type MovedKey = (&'static str, &'static str);

/// Trace export: off unless an OTLP endpoint (an http or https URL) is given.
fn trace_settings(server: &ServerSettings) -> Result<audit_tracing::TraceSettings, ConfigError> {
    let endpoint = server
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if let Some(endpoint) = endpoint {
        let scheme = endpoint.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("http" | "https")) {
            return Err(invalid(
                "server.otlp_endpoint",
                format!("{endpoint:?}: expected an http:// or https:// URL"),
            ));
        }
    }
    let sample_ratio = server.trace_sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid(
            "server.trace_sample_ratio",
            format!("{sample_ratio}: must be from 0 to 1"),
        ));
    }
    Ok(audit_tracing::TraceSettings {
        endpoint: endpoint.map(str::to_string),
        sample_ratio,
        service_name: "datastorage".to_string(),
    })
}

/// The flat keys of earlier config files and where each now lives (`section.key`); a file
/// using them still loads, with a warning naming the new key. Also each flag's id.
const MOVED_KEYS: [(&str, &str); 71] = [
    ("listen", "server.listen"),
    ("data_dir", "server.data_dir"),
    ("log_format", "server.log_format"),
    ("shutdown_delay", "server.shutdown_delay"),
    ("drain_timeout", "server.drain_timeout"),
    ("otlp_endpoint", "server.otlp_endpoint"),
    ("trace_sample_ratio", "server.trace_sample_ratio"),
    ("database_url", "store.url"),
    ("database_password_file", "store.password_file"),
    ("database_max_connections", "store.max_connections"),
    ("store_retry_interval", "store.retry_interval"),
    ("database_read_url", "store.read_url"),
    ("replica_max_lag", "store.replica_max_lag"),
    ("ingest_writers", "ingest.writers"),
    ("batch_max_events", "ingest.batch_max_events"),
    ("batch_linger", "ingest.batch_linger"),
    ("queue_capacity", "ingest.queue_capacity"),
    ("dlq_url", "dlq.url"),
    ("dlq_capacity", "dlq.capacity"),
    ("dlq_redis_prefix", "dlq.redis_prefix"),
    ("dlq_claim_idle", "dlq.claim_idle"),
    ("dlq_redis_ca_file", "dlq.redis_ca_file"),
    ("replay_schedule", "replay.schedule"),
    ("replay_batch", "replay.batch"),
    ("replay_poll_interval", "replay.poll_interval"),
    ("replay_shutdown_drain", "replay.shutdown_drain"),
    ("body_limit_bytes", "api.body_limit_bytes"),
    ("body_budget_bytes", "api.body_budget_bytes"),
    ("batch_max_items", "api.batch_max_items"),
    ("stream_max_subscribers", "api.stream_max_subscribers"),
    ("ui_public_key", "api.ui_public_key"),
    ("embedding_dimension", "api.embedding_dimension"),
    ("cors_allowed_origins", "api.cors_allowed_origins"),
    ("write_answers", "api.write_answers"),
    ("trusted_user_header", "api.trusted_user_header"),
    ("rate_limit", "api.rate_limit"),
    ("rate_limit_burst", "api.rate_limit_burst"),
    ("address_rate_limit", "api.address_rate_limit"),
    ("address_rate_limit_burst", "api.address_rate_limit_burst"),
    ("body_read_timeout", "connections.body_read_timeout"),
    (
        "body_min_rate_bytes_per_second",
        "connections.body_min_rate_bytes_per_second",
    ),
    ("header_read_timeout", "connections.header_read_timeout"),
    ("idle_timeout", "connections.idle_timeout"),
    ("max_connections", "connections.max_connections"),
    ("checkpoints", "checkpoints.enabled"),
    ("checkpoint_key_file", "checkpoints.key_file"),
    ("checkpoint_interval", "checkpoints.interval"),
    ("create_checkpoint_key", "checkpoints.create_key"),
    ("checkpoint_origin", "checkpoints.origin"),
    ("checkpoint_witness_file", "checkpoints.witness_file"),
    ("witnesses", "checkpoints.witnesses"),
    ("witness_quorum", "checkpoints.witness_quorum"),
    ("witness_token_file", "checkpoints.witness_token_file"),
    ("witness_ca_file", "checkpoints.witness_ca_file"),
    ("retention", "retention.enabled"),
    ("retention_interval", "retention.interval"),
    ("retention_batch_size", "retention.batch_size"),
    ("auth", "auth.enabled"),
    ("tokens_file", "auth.tokens_file"),
    ("public_metrics", "auth.public_metrics"),
    ("public_checkpoints", "auth.public_checkpoints"),
    ("kubernetes_auth", "auth.kubernetes"),
    ("token_audience", "auth.audience"),
    ("kubeconfig", "auth.kubeconfig"),
    ("review_cache_ttl", "auth.review_cache_ttl"),
    ("review_cache_size", "auth.review_cache_size"),
    ("write_scopes", "auth.write_scopes"),
    ("tls_cert_file", "tls.cert_file"),
    ("tls_key_file", "tls.key_file"),
    ("tls_client_ca_file", "tls.client_ca_file"),
    ("require_tls", "tls.require"),
];

/// A streaming replica of the log's PostgreSQL database, read instead of the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplica {
    pub url: String,
    /// The primary's password (a replica has the primary's roles).
    pub password: Option<String>,
    /// Reads go to the primary while the replica replays further behind than this.
    pub max_lag: Duration,
}

/// Where the log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Postgres {
        url: String,
        password: Option<String>,
    },
    Sqlite {
        path: PathBuf,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Group-commit settings of the ingest writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestConfig {
    /// Concurrent writer tasks (each commits its own batches; one collects while another commits).
    pub writers: usize,
    pub batch_max_events: usize,
    pub batch_linger: Duration,
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            writers: 1,
            batch_max_events: 500,
            batch_linger: Duration::ZERO,
            queue_capacity: 10_000,
        }
    }
}

/// The replay worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayConfig {
    pub schedule: Vec<Duration>,
    pub batch: usize,
    pub poll_interval: Duration,
    pub shutdown_drain: Duration,
}

/// The default origin (and key name) of the log's checkpoints.
pub const DEFAULT_ORIGIN: &str = "kubernaut.ai/audit";

/// Default bytes of request bodies held at once (raised to the body limit when that is larger).
const DEFAULT_BODY_BUDGET: usize = 16 * 1024 * 1024;

/// Signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    pub key_file: PathBuf,
    pub interval: Duration,
    pub create_key: bool,
    pub origin: String,
    /// Where every checkpoint is witnessed, if anywhere.
    pub witness_file: Option<PathBuf>,
    /// The witnesses asked to cosign, and how many must.
    pub witnesses: Option<crate::evidence::cosign::WitnessSet>,
}

/// The retention worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    pub interval: Duration,
    pub batch_size: i64,
}

/// How callers are authenticated (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `None`: authentication is disabled.
    pub required: Option<Authenticators>,
    pub public_metrics: bool,
    pub public_checkpoints: bool,
    /// Per principal (events per second) and per client address (requests per second).
    pub rate_limit: Option<crate::auth::limits::Rate>,
    pub address_rate_limit: Option<crate::auth::limits::Rate>,
    /// Disabled only because nothing is configured and the listener is on loopback (logged as
    /// a warning at start).
    pub disabled_by_default: bool,
}

/// The configured authenticators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticators {
    pub tokens_file: Option<PathBuf>,
    pub kubernetes: Option<KubernetesAuth>,
}

/// ServiceAccount tokens through the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesAuth {
    pub audience: String,
    pub kubeconfig: Option<PathBuf>,
    pub cache_ttl: Duration,
    pub cache_size: u64,
    pub write_scopes: std::collections::BTreeMap<String, Vec<String>>,
}

/// How long a client may take, and how many may be connected.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub body_read_timeout: Duration,
    pub body_min_rate_bytes_per_second: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub cors_allowed_origins: Vec<axum::http::HeaderValue>,
}

/// The validated configuration of `datastorage serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: DatabaseTarget,
    pub database_max_connections: u32,
    /// The streaming replica reads are served from, if any (PostgreSQL only).
    pub read_replica: Option<ReadReplica>,
    pub dlq: crate::dlq::DlqConfig,
    pub replay: ReplayConfig,
    pub store_retry_interval: Duration,
    pub data_dir: PathBuf,
    pub ingest: IngestConfig,
    pub body_limit_bytes: usize,
    pub body_budget_bytes: usize,
    pub batch_max_items: usize,
    /// Most live event streams open at once.
    pub stream_max_subscribers: usize,
    /// The log key the explorer's pages pin (default: the service's own).
    pub ui_public_key: Option<String>,
    /// How writes are answered unless the request asks otherwise.
    pub write_answers: crate::http::answers::WriteAnswers,
    /// The header whose identity the proxy in front vouches for (none trusted when unset).
    pub trusted_user_header: Option<axum::http::HeaderName>,
    /// Time limits of connections and request bodies.
    pub http: HttpLimits,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    /// Where traces are exported (off by default).
    pub traces: audit_tracing::TraceSettings,
    pub embedding_dimension: usize,
    /// None when checkpoints are disabled.
    pub checkpoint: Option<CheckpointConfig>,
    /// None when the retention worker is disabled (the default).
    pub retention: Option<RetentionConfig>,
    pub auth: AuthConfig,
    /// TLS on the listener; none: plain text.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Keys the file spelled as earlier versions did (flat), with their place now.
    pub moved_keys: Vec<MovedKey>,
}

impl Config {
    /// Layers the flags (and their environment variables, read by clap) over the file, checks
    /// every value and fills the defaults.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let (settings, moved_keys) = Settings::layered(args)?;
        Ok(Config {
            moved_keys,
            ..Config::from_settings(settings)?
        })
    }

    /// Logs a warning for each key the file spelled as earlier versions did (once logging is
    /// set up).
    pub fn warn_moved_keys(&self) {
        for (old, new) in &self.moved_keys {
            tracing::warn!(
                key = old,
                now = new,
                "a config key has moved: write it as {new}"
            );
        }
    }

    /// The validated configuration of merged settings; errors name the key (`section.key`).
    pub fn from_settings(s: Settings) -> Result<Config, ConfigError> {
        let traces = trace_settings(&s.server)?;
        let listen_text = s
            .server
            .listen
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen = SocketAddr::from_str(&listen_text)
            .map_err(|e| invalid("server.listen", format!("{listen_text:?}: {e}")))?;
        let data_dir = s.server.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database = store_target(&s.store, &data_dir)?;
        let database_max_connections = s.store.max_connections.unwrap_or(16);
        if database_max_connections == 0 {
            return Err(invalid("store.max_connections", "must be at least 1"));
        }
        let sqlite = matches!(database, DatabaseTarget::Sqlite { .. });
        let api = &s.api;
        let body_limit_bytes = api.body_limit_bytes.unwrap_or(5 * 1024 * 1024);
        if body_limit_bytes < 1024 {
            return Err(invalid("api.body_limit_bytes", "must be at least 1024"));
        }
        let body_budget_bytes = api
            .body_budget_bytes
            .unwrap_or(DEFAULT_BODY_BUDGET.max(body_limit_bytes));
        if body_budget_bytes < body_limit_bytes {
            return Err(invalid(
                "api.body_budget_bytes",
                "must be at least body_limit_bytes (one largest body must fit)",
            ));
        }
        let batch_max_items = api.batch_max_items.unwrap_or(1000);
        if !(1..=100_000).contains(&batch_max_items) {
            return Err(invalid(
                "api.batch_max_items",
                "must be between 1 and 100000",
            ));
        }
        let stream_max_subscribers = api.stream_max_subscribers.unwrap_or(64);
        if !(1..=10_000).contains(&stream_max_subscribers) {
            return Err(invalid(
                "api.stream_max_subscribers",
                "must be between 1 and 10000",
            ));
        }
        if let Some(key) = &api.ui_public_key {
            audit_model::checkpoint::CheckpointVerifier::parse(key).map_err(|e| {
                invalid(
                    "api.ui_public_key",
                    format!("is not a checkpoint verifier key: {e}"),
                )
            })?;
        }
        let write_answers = match api.write_answers.as_deref() {
            None => crate::http::answers::WriteAnswers::default(),
            Some(name) => crate::http::answers::WriteAnswers::from_name(name).ok_or_else(|| {
                invalid(
                    "api.write_answers",
                    format!("{name:?}: expected platform or native"),
                )
            })?,
        };
        let trusted_user_header = api
            .trusted_user_header
            .as_deref()
            .map(|name| {
                axum::http::HeaderName::try_from(name.trim()).map_err(|_| {
                    invalid(
                        "api.trusted_user_header",
                        format!("{name:?} is not a header name"),
                    )
                })
            })
            .transpose()?;
        let embedding_dimension = api.embedding_dimension.unwrap_or(1536);
        if !(1..=65_536).contains(&embedding_dimension) {
            return Err(invalid(
                "api.embedding_dimension",
                "must be between 1 and 65536",
            ));
        }
        let log_format = match s.server.log_format.as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(invalid(
                    "server.log_format",
                    format!("{other:?}: expected json or text"),
                ))
            }
        };
        let tls = tls_files(&s.tls, &s.auth)?;
        let dlq = dlq_config(&s.dlq, &data_dir)?;
        let read_replica = read_replica(&s.store, &database)?;
        if s.tls.require.is_some_and(|Switch(on)| on) {
            require_tls(tls.as_ref(), &database, &dlq)?;
            if let Some(replica) = &read_replica {
                require_verified_postgres(&replica.url)?;
            }
        }
        Ok(Config {
            tls,
            auth: auth_config(&s.auth, &s.api, listen)?,
            checkpoint: checkpoint_config(&s.checkpoints, &data_dir)?,
            retention: retention_config(&s.retention)?,
            embedding_dimension,
            listen,
            dlq,
            replay: replay_config(&s.replay)?,
            store_retry_interval: duration(
                "store.retry_interval",
                &s.store.retry_interval,
                Duration::from_secs(1),
            )?,
            ingest: ingest_config(&s.ingest, sqlite)?,
            database,
            database_max_connections,
            read_replica,
            body_limit_bytes,
            body_budget_bytes,
            batch_max_items,
            stream_max_subscribers,
            ui_public_key: api.ui_public_key.clone(),
            write_answers,
            trusted_user_header,
            http: http_limits(&s.connections, &s.api)?,
            shutdown_delay: duration(
                "server.shutdown_delay",
                &s.server.shutdown_delay,
                Duration::from_secs(5),
            )?,
            drain_timeout: duration(
                "server.drain_timeout",
                &s.server.drain_timeout,
                Duration::from_secs(30),
            )?,
            log_format,
            traces,
            data_dir,
            moved_keys: Vec::new(),
        })
    }
}

impl Settings {
    /// The file's settings with the flags' over them (a flag left unset leaves the file's
    /// value), and the file's keys that were moved from an earlier version's place.
    pub fn layered(args: &ServeArgs) -> Result<(Settings, Vec<MovedKey>), ConfigError> {
        let mut layers = Figment::new();
        let mut moved = Vec::new();
        if let Some(path) = &args.config {
            let file = read_file(path, |old, new| moved.push((old, new)))?;
            layers = layers.merge(Serialized::defaults(file));
        }
        let settings = layers
            .merge(Serialized::defaults(&args.settings))
            .extract()
            .map_err(|e| settings_error(e, args.config.as_deref()))?;
        Ok((settings, moved))
    }
}

fn ingest_config(s: &IngestSettings, sqlite: bool) -> Result<IngestConfig, ConfigError> {
    let defaults = IngestConfig::default();
    let ingest = IngestConfig {
        writers: if sqlite {
            1
        } else {
            s.writers.unwrap_or(defaults.writers)
        },
        batch_max_events: s.batch_max_events.unwrap_or(defaults.batch_max_events),
        batch_linger: duration(
            "ingest.batch_linger",
            &s.batch_linger,
            defaults.batch_linger,
        )?,
        queue_capacity: s.queue_capacity.unwrap_or(defaults.queue_capacity),
    };
    if !(1..=10_000).contains(&ingest.batch_max_events) {
        return Err(invalid(
            "ingest.batch_max_events",
            "must be between 1 and 10000",
        ));
    }
    if ingest.batch_linger > Duration::from_secs(1) {
        return Err(invalid("ingest.batch_linger", "must be at most 1s"));
    }
    if !(1..=16).contains(&ingest.writers) {
        return Err(invalid("ingest.writers", "must be between 1 and 16"));
    }
    if ingest.queue_capacity == 0 {
        return Err(invalid("ingest.queue_capacity", "must be at least 1"));
    }
    Ok(ingest)
}

fn checkpoint_config(
    s: &CheckpointSettings,
    data_dir: &Path,
) -> Result<Option<CheckpointConfig>, ConfigError> {
    if s.enabled == Some(Switch(false)) {
        return Ok(None);
    }
    let interval = duration("checkpoints.interval", &s.interval, Duration::from_secs(1))?;
    if interval.is_zero() {
        return Err(invalid("checkpoints.interval", "must be above 0"));
    }
    Ok(Some(CheckpointConfig {
        key_file: s
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("checkpoint.key")),
        interval,
        create_key: s.create_key.unwrap_or(false),
        origin: s
            .origin
            .clone()
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_string()),
        witness_file: s.witness_file.clone(),
        witnesses: witness_set(s)?,
    }))
}

/// The witness policy: each `<verifier key>@<URL prefix>`, and the quorum.
fn witness_set(
    s: &CheckpointSettings,
) -> Result<Option<crate::evidence::cosign::WitnessSet>, ConfigError> {
    use audit_model::cosignature::CosignatureVerifier;
    let entries = s.witnesses.clone().unwrap_or_default();
    if entries.is_empty() {
        for (key, set) in [
            ("checkpoints.witness_quorum", s.witness_quorum.is_some()),
            (
                "checkpoints.witness_token_file",
                s.witness_token_file.is_some(),
            ),
            ("checkpoints.witness_ca_file", s.witness_ca_file.is_some()),
        ] {
            if set {
                return Err(invalid(key, "needs checkpoints.witnesses"));
            }
        }
        return Ok(None);
    }
    let mut witnesses = Vec::new();
    for entry in &entries {
        let (key, url) = entry.trim().split_once('@').ok_or_else(|| {
            invalid(
                "checkpoints.witnesses",
                format!("{entry:?}: expected <verifier key>@<URL prefix>"),
            )
        })?;
        let key = CosignatureVerifier::parse(key)
            .map_err(|e| invalid("checkpoints.witnesses", format!("{entry:?}: {e}")))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "checkpoints.witnesses",
                format!("{entry:?}: the URL prefix must be http:// or https://"),
            ));
        }
        if witnesses
            .iter()
            .any(|w: &crate::evidence::cosign::WitnessEndpoint| w.key.name() == key.name())
        {
            return Err(invalid(
                "checkpoints.witnesses",
                format!("{} is listed twice", key.name()),
            ));
        }
        witnesses.push(crate::evidence::cosign::WitnessEndpoint {
            url: url.trim_end_matches('/').to_string(),
            key,
        });
    }
    let quorum = s.witness_quorum.unwrap_or(witnesses.len() / 2 + 1);
    if quorum == 0 || quorum > witnesses.len() {
        return Err(invalid(
            "checkpoints.witness_quorum",
            format!("must be between 1 and the {} witnesses", witnesses.len()),
        ));
    }
    Ok(Some(crate::evidence::cosign::WitnessSet {
        witnesses,
        quorum,
        token_file: s.witness_token_file.clone(),
        ca_file: s.witness_ca_file.clone(),
    }))
}

/// Authentication: required when an authenticator is configured, unless disabled explicitly;
/// with none, disabled on a loopback listener and refused on any other.
fn auth_config(
    s: &AuthSettings,
    api: &ApiSettings,
    listen: SocketAddr,
) -> Result<AuthConfig, ConfigError> {
    let authenticators = Authenticators {
        tokens_file: s.tokens_file.clone(),
        kubernetes: kubernetes_auth(s)?,
    };
    let configured = authenticators.tokens_file.is_some() || authenticators.kubernetes.is_some();
    let required = match (s.enabled, configured) {
        (Some(Switch(false)), _) => None,
        (_, true) => Some(authenticators),
        (Some(Switch(true)), false) => {
            return Err(invalid(
                "auth.enabled",
                "authentication is enabled but no authenticator is configured (auth.tokens_file or auth.kubernetes)",
            ))
        }
        (None, false) if listen.ip().is_loopback() => None,
        (None, false) => {
            return Err(invalid(
                "auth.enabled",
                format!(
                    "no authenticator is configured and {listen} is not a loopback address: configure one (auth.tokens_file, auth.kubernetes) or give `--auth disabled` to serve every caller unauthenticated"
                ),
            ))
        }
    };
    Ok(AuthConfig {
        disabled_by_default: required.is_none() && s.enabled.is_none(),
        required,
        public_metrics: s.public_metrics.is_some_and(|Switch(on)| on),
        public_checkpoints: s.public_checkpoints.is_some_and(|Switch(on)| on),
        rate_limit: rate(
            ("api.rate_limit", api.rate_limit),
            ("api.rate_limit_burst", api.rate_limit_burst),
        )?,
        address_rate_limit: rate(
            ("api.address_rate_limit", api.address_rate_limit),
            ("api.address_rate_limit_burst", api.address_rate_limit_burst),
        )?,
    })
}

/// A rate and its burst (default twice the rate); none when the rate is unset.
fn rate(
    (rate_key, per_second): (&'static str, Option<u32>),
    (burst_key, burst): (&'static str, Option<u32>),
) -> Result<Option<crate::auth::limits::Rate>, ConfigError> {
    use std::num::NonZeroU32;
    let Some(per_second) = per_second else {
        return Ok(None);
    };
    let per_second =
        NonZeroU32::new(per_second).ok_or_else(|| invalid(rate_key, "must be at least 1"))?;
    let burst = match burst {
        None => per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)),
        Some(b) => NonZeroU32::new(b).ok_or_else(|| invalid(burst_key, "must be at least 1"))?,
    };
    Ok(Some(crate::auth::limits::Rate { per_second, burst }))
}

fn kubernetes_auth(s: &AuthSettings) -> Result<Option<KubernetesAuth>, ConfigError> {
    if s.kubernetes != Some(Switch(true)) {
        return Ok(None);
    }
    let cache_ttl = duration(
        "auth.review_cache_ttl",
        &s.review_cache_ttl,
        Duration::from_secs(30),
    )?;
    if cache_ttl > Duration::from_secs(600) {
        return Err(invalid("auth.review_cache_ttl", "must be at most 10m"));
    }
    let cache_size = s.review_cache_size.unwrap_or(10_000);
    if cache_size == 0 {
        return Err(invalid("auth.review_cache_size", "must be at least 1"));
    }
    let mut write_scopes = std::collections::BTreeMap::new();
    for item in s.write_scopes.iter().flatten() {
        let (principal, prefixes) = item.split_once('=').ok_or_else(|| {
            invalid(
                "auth.write_scopes",
                format!("{item:?}: expected PRINCIPAL=PREFIX[,PREFIX…]"),
            )
        })?;
        let prefixes: Vec<String> = prefixes.split(',').map(|p| p.trim().to_string()).collect();
        crate::auth::tokens::check_scopes(&prefixes)
            .map_err(|m| invalid("auth.write_scopes", format!("{principal}: {m}")))?;
        write_scopes.insert(principal.trim().to_string(), prefixes);
    }
    Ok(Some(KubernetesAuth {
        audience: s
            .audience
            .clone()
            .unwrap_or_else(|| "datastorage".to_string()),
        kubeconfig: s.kubeconfig.clone(),
        cache_ttl,
        cache_size,
        write_scopes,
    }))
}

fn retention_config(s: &RetentionSettings) -> Result<Option<RetentionConfig>, ConfigError> {
    if s.enabled != Some(Switch(true)) {
        return Ok(None);
    }
    let interval = duration("retention.interval", &s.interval, Duration::from_secs(3600))?;
    if interval.is_zero() {
        return Err(invalid("retention.interval", "must be above 0"));
    }
    let batch_size = s.batch_size.unwrap_or(1000);
    if !(1..=100_000).contains(&batch_size) {
        return Err(invalid(
            "retention.batch_size",
            "must be between 1 and 100000",
        ));
    }
    Ok(Some(RetentionConfig {
        interval,
        batch_size,
    }))
}

fn http_limits(s: &ConnectionSettings, api: &ApiSettings) -> Result<HttpLimits, ConfigError> {
    let timeout = |key: &'static str, value: &Option<String>, default: u64| {
        let d = duration(key, value, Duration::from_secs(default))?;
        if d.is_zero() {
            return Err(invalid(key, "must be above 0"));
        }
        Ok(d)
    };
    let body_min_rate_bytes_per_second = s.body_min_rate_bytes_per_second.unwrap_or(64 * 1024);
    if body_min_rate_bytes_per_second == 0 {
        return Err(invalid(
            "connections.body_min_rate_bytes_per_second",
            "must be at least 1",
        ));
    }
    let max_connections = s.max_connections.unwrap_or(4096);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(invalid(
            "connections.max_connections",
            "must be between 1 and 1000000",
        ));
    }
    let cors_allowed_origins = api
        .cors_allowed_origins
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/').to_string();
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.contains('*');
            ok.then(|| axum::http::HeaderValue::from_str(&origin).ok())
                .flatten()
                .ok_or_else(|| {
                    invalid(
                        "api.cors_allowed_origins",
                        format!("{origin:?}: expected an origin such as https://audit.example.com (no wildcard)"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpLimits {
        body_read_timeout: timeout("connections.body_read_timeout", &s.body_read_timeout, 10)?,
        body_min_rate_bytes_per_second,
        header_read_timeout: timeout(
            "connections.header_read_timeout",
            &s.header_read_timeout,
            10,
        )?,
        idle_timeout: timeout("connections.idle_timeout", &s.idle_timeout, 120)?,
        max_connections,
        cors_allowed_origins,
    })
}

fn dlq_config(s: &DlqSettings, data_dir: &Path) -> Result<crate::dlq::DlqConfig, ConfigError> {
    let url = s
        .url
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("dlq").display()));
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("file://"))
    {
        return Err(invalid(
            "dlq.url",
            format!("{url:?}: expected redis://… or file://DIR"),
        ));
    }
    let capacity = s.capacity.unwrap_or(1_000_000);
    if capacity == 0 {
        return Err(invalid("dlq.capacity", "must be at least 1"));
    }
    Ok(crate::dlq::DlqConfig {
        url,
        capacity,
        redis_prefix: s
            .redis_prefix
            .clone()
            .unwrap_or_else(|| "audit:dlq".to_string()),
        claim_idle: duration("dlq.claim_idle", &s.claim_idle, Duration::from_secs(60))?,
        redis_ca_file: s.redis_ca_file.clone(),
    })
}

/// The listener's TLS files: a certificate and a key, or neither.
fn tls_files(
    s: &TlsSettings,
    auth: &AuthSettings,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    match (&s.cert_file, &s.key_file) {
        (None, None) if s.client_ca_file.is_some() => Err(invalid(
            "tls.client_ca_file",
            "needs tls.cert_file and tls.key_file (client certificates are asked for in the TLS handshake)",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("tls.key_file", "tls.cert_file needs its key")),
        (None, Some(_)) => Err(invalid("tls.cert_file", "tls.key_file needs its certificate")),
        (Some(cert), Some(key)) => {
            if s.client_ca_file.is_some() && auth.tokens_file.is_none() {
                return Err(invalid(
                    "tls.client_ca_file",
                    "needs auth.tokens_file: a client certificate's roles are given by an entry naming its subject",
                ));
            }
            Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: s.client_ca_file.clone(),
            }))
        }
    }
}

/// The production guard: every connection that leaves the process is encrypted and its peer
/// verified. The embedded SQLite store and the journal DLQ are files, with nothing to encrypt.
fn require_tls(
    tls: Option<&crate::tls::TlsFiles>,
    database: &DatabaseTarget,
    dlq: &crate::dlq::DlqConfig,
) -> Result<(), ConfigError> {
    if tls.is_none() {
        return Err(invalid(
            "tls.require",
            "the listener has no certificate: set tls.cert_file and tls.key_file",
        ));
    }
    if let DatabaseTarget::Postgres { url, .. } = database {
        require_verified_postgres(url)?;
    }
    if dlq.url.starts_with("redis://") {
        return Err(invalid(
            "tls.require",
            "the Redis DLQ must use TLS: rediss://… (and dlq.redis_ca_file for a private CA)",
        ));
    }
    Ok(())
}

/// Under the production guard, a PostgreSQL connection must verify its server.
fn require_verified_postgres(url: &str) -> Result<(), ConfigError> {
    if postgres_ssl_mode(url).as_deref() != Some("verify-full") {
        return Err(invalid(
            "tls.require",
            "the PostgreSQL URL must verify the server: add sslmode=verify-full (and sslrootcert=CA-FILE for a private CA)",
        ));
    }
    Ok(())
}

/// The `sslmode` of a PostgreSQL URL, if it names one.
fn postgres_ssl_mode(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
}

fn replay_config(s: &ReplaySettings) -> Result<ReplayConfig, ConfigError> {
    let schedule = s
        .schedule
        .as_deref()
        .unwrap_or("1m,5m,15m,1h,4h,24h")
        .split(',')
        .map(|part| duration("replay.schedule", &Some(part.to_string()), Duration::ZERO))
        .collect::<Result<Vec<_>, _>>()?;
    let replay = ReplayConfig {
        schedule,
        batch: s.batch.unwrap_or(500),
        poll_interval: duration(
            "replay.poll_interval",
            &s.poll_interval,
            Duration::from_secs(1),
        )?,
        shutdown_drain: duration(
            "replay.shutdown_drain",
            &s.shutdown_drain,
            Duration::from_secs(5),
        )?,
    };
    if !(1..=10_000).contains(&replay.batch) {
        return Err(invalid("replay.batch", "must be between 1 and 10000"));
    }
    if replay.poll_interval.is_zero() {
        return Err(invalid("replay.poll_interval", "must be above 0"));
    }
    Ok(replay)
}

/// Every key the layers could not take, named by its path. Flags and their variables are typed
/// by the command line, so such a key is the file's.
fn settings_error(errors: figment::Error, file: Option<&Path>) -> ConfigError {
    let place = file.map_or(String::new(), |p| format!(" (in {})", p.display()));
    let messages: Vec<String> = errors
        .into_iter()
        .map(|e| match e.path.is_empty() {
            true => format!("{}{place}", e.kind),
            false => format!("`{}`: {}{place}", e.path.join("."), e.kind),
        })
        .collect();
    ConfigError::Settings {
        message: messages.join("; "),
    }
}

/// The file's settings as a tree of values, flat keys of earlier versions moved to their
/// sections (each told to `moved`).
fn read_file(
    path: &Path,
    moved: impl FnMut(&'static str, &'static str),
) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    let value: serde_json::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let serde_json::Value::Object(top) = value else {
        return Err(ConfigError::ParseFile {
            path: path.to_path_buf(),
            message: "expected a mapping of sections".into(),
        });
    };
    Ok(serde_json::Value::Object(move_flat_keys(top, moved)))
}

/// Moves every flat key of an earlier version to its section (`dlq_url: x` becomes
/// `dlq: {url: x}`), telling `moved` each one; a section given as a mapping is kept as it is.
fn move_flat_keys(
    top: serde_json::Map<String, serde_json::Value>,
    mut moved: impl FnMut(&'static str, &'static str),
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut flat = Vec::new();
    for (key, value) in top {
        match MOVED_KEYS.iter().find(|(old, _)| *old == key) {
            Some((old, new)) if !value.is_object() => flat.push((*old, *new, value)),
            _ => {
                out.insert(key, value);
            }
        }
    }
    for (old, new, value) in flat {
        moved(old, new);
        let (section, key) = new.split_once('.').expect("a moved key names its section");
        let section = out
            .entry(section)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(section) = section {
            section.entry(key).or_insert(value);
        }
    }
    out
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("store.password_file", format!("{}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The read replica's settings: a PostgreSQL URL beside a PostgreSQL primary.
fn read_replica(
    s: &StoreSettings,
    primary: &DatabaseTarget,
) -> Result<Option<ReadReplica>, ConfigError> {
    let max_lag = duration(
        "store.replica_max_lag",
        &s.replica_max_lag,
        Duration::from_secs(5),
    )?;
    let Some(url) = s.read_url.clone() else {
        return Ok(None);
    };
    let DatabaseTarget::Postgres { password, .. } = primary else {
        return Err(invalid(
            "store.read_url",
            "a read replica needs a PostgreSQL log (store.url = postgres://…)",
        ));
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "store.read_url",
            format!("{url:?}: expected postgres://…"),
        ));
    }
    Ok(Some(ReadReplica {
        url,
        password: password.clone(),
        max_lag,
    }))
}

fn store_target(s: &StoreSettings, data_dir: &Path) -> Result<DatabaseTarget, ConfigError> {
    let password = match &s.password_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    match s.url.clone() {
        None => Ok(DatabaseTarget::Sqlite {
            path: data_dir.join("audit.db"),
        }),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(DatabaseTarget::Postgres { url, password })
        }
        Some(url) if url.starts_with("sqlite://") || url.starts_with("sqlite:") => {
            let rest = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("store.url", "sqlite URL needs a file path"));
            }
            Ok(DatabaseTarget::Sqlite {
                path: PathBuf::from(path),
            })
        }
        Some(url) => Err(invalid(
            "store.url",
            format!("{url:?}: expected postgres://… or sqlite://…"),
        )),
    }
}

fn duration(
    key: &'static str,
    text: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) if t.trim() == "0" => Ok(Duration::ZERO),
        Some(t) => humantime::parse_duration(t.trim())
            .map_err(|e| invalid(key, format!("{t:?}: {e} (expected e.g. 500us, 5s, 1m)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn with_file(f: &tempfile::NamedTempFile) -> ServeArgs {
        ServeArgs {
            config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        }
    }

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/datastorage.example.yaml")
    }

    #[test]
    fn defaults_are_the_embedded_store() {
        let c = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.database,
            DatabaseTarget::Sqlite {
                path: PathBuf::from("./data/audit.db")
            }
        );
        assert_eq!(
            c.ingest,
            IngestConfig {
                writers: 1,
                ..IngestConfig::default()
            },
            "SQLite has one writer"
        );
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert!(c.checkpoint.is_some() && c.retention.is_none());
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let f = file("server:\n  listen: 127.0.0.1:9000\ningest:\n  batch_max_events: 64\n  batch_linger: 2ms\n");
        let mut args = with_file(&f);
        args.settings.server.listen = Some("127.0.0.1:9001".into());
        let c = Config::load(&args).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.ingest.batch_max_events, 64);
        assert_eq!(c.ingest.batch_linger, Duration::from_millis(2));
    }

    #[test]
    fn flags_are_parsed_into_their_sections() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from([
            "datastorage",
            "--dlq-url",
            "redis://127.0.0.1:6379",
            "--checkpoints",
            "disabled",
            "--retention",
            "true",
            "--create-checkpoint-key",
        ])
        .unwrap();
        let s = &cli.serve.settings;
        assert_eq!(s.dlq.url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(s.checkpoints.enabled, Some(Switch(false)));
        assert_eq!(s.retention.enabled, Some(Switch(true)));
        assert_eq!(s.checkpoints.create_key, Some(true));
        let c = Config::load(&cli.serve).unwrap();
        assert!(c.checkpoint.is_none() && c.retention.is_some());
    }

    #[test]
    fn errors_name_the_key() {
        let f = file("ingest:\n  batch_max_events: 0\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("`ingest.batch_max_events`"), "{err}");

        let f = file("no_such_key: 1\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");

        let f = file("dlq:\n  capacity: many\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("dlq.capacity"), "{err}");

        let f = file("dlq:\n  no_such_key: 1\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");

        let mut args = ServeArgs::default();
        args.settings.server.drain_timeout = Some("soon".into());
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(
            err.contains("`server.drain_timeout` (--drain-timeout, DATASTORAGE_DRAIN_TIMEOUT)"),
            "{err}"
        );

        let f = file("checkpoints:\n  enabled: maybe\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(
            err.contains("checkpoints.enabled") && err.contains("maybe"),
            "{err}"
        );
    }

    #[test]
    fn a_read_replica_needs_a_postgres_log_and_under_the_guard_verified_tls() {
        let f =
            file("store:\n  url: postgres://u@db/audit\n  read_url: postgres://u@replica/audit\n");
        let c = Config::load(&with_file(&f)).unwrap();
        let replica = c.read_replica.expect("a replica");
        assert_eq!(replica.url, "postgres://u@replica/audit");
        assert_eq!(replica.max_lag, Duration::from_secs(5));

        let f = file("store:\n  read_url: postgres://u@replica/audit\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(
            err.contains("`store.read_url`") && err.contains("PostgreSQL log"),
            "{err}"
        );

        let f = file("store:\n  url: postgres://u@db/audit\n  read_url: sqlite://x.db\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("`store.read_url`"), "{err}");

        let f = file("store:\n  replica_max_lag: soon\n");
        let err = Config::load(&with_file(&f)).unwrap_err().to_string();
        assert!(err.contains("store.replica_max_lag"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = test_pki::TestCa::new("config test CA")
            .server(&["localhost"])
            .write(dir.path(), "server");
        let guarded = |read_url: &str| {
            file(&format!(
                "store:\n  url: postgres://u@db/audit?sslmode=verify-full\n  read_url: {read_url}\n\
                 tls:\n  require: true\n  cert_file: {}\n  key_file: {}\n",
                cert.display(),
                key.display()
            ))
        };
        let err = Config::load(&with_file(&guarded("postgres://u@replica/audit")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`tls.require`") && err.contains("verify-full"),
            "{err}"
        );
        Config::load(&with_file(&guarded(
            "postgres://u@replica/audit?sslmode=verify-full",
        )))
        .expect("a verified replica passes the guard");
    }

    #[test]
    fn the_body_budget_holds_at_least_one_largest_body() {
        let c = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(c.body_budget_bytes, 16 * 1024 * 1024);
        let mut args = ServeArgs::default();
        args.settings.api.body_limit_bytes = Some(32 * 1024 * 1024);
        let c = Config::load(&args).unwrap();
        assert_eq!(c.body_budget_bytes, 32 * 1024 * 1024, "raised to the limit");
        args.settings.api.body_limit_bytes = Some(8192);
        args.settings.api.body_budget_bytes = Some(4096);
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("api.body_budget_bytes"), "{err}");
    }

    #[test]
    fn password_comes_from_a_file() {
        let secret = file("s3cret\n");
        let mut args = ServeArgs::default();
        args.settings.store.url = Some("postgres://audit@db/audit".into());
        args.settings.store.password_file = Some(secret.path().to_path_buf());
        let c = Config::load(&args).unwrap();
        assert_eq!(
            c.database,
            DatabaseTarget::Postgres {
                url: "postgres://audit@db/audit".into(),
                password: Some("s3cret".into())
            }
        );
    }

    #[test]
    fn example_config_parses_and_matches_the_defaults() {
        let args = ServeArgs {
            config: Some(example()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        let d = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.ingest, d.ingest);
        assert_eq!(c.body_limit_bytes, d.body_limit_bytes);
        assert_eq!(c.body_budget_bytes, d.body_budget_bytes);
        assert_eq!(c.batch_max_items, d.batch_max_items);
        assert_eq!(c.shutdown_delay, d.shutdown_delay);
        assert_eq!(c.drain_timeout, d.drain_timeout);
        assert_eq!(c.database_max_connections, d.database_max_connections);
        assert_eq!(c.replay, d.replay);
        assert_eq!(c.dlq.capacity, d.dlq.capacity);
        assert_eq!(c.dlq.redis_prefix, d.dlq.redis_prefix);
        assert_eq!(c.dlq.claim_idle, d.dlq.claim_idle);
        assert_eq!(c.dlq.url, d.dlq.url);
        assert_eq!(c.store_retry_interval, d.store_retry_interval);
        assert_eq!(c.checkpoint, d.checkpoint);
    }

    #[test]
    fn the_example_sets_every_key_each_flag_sets() {
        let text = std::fs::read_to_string(example()).unwrap();
        let tree: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let command = ServeArgs::augment_args(clap::Command::new("x"));
        for arg in command.get_arguments().filter(|a| a.get_id() != "config") {
            let id = arg.get_id().as_str();
            let (_, path) = MOVED_KEYS
                .iter()
                .find(|(old, _)| *old == id)
                .unwrap_or_else(|| panic!("{id} has no place in MOVED_KEYS"));
            // Error messages name the flag and the variable from the key's id.
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()));
            let env = arg.get_env().unwrap().to_string_lossy().into_owned();
            assert_eq!(env, format!("DATASTORAGE_{}", id.to_uppercase()));
            assert_eq!(
                other_forms(path),
                format!(" (--{}, {env})", id.replace('_', "-"))
            );
            let (section, key) = path.split_once('.').unwrap();
            assert!(
                tree[section].get(key).is_some(),
                "the example does not show {path}"
            );
        }
        assert_eq!(command.get_arguments().count(), MOVED_KEYS.len() + 1);
    }

    #[test]
    fn a_file_with_the_flat_keys_of_earlier_versions_loads_the_same() {
        // The example, written as earlier versions spelled it: every key at the top level.
        let text = std::fs::read_to_string(example()).unwrap();
        let tree: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let mut flat = serde_json::Map::new();
        for (old, new) in MOVED_KEYS {
            let (section, key) = new.split_once('.').unwrap();
            let mut value = tree[section][key].clone();
            if let serde_json::Value::Bool(on) = value {
                if matches!(old, "checkpoints" | "retention") {
                    value = serde_json::json!(if on { "enabled" } else { "disabled" });
                }
            }
            flat.insert(old.to_string(), value);
        }
        let f = file(&serde_yaml_ng::to_string(&flat).unwrap());
        let mut legacy = Config::load(&with_file(&f)).unwrap();
        let moved_keys = std::mem::take(&mut legacy.moved_keys);
        let nested = Config::load(&ServeArgs {
            config: Some(example()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(format!("{legacy:?}"), format!("{nested:?}"));

        let mut told = Vec::new();
        let moved = move_flat_keys(flat, |old, new| told.push(format!("{old} -> {new}")));
        assert_eq!(told.len(), MOVED_KEYS.len());
        assert!(told.contains(&"dlq_url -> dlq.url".to_string()), "{told:?}");
        assert_eq!(moved_keys.len(), MOVED_KEYS.len());
        assert!(nested.moved_keys.is_empty());
        assert_eq!(moved["checkpoints"]["enabled"], "enabled");
    }

    #[test]
    fn the_dlq_defaults_to_a_journal_under_the_data_dir() {
        let mut args = ServeArgs::default();
        args.settings.server.data_dir = Some("/var/lib/audit".into());
        let c = Config::load(&args).unwrap();
        assert_eq!(c.dlq.url, "file:///var/lib/audit/dlq");
        assert_eq!(c.replay.schedule.len(), 6);
        assert_eq!(c.replay.schedule[5], Duration::from_secs(86_400));
    }
}
