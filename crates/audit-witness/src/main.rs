//! `audit-witness`: make a witness key, or serve the C2SP `tlog-witness` protocol.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use audit_model::checkpoint::CheckpointVerifier;
use audit_model::cosignature::Cosigner;
use clap::{Parser, Subcommand};

use audit_witness::state::State;
use audit_witness::Witness;

#[derive(Parser)]
#[command(
    name = "audit-witness",
    version,
    about = "Cosigns a log's checkpoints only when they are consistent with every one it cosigned before"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new witness key (mode 0600, never over an existing file) and print its verifier
    /// key.
    Keygen {
        /// The witness's name (a schema-less URL, e.g. `witness.example.com/w1`).
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve `POST /add-checkpoint`, `/health/live`, `/health/ready` and `/metrics`.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WITNESS_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// The witness key (`audit-witness keygen`).
    #[arg(long, env = "WITNESS_KEY_FILE")]
    key_file: PathBuf,
    /// A log's checkpoint verifier key (`<origin>+<hash>+<key>`); repeat for several logs.
    #[arg(
        long = "log-key",
        env = "WITNESS_LOG_KEYS",
        value_delimiter = ',',
        required = true
    )]
    log_keys: Vec<String>,
    /// `sqlite://PATH` or `postgres://…` (default: `witness.db` in the data directory).
    #[arg(long, env = "WITNESS_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of the embedded database.
    #[arg(long, env = "WITNESS_DATA_DIR", default_value = "./witness-data")]
    data_dir: PathBuf,
    /// Serve TLS with this certificate chain (PEM) and `--tls-key-file`; both are read again
    /// when they change.
    #[arg(long, env = "WITNESS_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "WITNESS_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Only submitters with one of these bearer tokens may add checkpoints: a file of their
    /// SHA-256 digests in hex, one per line.
    #[arg(long, env = "WITNESS_SUBMITTERS_FILE")]
    submitters_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keygen { name, out } => keygen(&name, &out),
        Command::Serve(args) => serve(args).await,
    }
}

fn keygen(name: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let cosigner = Cosigner::from_seed(name, seed)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    writeln!(file, "{}", cosigner.to_text())?;
    file.sync_all()?;
    println!("{}", cosigner.verifier().to_text());
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let key = std::fs::read_to_string(&args.key_file)
        .with_context(|| format!("cannot read {}", args.key_file.display()))?;
    let cosigner = Cosigner::parse(&key).context("the witness key")?;
    let logs = args
        .log_keys
        .iter()
        .map(|k| CheckpointVerifier::parse(k).with_context(|| format!("log key {k:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| State::default_url(&args.data_dir));
    let state = State::open(&url).await.context("the witness's database")?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    audit_witness::metrics_names::describe();
    let mut witness = Witness::new(cosigner, logs, state);
    if let Some(path) = &args.submitters_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        witness = witness.with_submitters(
            audit_witness::Submitters::parse(&text).context("the submitters file")?,
        );
    }
    let witness = Arc::new(witness);
    let name = witness.name().to_string();
    let app = audit_witness::router(witness, metrics);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let tls = args.tls_cert_file.is_some();
    tracing::info!(
        addr = %addr,
        witness = %name,
        logs = args.log_keys.len(),
        tls,
        "audit-witness serving"
    );
    match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("the TLS certificate and key")?;
            tokio::spawn(reload_tls(config.clone(), cert.clone(), key.clone()));
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
        _ => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
    }
    Ok(())
}

/// Reads the certificate and key again when either changes (checked every second); new
/// connections get the new pair, open ones keep theirs. A pair that does not load is logged
/// and the one in force stays.
async fn reload_tls(config: axum_server::tls_rustls::RustlsConfig, cert: PathBuf, key: PathBuf) {
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().ok(),
                m.len(),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
    };
    let mut seen = (stamp(&cert), stamp(&key));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match config.reload_from_pem_file(&cert, &key).await {
            Ok(()) => tracing::info!("the TLS certificate changed; the new one is in force"),
            Err(error) => {
                tracing::error!(%error, "the TLS certificate changed but cannot be used; the one before stays in force")
            }
        }
    }
}
