//! `ingest`: see the crate documentation in `lib.rs`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use ingest::config::Config;

/// Debezium rounds from NATS JetStream to the edge.
#[derive(Parser)]
#[command(
    name = "ingest",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Read Debezium events (one JSON per line, optionally `subject<TAB>json`)
    /// from stdin and print the round event ingest would send, or why not.
    Decode {
        /// Debezium `topic.prefix`.
        #[arg(long, env = "DEBEZIUM_PREFIX", default_value = "dbserver1")]
        prefix: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Decode { prefix }) = cli.command {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        return match ingest::decode_cmd::run(stdin, stdout, &prefix) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ingest decode: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match ingest::run(cli.config, ingest::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("ingest stopped: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
