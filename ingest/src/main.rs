//! `ingest`: see the crate documentation in `lib.rs`.
#![forbid(unsafe_code)]

use clap::Parser;
use ingest::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match ingest::run(config, ingest::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("ingest stopped: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
