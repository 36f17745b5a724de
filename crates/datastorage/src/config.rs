//! Layered configuration: command-line flag > environment variable > YAML file > default.
//!
//! Every setting has all four forms: `--batch-max-events`, `DATASTORAGE_BATCH_MAX_EVENTS`, the
//! YAML key `batch_max_events`, and a default (see `config/datastorage.example.yaml`). Invalid
//! values fail at start with a message naming the key. The database password can come from a
//! file (`database_password_file`), so it never has to sit in the config file or the URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

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
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Settings as given on the command line or in the environment; all optional.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// YAML config file.
    #[arg(long, env = "DATASTORAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "DATASTORAGE_LISTEN")]
    pub listen: Option<String>,
    /// `postgres://…` or `sqlite://…` (default: a SQLite file under the data dir).
    #[arg(long, env = "DATASTORAGE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the database password (for example a mounted Kubernetes Secret).
    #[arg(long, env = "DATASTORAGE_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// Largest number of database connections.
    #[arg(long, env = "DATASTORAGE_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// `redis://…` or `file://DIR` (default: a journal under the data dir).
    #[arg(long, env = "DATASTORAGE_DLQ_URL")]
    pub dlq_url: Option<String>,
    /// Most events the DLQ holds; beyond it writes are refused (503), never evicted.
    #[arg(long, env = "DATASTORAGE_DLQ_CAPACITY")]
    pub dlq_capacity: Option<u64>,
    /// Key prefix of the Redis DLQ streams.
    #[arg(long, env = "DATASTORAGE_DLQ_REDIS_PREFIX")]
    pub dlq_redis_prefix: Option<String>,
    /// Redis DLQ entries held this long by a silent replica are taken over (e.g. `60s`).
    #[arg(long, env = "DATASTORAGE_DLQ_CLAIM_IDLE")]
    pub dlq_claim_idle: Option<String>,
    /// Backoff between failed replays of one entry (e.g. `1m,5m,15m,1h,4h,24h`).
    #[arg(long, env = "DATASTORAGE_REPLAY_SCHEDULE")]
    pub replay_schedule: Option<String>,
    /// Entries replayed per transaction.
    #[arg(long, env = "DATASTORAGE_REPLAY_BATCH")]
    pub replay_batch: Option<usize>,
    /// How often the replay worker checks whether the store answers (e.g. `1s`).
    #[arg(long, env = "DATASTORAGE_REPLAY_POLL_INTERVAL")]
    pub replay_poll_interval: Option<String>,
    /// How long the replay worker keeps draining at shutdown (e.g. `5s`).
    #[arg(long, env = "DATASTORAGE_REPLAY_SHUTDOWN_DRAIN")]
    pub replay_shutdown_drain: Option<String>,
    /// After the store fails, writes go straight to the DLQ for this long before the store is
    /// tried again (e.g. `1s`).
    #[arg(long, env = "DATASTORAGE_STORE_RETRY_INTERVAL")]
    pub store_retry_interval: Option<String>,
    /// Directory for the embedded database and local journals (default ./data).
    #[arg(long, env = "DATASTORAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Concurrent ingest writers (PostgreSQL; SQLite always uses one).
    #[arg(long, env = "DATASTORAGE_INGEST_WRITERS")]
    pub ingest_writers: Option<usize>,
    /// Most events committed in one transaction.
    #[arg(long, env = "DATASTORAGE_BATCH_MAX_EVENTS")]
    pub batch_max_events: Option<usize>,
    /// How long the writer waits for more events before committing (e.g. `0s`, `500us`, `2ms`).
    #[arg(long, env = "DATASTORAGE_BATCH_LINGER")]
    pub batch_linger: Option<String>,
    /// Most submissions (one per request) waiting for the writer before requests wait for room.
    #[arg(long, env = "DATASTORAGE_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, env = "DATASTORAGE_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Most bytes of request bodies held at once; beyond it requests wait their turn.
    #[arg(long, env = "DATASTORAGE_BODY_BUDGET_BYTES")]
    pub body_budget_bytes: Option<usize>,
    /// Most events in one batch request.
    #[arg(long, env = "DATASTORAGE_BATCH_MAX_ITEMS")]
    pub batch_max_items: Option<usize>,
    /// Longest pause between two parts of a request body, and longest wait for room in the body
    /// budget (e.g. `10s`); beyond it the request is answered 408 (or 503).
    #[arg(long, env = "DATASTORAGE_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<String>,
    /// Slowest average rate a body may arrive at after its first body_read_timeout, in bytes per
    /// second.
    #[arg(long, env = "DATASTORAGE_BODY_MIN_RATE_BYTES_PER_SECOND")]
    pub body_min_rate_bytes_per_second: Option<u64>,
    /// Longest time from the first byte of a request head to its end (e.g. `10s`).
    #[arg(long, env = "DATASTORAGE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// A connection that sends and reads nothing this long between requests is closed (e.g.
    /// `120s`; above the 90 s that Go's and reqwest's pools keep idle connections).
    #[arg(long, env = "DATASTORAGE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Most connections open at once; beyond it a connection is answered 503 and closed.
    #[arg(long, env = "DATASTORAGE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Origins whose pages may call the API from a browser (CORS), comma-separated; none by
    /// default (the explorer is same-origin).
    #[arg(long, env = "DATASTORAGE_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Time between readiness turning 503 and the listener closing (e.g. `5s`).
    #[arg(long, env = "DATASTORAGE_SHUTDOWN_DELAY")]
    pub shutdown_delay: Option<String>,
    /// Longest wait for in-flight requests at shutdown (e.g. `30s`).
    #[arg(long, env = "DATASTORAGE_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "DATASTORAGE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Required length of an AI decision's embedding.
    #[arg(long, env = "DATASTORAGE_EMBEDDING_DIMENSION")]
    pub embedding_dimension: Option<usize>,
    /// `enabled` (default) or `disabled`: signed Merkle checkpoints over the log.
    #[arg(long, env = "DATASTORAGE_CHECKPOINTS")]
    pub checkpoints: Option<String>,
    /// The checkpoint signing key (from `datastorage keygen`); default `<data_dir>/checkpoint.key`.
    #[arg(long, env = "DATASTORAGE_CHECKPOINT_KEY_FILE")]
    pub checkpoint_key_file: Option<PathBuf>,
    /// How often new events are covered by a signed checkpoint (e.g. `1s`).
    #[arg(long, env = "DATASTORAGE_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// Create the signing key when the key file is missing (for a local or embedded setup;
    /// production keys are made with `datastorage keygen` and mounted).
    #[arg(long, env = "DATASTORAGE_CREATE_CHECKPOINT_KEY", num_args = 0..=1, default_missing_value = "true")]
    pub create_checkpoint_key: Option<bool>,
    /// The log's name in its checkpoints, used when the key is created.
    #[arg(long, env = "DATASTORAGE_CHECKPOINT_ORIGIN")]
    pub checkpoint_origin: Option<String>,
    /// Also append every signed checkpoint to this file, kept outside the database.
    #[arg(long, env = "DATASTORAGE_CHECKPOINT_WITNESS_FILE")]
    pub checkpoint_witness_file: Option<PathBuf>,
    /// `enabled` or `disabled` (default): purge the content of events past their retention
    /// that no legal hold keeps.
    #[arg(long, env = "DATASTORAGE_RETENTION")]
    pub retention: Option<String>,
    /// Time between retention runs (e.g. `1h`).
    #[arg(long, env = "DATASTORAGE_RETENTION_INTERVAL")]
    pub retention_interval: Option<String>,
    /// Most events purged per transaction.
    #[arg(long, env = "DATASTORAGE_RETENTION_BATCH_SIZE")]
    pub retention_batch_size: Option<i64>,
}

/// The same settings as read from the YAML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    database_password_file: Option<PathBuf>,
    database_max_connections: Option<u32>,
    dlq_url: Option<String>,
    dlq_capacity: Option<u64>,
    dlq_redis_prefix: Option<String>,
    dlq_claim_idle: Option<String>,
    replay_schedule: Option<String>,
    replay_batch: Option<usize>,
    replay_poll_interval: Option<String>,
    replay_shutdown_drain: Option<String>,
    store_retry_interval: Option<String>,
    data_dir: Option<PathBuf>,
    ingest_writers: Option<usize>,
    batch_max_events: Option<usize>,
    batch_linger: Option<String>,
    queue_capacity: Option<usize>,
    body_limit_bytes: Option<usize>,
    body_budget_bytes: Option<usize>,
    batch_max_items: Option<usize>,
    body_read_timeout: Option<String>,
    body_min_rate_bytes_per_second: Option<u64>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    cors_allowed_origins: Option<Vec<String>>,
    shutdown_delay: Option<String>,
    drain_timeout: Option<String>,
    log_format: Option<String>,
    embedding_dimension: Option<usize>,
    checkpoints: Option<String>,
    checkpoint_key_file: Option<PathBuf>,
    checkpoint_interval: Option<String>,
    create_checkpoint_key: Option<bool>,
    checkpoint_origin: Option<String>,
    checkpoint_witness_file: Option<PathBuf>,
    retention: Option<String>,
    retention_interval: Option<String>,
    retention_batch_size: Option<i64>,
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
}

/// The retention worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    pub interval: Duration,
    pub batch_size: i64,
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
    pub dlq: crate::dlq::DlqConfig,
    pub replay: ReplayConfig,
    pub store_retry_interval: Duration,
    pub data_dir: PathBuf,
    pub ingest: IngestConfig,
    pub body_limit_bytes: usize,
    pub body_budget_bytes: usize,
    pub batch_max_items: usize,
    /// Time limits of connections and request bodies.
    pub http: HttpLimits,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    pub embedding_dimension: usize,
    /// None when checkpoints are disabled.
    pub checkpoint: Option<CheckpointConfig>,
    /// None when the retention worker is disabled (the default).
    pub retention: Option<RetentionConfig>,
}

impl Config {
    /// Merges flags/environment (already merged by clap) over the file over the defaults.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let listen_text = pick!(listen).unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen = SocketAddr::from_str(&listen_text)
            .map_err(|e| invalid("listen", format!("{listen_text:?}: {e}")))?;
        let data_dir = pick!(data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        let password = match pick!(database_password_file) {
            Some(path) => Some(read_secret(&path)?),
            None => None,
        };
        let database = database_target(pick!(database_url), password, &data_dir)?;
        let database_max_connections = pick!(database_max_connections).unwrap_or(16);
        if database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        let dlq = dlq_config(
            pick!(dlq_url),
            &data_dir,
            pick!(dlq_capacity),
            pick!(dlq_redis_prefix),
            pick!(dlq_claim_idle),
        )?;
        let replay = replay_config(
            pick!(replay_schedule),
            pick!(replay_batch),
            pick!(replay_poll_interval),
            pick!(replay_shutdown_drain),
        )?;
        let store_retry_interval = duration(
            "store_retry_interval",
            pick!(store_retry_interval),
            Duration::from_secs(1),
        )?;
        let defaults = IngestConfig::default();
        let sqlite = matches!(database, DatabaseTarget::Sqlite { .. });
        let ingest = IngestConfig {
            writers: if sqlite {
                1
            } else {
                pick!(ingest_writers).unwrap_or(defaults.writers)
            },
            batch_max_events: pick!(batch_max_events).unwrap_or(defaults.batch_max_events),
            batch_linger: duration("batch_linger", pick!(batch_linger), defaults.batch_linger)?,
            queue_capacity: pick!(queue_capacity).unwrap_or(defaults.queue_capacity),
        };
        if !(1..=10_000).contains(&ingest.batch_max_events) {
            return Err(invalid("batch_max_events", "must be between 1 and 10000"));
        }
        if ingest.batch_linger > Duration::from_secs(1) {
            return Err(invalid("batch_linger", "must be at most 1s"));
        }
        if !(1..=16).contains(&ingest.writers) {
            return Err(invalid("ingest_writers", "must be between 1 and 16"));
        }
        if ingest.queue_capacity == 0 {
            return Err(invalid("queue_capacity", "must be at least 1"));
        }
        let body_limit_bytes = pick!(body_limit_bytes).unwrap_or(5 * 1024 * 1024);
        if body_limit_bytes < 1024 {
            return Err(invalid("body_limit_bytes", "must be at least 1024"));
        }
        let body_budget_bytes =
            pick!(body_budget_bytes).unwrap_or(DEFAULT_BODY_BUDGET.max(body_limit_bytes));
        if body_budget_bytes < body_limit_bytes {
            return Err(invalid(
                "body_budget_bytes",
                "must be at least body_limit_bytes (one largest body must fit)",
            ));
        }
        let batch_max_items = pick!(batch_max_items).unwrap_or(1000);
        if !(1..=100_000).contains(&batch_max_items) {
            return Err(invalid("batch_max_items", "must be between 1 and 100000"));
        }
        let http = http_limits(args, &file)?;
        let log_format = match pick!(log_format).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?}: expected json or text"),
                ))
            }
        };
        let embedding_dimension = pick!(embedding_dimension).unwrap_or(1536);
        if !(1..=65_536).contains(&embedding_dimension) {
            return Err(invalid(
                "embedding_dimension",
                "must be between 1 and 65536",
            ));
        }
        let checkpoint = match pick!(checkpoints).as_deref() {
            None | Some("enabled") => Some(CheckpointConfig {
                key_file: pick!(checkpoint_key_file)
                    .unwrap_or_else(|| data_dir.join("checkpoint.key")),
                interval: duration(
                    "checkpoint_interval",
                    pick!(checkpoint_interval),
                    Duration::from_secs(1),
                )?,
                create_key: pick!(create_checkpoint_key).unwrap_or(false),
                origin: pick!(checkpoint_origin).unwrap_or_else(|| DEFAULT_ORIGIN.to_string()),
                witness_file: pick!(checkpoint_witness_file),
            }),
            Some("disabled") => None,
            Some(other) => {
                return Err(invalid(
                    "checkpoints",
                    format!("{other:?}: expected enabled or disabled"),
                ))
            }
        };
        if checkpoint.as_ref().is_some_and(|c| c.interval.is_zero()) {
            return Err(invalid("checkpoint_interval", "must be above 0"));
        }
        let retention = match pick!(retention).as_deref() {
            None | Some("disabled") => None,
            Some("enabled") => Some(RetentionConfig {
                interval: duration(
                    "retention_interval",
                    pick!(retention_interval),
                    Duration::from_secs(3600),
                )?,
                batch_size: pick!(retention_batch_size).unwrap_or(1000),
            }),
            Some(other) => {
                return Err(invalid(
                    "retention",
                    format!("{other:?}: expected enabled or disabled"),
                ))
            }
        };
        if let Some(r) = &retention {
            if r.interval.is_zero() {
                return Err(invalid("retention_interval", "must be above 0"));
            }
            if !(1..=100_000).contains(&r.batch_size) {
                return Err(invalid(
                    "retention_batch_size",
                    "must be between 1 and 100000",
                ));
            }
        }
        Ok(Config {
            checkpoint,
            retention,
            embedding_dimension,
            listen,
            database,
            database_max_connections,
            dlq,
            replay,
            store_retry_interval,
            ingest,
            body_limit_bytes,
            body_budget_bytes,
            batch_max_items,
            http,
            shutdown_delay: duration(
                "shutdown_delay",
                pick!(shutdown_delay),
                Duration::from_secs(5),
            )?,
            drain_timeout: duration(
                "drain_timeout",
                pick!(drain_timeout),
                Duration::from_secs(30),
            )?,
            log_format,
            data_dir,
        })
    }
}

fn http_limits(args: &ServeArgs, file: &FileConfig) -> Result<HttpLimits, ConfigError> {
    macro_rules! pick {
        ($field:ident) => {
            args.$field.clone().or(file.$field.clone())
        };
    }
    let timeout = |key: &'static str, value: Option<String>, default: u64| {
        let d = duration(key, value, Duration::from_secs(default))?;
        if d.is_zero() {
            return Err(invalid(key, "must be above 0"));
        }
        Ok(d)
    };
    let body_min_rate_bytes_per_second = pick!(body_min_rate_bytes_per_second).unwrap_or(64 * 1024);
    if body_min_rate_bytes_per_second == 0 {
        return Err(invalid(
            "body_min_rate_bytes_per_second",
            "must be at least 1",
        ));
    }
    let max_connections = pick!(max_connections).unwrap_or(4096);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(invalid("max_connections", "must be between 1 and 1000000"));
    }
    let cors_allowed_origins = pick!(cors_allowed_origins)
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
                        "cors_allowed_origins",
                        format!("{origin:?}: expected an origin such as https://audit.example.com (no wildcard)"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpLimits {
        body_read_timeout: timeout("body_read_timeout", pick!(body_read_timeout), 10)?,
        body_min_rate_bytes_per_second,
        header_read_timeout: timeout("header_read_timeout", pick!(header_read_timeout), 10)?,
        idle_timeout: timeout("idle_timeout", pick!(idle_timeout), 120)?,
        max_connections,
        cors_allowed_origins,
    })
}

fn dlq_config(
    url: Option<String>,
    data_dir: &Path,
    capacity: Option<u64>,
    redis_prefix: Option<String>,
    claim_idle: Option<String>,
) -> Result<crate::dlq::DlqConfig, ConfigError> {
    let url = url.unwrap_or_else(|| format!("file://{}", data_dir.join("dlq").display()));
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("file://"))
    {
        return Err(invalid(
            "dlq_url",
            format!("{url:?}: expected redis://… or file://DIR"),
        ));
    }
    let capacity = capacity.unwrap_or(1_000_000);
    if capacity == 0 {
        return Err(invalid("dlq_capacity", "must be at least 1"));
    }
    Ok(crate::dlq::DlqConfig {
        url,
        capacity,
        redis_prefix: redis_prefix.unwrap_or_else(|| "audit:dlq".to_string()),
        claim_idle: duration("dlq_claim_idle", claim_idle, Duration::from_secs(60))?,
    })
}

fn replay_config(
    schedule: Option<String>,
    batch: Option<usize>,
    poll_interval: Option<String>,
    shutdown_drain: Option<String>,
) -> Result<ReplayConfig, ConfigError> {
    let schedule = schedule
        .unwrap_or_else(|| "1m,5m,15m,1h,4h,24h".to_string())
        .split(',')
        .map(|part| duration("replay_schedule", Some(part.to_string()), Duration::ZERO))
        .collect::<Result<Vec<_>, _>>()?;
    let replay = ReplayConfig {
        schedule,
        batch: batch.unwrap_or(500),
        poll_interval: duration(
            "replay_poll_interval",
            poll_interval,
            Duration::from_secs(1),
        )?,
        shutdown_drain: duration(
            "replay_shutdown_drain",
            shutdown_drain,
            Duration::from_secs(5),
        )?,
    };
    if !(1..=10_000).contains(&replay.batch) {
        return Err(invalid("replay_batch", "must be between 1 and 10000"));
    }
    if replay.poll_interval.is_zero() {
        return Err(invalid("replay_poll_interval", "must be above 0"));
    }
    Ok(replay)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("database_password_file", format!("{}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

fn database_target(
    url: Option<String>,
    password: Option<String>,
    data_dir: &Path,
) -> Result<DatabaseTarget, ConfigError> {
    match url {
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
                return Err(invalid("database_url", "sqlite URL needs a file path"));
            }
            Ok(DatabaseTarget::Sqlite {
                path: PathBuf::from(path),
            })
        }
        Some(url) => Err(invalid(
            "database_url",
            format!("{url:?}: expected postgres://… or sqlite://…"),
        )),
    }
}

fn duration(
    key: &'static str,
    text: Option<String>,
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
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let f = file("listen: 127.0.0.1:9000\nbatch_max_events: 64\nbatch_linger: 2ms\n");
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            listen: Some("127.0.0.1:9001".into()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.ingest.batch_max_events, 64);
        assert_eq!(c.ingest.batch_linger, Duration::from_millis(2));
    }

    #[test]
    fn errors_name_the_key() {
        let f = file("batch_max_events: 0\n");
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("batch_max_events"), "{err}");

        let f = file("no_such_key: 1\n");
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");

        let args = ServeArgs {
            drain_timeout: Some("soon".into()),
            ..ServeArgs::default()
        };
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("drain_timeout"), "{err}");
    }

    #[test]
    fn the_body_budget_holds_at_least_one_largest_body() {
        let c = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(c.body_budget_bytes, 16 * 1024 * 1024);
        let args = ServeArgs {
            body_limit_bytes: Some(32 * 1024 * 1024),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.body_budget_bytes, 32 * 1024 * 1024, "raised to the limit");
        let args = ServeArgs {
            body_limit_bytes: Some(8192),
            body_budget_bytes: Some(4096),
            ..ServeArgs::default()
        };
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("body_budget_bytes"), "{err}");
    }

    #[test]
    fn password_comes_from_a_file() {
        let secret = file("s3cret\n");
        let args = ServeArgs {
            database_url: Some("postgres://audit@db/audit".into()),
            database_password_file: Some(secret.path().to_path_buf()),
            ..ServeArgs::default()
        };
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
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/datastorage.example.yaml");
        let args = ServeArgs {
            config: Some(path),
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
    }

    #[test]
    fn the_dlq_defaults_to_a_journal_under_the_data_dir() {
        let args = ServeArgs {
            data_dir: Some("/var/lib/audit".into()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.dlq.url, "file:///var/lib/audit/dlq");
        assert_eq!(c.replay.schedule.len(), 6);
        assert_eq!(c.replay.schedule[5], Duration::from_secs(86_400));
    }
}
