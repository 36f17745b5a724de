//! `notification-controller run | crd`.

use clap::{Parser, Subcommand};
use notification_controller::config::RunArgs;

#[derive(Parser)]
#[command(
    version,
    about = "Delivers NotificationRequests and records their audit trail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the NotificationRequest CustomResourceDefinition as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", notification_controller::crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            // Written by a thread of its own from a bounded queue: a stdout nobody reads drops
            // lines rather than stalling reconciles.
            let (stdout, _flushed_at_exit) =
                tracing_appender::non_blocking::NonBlockingBuilder::default()
                    .lossy(true)
                    .buffered_lines_limit(8192)
                    .thread_name("log-writer")
                    .finish(std::io::stdout());
            // Traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set.
            let traces = audit_tracing::TraceSettings::from_env("notification-controller")
                .map_err(|e| anyhow::anyhow!(e))?;
            let _traces = notification_controller::logging::install(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
                stdout,
                &traces,
            );
            notification_controller::controller::run(*args).await
        }
    }
}
