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
            notification_controller::logging::install(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
                std::io::stdout,
            );
            notification_controller::controller::run(*args).await
        }
    }
}
