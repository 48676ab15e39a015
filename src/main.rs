//! The `weir` binary: parse flags, start the broker, exit 0 after a clean shutdown.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weir::config::{Config, Flags};

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    // --log-level wins over WEIR_LOG; both take tracing filters ("debug",
    // "info,weir::group=debug").
    let filter = match &flags.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_env("WEIR_LOG").or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("weir: bad log level: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_flags(flags) {
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
