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
            use tracing_subscriber::filter::FilterExt;
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            use tracing_subscriber::Layer;
            let wanted = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into());
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_filter(wanted.and(notification_controller::logging::no_bodies())),
                )
                .init();
            notification_controller::controller::run(*args).await
        }
    }
}
