//! `datastorage`: serve the audit API, apply migrations, print the OpenAPI document.

use anyhow::Context;
use clap::{Parser, Subcommand};

use datastorage::config::{
    CheckpointSettings, Config, ServeArgs, ServerSettings, Settings, StoreSettings, Switch,
};
use datastorage::evidence::export::{self, ExportFormat};
use datastorage::{shutdown, store, telemetry, Application};

/// Request handling allocates many small, short-lived objects; mimalloc serves them with less
/// contention between threads than the system allocator (measured with `audit-bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in mimalloc 3's option enumeration; the -sys
/// crate names no constant for it, and a test checks the position still holds that option).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the kernel from backing this process's memory with transparent huge pages. mimalloc 3
/// asks for them on its arenas (before `main` runs, so its own option comes too late): a 2 MiB
/// page stays resident while any byte of it is in use, and each purge of part of one splits it,
/// so peak memory rose by a third under batch load (`docs/benchmarks.md`, 2026-11-28).
fn no_transparent_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        // Not fatal: the memory use is then higher, nothing else changes.
        eprintln!("datastorage: cannot disable transparent huge pages: {e}");
    }
}

/// How long freed memory stays with mimalloc before it goes back to the OS (ms).
const PURGE_DELAY_MS: std::os::raw::c_long = 50;

/// Returns freed memory to the OS after 50 ms instead of mimalloc's default 1 s: under batch load
/// the writer, the checkpointer and SQLite's connection threads free in bursts, and a long delay
/// lets their freed pages pile up, while no delay makes every purge a system call (both measured:
/// `docs/benchmarks.md`, 2026-11-28).
fn purge_freed_memory_soon() {
    // SAFETY: sets one of mimalloc's documented runtime options; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

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
    /// Write the events with their inclusion proofs and the checkpoint they prove against
    /// (NDJSON), checkable offline with `verify --export`.
    Export(ExportArgs),
    /// Follow a running log from outside: check each new checkpoint's signature (and witness
    /// quorum), its consistency with the last one accepted, and every new entry from its
    /// content; report findings on stderr, as a metric and to a webhook.
    Monitor(MonitorArgs),
    /// Create a checkpoint signing key (prints the public key to share with verifiers).
    Keygen {
        /// Where to write the key (never over an existing file).
        #[arg(long)]
        out: std::path::PathBuf,
        /// The log's name, as its checkpoints will carry it.
        #[arg(long, default_value = datastorage::config::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Manage the static bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token, print it once (it is kept nowhere) and append its SHA-256 with the
    /// principal, roles and event types to the tokens file; a serving process takes it within
    /// a second, without a restart.
    Create(TokenCreateArgs),
}

#[derive(clap::Args)]
struct TokenCreateArgs {
    /// The principal the token authenticates (recorded as `submitted_by` on what it writes).
    #[arg(long)]
    principal: String,
    /// `writer`, `reader` or `admin`; repeat for more than one.
    #[arg(long = "role", required = true, value_parser = role)]
    roles: Vec<datastorage::auth::Role>,
    /// Event-type prefixes it may write (e.g. `notification.`); none: any.
    #[arg(long = "event-types", num_args = 1..)]
    event_types: Vec<String>,
    /// When it stops working, from now (e.g. `90d`); none: never.
    #[arg(long)]
    expires_in: Option<humantime::Duration>,
    /// The tokens file (created if absent).
    #[arg(long, env = "DATASTORAGE_TOKENS_FILE")]
    tokens_file: std::path::PathBuf,
}

fn role(name: &str) -> Result<datastorage::auth::Role, String> {
    datastorage::auth::Role::from_name(name)
        .ok_or_else(|| format!("{name:?}: expected writer, reader or admin"))
}

/// `token create`: prints the token on stdout, the rest on stderr.
fn create_token(args: TokenCreateArgs) -> anyhow::Result<()> {
    use datastorage::auth::tokens;
    tokens::check_principal(&args.principal).map_err(anyhow::Error::msg)?;
    let event_types = (!args.event_types.is_empty()).then_some(args.event_types);
    if let Some(scopes) = &event_types {
        tokens::check_scopes(scopes).map_err(anyhow::Error::msg)?;
    }
    let now = chrono::Utc::now();
    let expires_at = args
        .expires_in
        .map(|d| chrono::Duration::from_std(d.into()).map(|d| now + d))
        .transpose()
        .context("--expires-in is too long")?;
    let entry = tokens::TokenEntry {
        event_types,
        created_at: Some(audit_model::timestamp::truncate(now)),
        expires_at,
        ..tokens::TokenEntry::new(args.principal.clone(), args.roles)
    };
    let token = tokens::create(&args.tokens_file, entry)?;
    eprintln!(
        "token for {} added to {} (shown once; store it as a secret)",
        args.principal,
        args.tokens_file.display()
    );
    println!("{token}");
    Ok(())
}

/// Where the log is, for the commands that read it directly.
#[derive(clap::Args)]
struct LogArgs {
    /// `postgres://…` or `sqlite://…`; default the SQLite file in the data dir.
    #[arg(long, env = "DATASTORAGE_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "DATASTORAGE_DATABASE_PASSWORD_FILE")]
    database_password_file: Option<std::path::PathBuf>,
    #[arg(long, env = "DATASTORAGE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
}

impl LogArgs {
    async fn open(self) -> anyhow::Result<std::sync::Arc<dyn store::LogStore>> {
        let settings = Settings {
            server: ServerSettings {
                data_dir: self.data_dir,
                ..ServerSettings::default()
            },
            store: StoreSettings {
                url: self.database_url,
                password_file: self.database_password_file,
                ..StoreSettings::default()
            },
            checkpoints: CheckpointSettings {
                enabled: Some(Switch(false)),
                ..CheckpointSettings::default()
            },
            ..Settings::default()
        };
        let config = Config::from_settings(settings).context("invalid configuration")?;
        // Read-only and without migrations: checking a log must not change it.
        store::connect_read_only(&config.database)
            .await
            .context("cannot open the log")
    }
}

fn rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Events whose timestamp is at or after this time.
    #[arg(long, value_parser = rfc3339)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Events whose timestamp is before this time.
    #[arg(long, value_parser = rfc3339)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long)]
    correlation_id: Option<String>,
    /// Prove against the checkpoint of this size (default: the latest).
    #[arg(long)]
    tree_size: Option<u64>,
    /// Resume after this seq.
    #[arg(long, default_value_t = 0)]
    after_seq: i64,
    /// `ndjson` (verifiable offline with `verify --export`) or `csv` (for spreadsheets).
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv"])]
    format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let store = args.log.open().await?;
    let filter = export::ExportFilter {
        since: args.since,
        until: args.until,
        correlation_id: args.correlation_id,
        after_seq: args.after_seq,
        fields: Vec::new(),
    };
    let format = ExportFormat::parse(&args.format).context("unknown export format")?;
    let (written, tree_size) = match &args.out {
        Some(path) => {
            let mut file = tokio::io::BufWriter::new(
                tokio::fs::File::create(path)
                    .await
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            export::write(store.clone(), filter, args.tree_size, format, &mut file).await?
        }
        None => {
            let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
            export::write(store.clone(), filter, args.tree_size, format, &mut stdout).await?
        }
    };
    tracing::info!(events = written, tree_size, "export written");
    store.close().await;
    Ok(())
}

#[derive(clap::Args)]
struct MonitorArgs {
    /// The service's base URL.
    #[arg(long)]
    url: String,
    /// The checkpoints' verifier key, or a file holding it (obtained out of band).
    #[arg(long)]
    public_key: String,
    /// A witness's verifier key, or a file holding it; repeat. The monitor then follows the
    /// checkpoints the quorum cosigned.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// How many of the witnesses must have cosigned (default: all given).
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// Where the monitor keeps the size and root it accepted last.
    #[arg(long)]
    state_file: std::path::PathBuf,
    /// A reader's bearer token, in a file (read each round).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// A CA bundle (PEM) for an `https` service.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Post each finding (JSON) to this URL.
    #[arg(long)]
    webhook: Option<String>,
    /// Time between rounds.
    #[arg(long, default_value = "30s")]
    interval: humantime::Duration,
    /// One round; exit 0 when the log is sound, 1 on a finding, 2 when the service could not
    /// be checked.
    #[arg(long)]
    once: bool,
    /// Serve `/metrics` on this address while following.
    #[arg(long)]
    metrics_listen: Option<String>,
}

async fn monitor(args: MonitorArgs) -> anyhow::Result<std::process::ExitCode> {
    use datastorage::monitor::{Monitor, MonitorConfig, Round};
    let key = audit_model::checkpoint::CheckpointVerifier::parse(&key_text(&args.public_key))
        .context("invalid --public-key")?;
    let policy = policy_of(&args.witness_keys, args.witness_quorum)?;
    let monitor = Monitor::new(MonitorConfig {
        url: args.url.trim_end_matches('/').to_string(),
        key,
        policy,
        state_file: args.state_file.clone(),
        token_file: args.token_file.clone(),
        ca_file: args.ca_file.clone(),
        webhook: args.webhook.clone(),
    })?;
    let handle = datastorage::metrics::prometheus();
    if let Some(addr) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = handle.render();
                async move { text }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    loop {
        let code = match monitor.round().await {
            Ok(Round::Findings(findings)) => {
                monitor.report(&findings).await;
                1
            }
            Ok(Round::Advanced { state, entries }) => {
                tracing::info!(
                    tree_size = state.tree_size,
                    entries,
                    "checkpoint accepted; new entries verified"
                );
                0
            }
            Ok(Round::Unchanged(state)) => {
                tracing::info!(tree_size = state.tree_size, "nothing new");
                0
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the log this round");
                2
            }
        };
        if args.once {
            return Ok(std::process::ExitCode::from(code));
        }
        tokio::time::sleep(args.interval.into()).await;
    }
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The log to check.
    #[command(flatten)]
    log: LogArgs,
    /// Check this export file instead, offline: no database is opened.
    #[arg(long)]
    export: Option<std::path::PathBuf>,
    /// The checkpoints' verifier key, or a file holding it (obtained out of band, never from
    /// the database being checked).
    #[arg(long)]
    public_key: String,
    /// A witness file (`checkpoint_witness_file`): every checkpoint in it must be in the log,
    /// unchanged, and reproduced by the content.
    #[arg(long)]
    witness: Option<std::path::PathBuf>,
    /// A C2SP witness's verifier key (`<name>+<hash>+<base64>`), or a file holding it; repeat
    /// for each witness. With `--witness-quorum`, the checkpoint relied on must be cosigned by
    /// that many of them.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// How many of the `--witness-key` witnesses must have cosigned (default: all given).
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A key given on the command line, or read from the file it names.
fn key_text(arg: &str) -> String {
    std::fs::read_to_string(arg).unwrap_or_else(|_| arg.to_string())
}

/// The witness policy of `--witness-key` and `--witness-quorum`, if keys are given.
fn policy_of(
    keys: &[String],
    quorum: Option<usize>,
) -> anyhow::Result<Option<audit_model::cosignature::WitnessPolicy>> {
    if keys.is_empty() {
        anyhow::ensure!(quorum.is_none(), "--witness-quorum needs --witness-key");
        return Ok(None);
    }
    let witnesses = keys
        .iter()
        .map(|k| {
            audit_model::cosignature::CosignatureVerifier::parse(&key_text(k))
                .with_context(|| format!("invalid --witness-key {k}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let quorum = quorum.unwrap_or(witnesses.len());
    anyhow::ensure!(
        (1..=witnesses.len()).contains(&quorum),
        "--witness-quorum must be between 1 and the {} witness keys",
        witnesses.len()
    );
    Ok(Some(audit_model::cosignature::WitnessPolicy {
        witnesses,
        quorum,
    }))
}

async fn verify(args: VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    let key = audit_model::checkpoint::CheckpointVerifier::parse(&key_text(&args.public_key))
        .context("invalid --public-key")?;
    let policy = policy_of(&args.witness_keys, args.witness_quorum)?;
    if let Some(path) = &args.export {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let checked = audit_model::export::verify_export(std::io::BufReader::new(file), &key)
            .map_err(|e| e.to_string())
            .and_then(|summary| match &policy {
                Some(policy) => policy
                    .check(&summary.note)
                    .map(|by| (summary, by))
                    .map_err(|e| format!("the export's checkpoint is {e}")),
                None => Ok((summary, Vec::new())),
            });
        return Ok(match checked {
            Ok((summary, by)) => {
                println!(
                    "OK: {} events proven against the signed checkpoint of tree size {}{}",
                    summary.events,
                    summary.tree_size,
                    cosigned_by(&by)
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                println!("FAILED: {e}");
                std::process::ExitCode::FAILURE
            }
        });
    }
    let witnessed = match &args.witness {
        Some(path) => datastorage::evidence::witness::read(path)
            .with_context(|| format!("cannot read the witness file {}", path.display()))?,
        None => Vec::new(),
    };
    let store = args.log.open().await?;
    let report = datastorage::evidence::verify::verify_log(&store, &key, &witnessed).await?;
    let quorum = match &policy {
        Some(policy) => Some(
            datastorage::evidence::verify::witnessed_checkpoint(store.as_ref(), &key, policy)
                .await?,
        ),
        None => None,
    };
    store.close().await;
    if let Some(Err(why)) = &quorum {
        println!("FAILED: {why}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            let seq = f.seq.map_or("-".to_string(), |s| s.to_string());
            println!("seq {seq}: {:?}: {}", f.fault, f.detail);
        }
        match report.first_bad_seq() {
            _ if report.is_valid() => println!(
                "OK: {} events, {} checkpoints, verified tree size {}, {} pending, {} purged by retention{}",
                report.events,
                report.checkpoints,
                report.verified_tree_size,
                report.pending,
                report.purged,
                match &quorum {
                    Some(Ok((size, by))) => format!("; witnessed tree size {size}{}", cosigned_by(by)),
                    _ => String::new(),
                }
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

fn cosigned_by(witnesses: &[String]) -> String {
    if witnesses.is_empty() {
        String::new()
    } else {
        format!(", cosigned by {}", witnesses.join(", "))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Serve(args) => {
            // Only the service: the verifier frees a page of rows at a time and takes the
            // next from what it freed (returned at once, each page faulted back in cost it a
            // tenth of its time).
            purge_freed_memory_soon();
            let config = Config::load(&args).context("invalid configuration")?;
            let _log = telemetry::init_with_traces(config.log_format, &config.traces);
            config.warn_moved_keys();
            let app = Application::build(config).await.context("cannot start")?;
            app.run_until(shutdown::signal()).await
        }
        Command::Migrate(args) => {
            let config = Config::load(&args).context("invalid configuration")?;
            let _log = telemetry::init(config.log_format);
            config.warn_moved_keys();
            let store = store::connect(&config.database, 1)
                .await
                .context("migration failed")?;
            tracing::info!(store = store.backend(), "migrations applied");
            store.close().await;
            Ok(())
        }
        Command::Monitor(args) => {
            let _log = telemetry::init(datastorage::config::LogFormat::Json);
            return monitor(args).await;
        }
        Command::Verify(args) => {
            let _log = telemetry::init(datastorage::config::LogFormat::Text);
            return verify(args).await;
        }
        Command::Export(args) => {
            let _log = telemetry::init(datastorage::config::LogFormat::Text);
            export(args).await
        }
        Command::Keygen { out, origin } => {
            let signer = datastorage::evidence::keys::generate(&origin)?;
            datastorage::evidence::keys::write_new(&out, &signer)?;
            println!("{}", signer.verifier().to_text());
            Ok(())
        }
        Command::Openapi => {
            print!("{}", datastorage::http::openapi::document());
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => create_token(args),
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_where_it_is_expected() {
        // SAFETY: reads and sets a runtime option.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                1000,
                "mimalloc 3's default purge delay (ms)"
            );
            purge_freed_memory_soon();
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                PURGE_DELAY_MS
            );
        }
    }

    #[test]
    fn transparent_huge_pages_are_off_for_the_process() {
        no_transparent_huge_pages();
        assert!(nix::sys::prctl::get_thp_disable().expect("PR_GET_THP_DISABLE"));
    }
}
