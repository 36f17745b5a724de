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
    let witness = Arc::new(Witness::new(cosigner, logs, state));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        witness = witness.name(),
        logs = args.log_keys.len(),
        "audit-witness serving"
    );
    axum::serve(listener, audit_witness::router(witness, metrics))
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}
