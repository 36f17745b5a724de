//! `datastorage`: serve the audit API, apply migrations, print the OpenAPI document.

use anyhow::Context;
use clap::{Parser, Subcommand};

use datastorage::config::{Config, ServeArgs};
use datastorage::{shutdown, store, telemetry, Application};

/// Request handling allocates many small, short-lived objects; mimalloc serves them with less
/// contention between threads than the system allocator (measured with `audit-bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "datastorage",
    version,
    about = "The audit trail service of the remediation platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies migrations first).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(ServeArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Check the whole log against its signed checkpoints; exit 0 only when all is well.
    Verify(VerifyArgs),
    /// Create a checkpoint signing key (prints the public key to share with verifiers).
    Keygen {
        /// Where to write the key (never over an existing file).
        #[arg(long)]
        out: std::path::PathBuf,
        /// The log's name, as its checkpoints will carry it.
        #[arg(long, default_value = datastorage::config::DEFAULT_ORIGIN)]
        origin: String,
    },
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The log to check (`postgres://…` or `sqlite://…`; default the SQLite file in the data dir).
    #[arg(long, env = "DATASTORAGE_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "DATASTORAGE_DATABASE_PASSWORD_FILE")]
    database_password_file: Option<std::path::PathBuf>,
    #[arg(long, env = "DATASTORAGE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The checkpoints' verifier key, or a file holding it (obtained out of band, never from
    /// the database being checked).
    #[arg(long)]
    public_key: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

async fn verify(args: VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    let key_text = match std::fs::read_to_string(&args.public_key) {
        Ok(text) => text,
        Err(_) => args.public_key.clone(),
    };
    let key = audit_model::checkpoint::CheckpointVerifier::parse(&key_text)
        .context("invalid --public-key")?;
    let serve = ServeArgs {
        database_url: args.database_url,
        database_password_file: args.database_password_file,
        data_dir: args.data_dir,
        checkpoints: Some("disabled".into()),
        ..ServeArgs::default()
    };
    let config = Config::load(&serve).context("invalid configuration")?;
    let store = store::connect(&config.database, 2)
        .await
        .context("cannot open the log")?;
    let report = datastorage::verify::verify_store(store.as_ref(), &key).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            let seq = f.seq.map_or("-".to_string(), |s| s.to_string());
            println!("seq {seq}: {:?}: {}", f.fault, f.detail);
        }
        match report.first_bad_seq() {
            _ if report.is_valid() => println!(
                "OK: {} events, {} checkpoints, verified tree size {}, {} pending",
                report.events, report.checkpoints, report.verified_tree_size, report.pending
            ),
            Some(seq) => println!("FAILED: first bad seq {seq}"),
            None => println!("FAILED"),
        }
    }
    Ok(if report.is_valid() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Serve(args) => {
            let config = Config::load(&args).context("invalid configuration")?;
            telemetry::init(config.log_format);
            let app = Application::build(config).await.context("cannot start")?;
            app.run_until(shutdown::signal()).await
        }
        Command::Migrate(args) => {
            let config = Config::load(&args).context("invalid configuration")?;
            telemetry::init(config.log_format);
            let store = store::connect(&config.database, 1)
                .await
                .context("migration failed")?;
            tracing::info!(store = store.backend(), "migrations applied");
            store.close().await;
            Ok(())
        }
        Command::Verify(args) => {
            telemetry::init(datastorage::config::LogFormat::Text);
            return verify(args).await;
        }
        Command::Keygen { out, origin } => {
            let signer = datastorage::keys::generate(&origin)?;
            datastorage::keys::write_new(&out, &signer)?;
            println!("{}", signer.verifier().to_text());
            Ok(())
        }
        Command::Openapi => {
            print!("{}", datastorage::http::openapi::document());
            Ok(())
        }
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}
