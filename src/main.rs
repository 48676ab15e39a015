//! The `weir` binary: parse flags, start the broker, exit 0 after a clean shutdown.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weir::config::{Config, Flags};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_flags(Flags::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("weir: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match weir::broker::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
